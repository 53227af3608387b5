"""Surface-normal probe: per-patch features to per-pixel unit normals."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NormalHead(nn.Module):
    """A small convolutional probe predicting unit normals in the camera's optical frame.

    Two 3x3 convolutions over the patch grid, then a 1x1 convolution to ``3 * s * s`` channels
    rearranged to an ``s``-times finer grid (pixel shuffle), then bilinear upsampling to the input
    size. Normals follow the OpenCV optical frame (x right, y down, z forward).

    Args:
        in_dim: feature channels C.
        hidden: channels of the convolutions.
        upscale: pixel-shuffle factor from the patch grid.
    """

    def __init__(self, in_dim: int, hidden: int = 128, upscale: int = 4) -> None:
        """Build the layers."""
        super().__init__()
        self.upscale = upscale
        self.body = nn.Sequential(
            nn.Conv2d(in_dim, hidden, 3, padding=1), nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.GELU(),
            nn.Conv2d(hidden, 3 * upscale * upscale, 1),
            nn.PixelShuffle(upscale),
        )

    def forward(self, features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Predict normals.

        Args:
            features: ``(N, C, h, w)`` patch features.
            size: output (H, W), usually the input image size.

        Returns:
            ``(N, 3, H, W)`` unit normals.
        """
        out = self.body(features)
        out = F.interpolate(out, size=size, mode='bilinear', align_corners=False)
        return F.normalize(out, dim=1, eps=1e-6)


def normal_loss(predicted: torch.Tensor, target: torch.Tensor,
                valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean ``1 - cos`` between predicted and ground-truth normals.

    Args:
        predicted: ``(..., 3, H, W)`` unit normals.
        target: ``(..., 3, H, W)`` unit normals (zero vectors where unknown).
        valid: ``(..., H, W)`` pixels to use (default: where the target is non-zero).
    """
    cos = (predicted * target).sum(dim=-3)
    if valid is None:
        valid = target.abs().sum(dim=-3) > 0
    if not valid.any():
        return predicted.sum() * 0.0
    return (1.0 - cos[valid]).mean()
