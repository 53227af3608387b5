"""Patch embedding of Plücker ray maps."""

from __future__ import annotations

import torch
from torch import nn


class RayEmbed(nn.Module):
    """Embed a 6-channel Plücker ray map to one token per patch (conv, kernel = stride = patch).

    Args:
        patch_size: backbone patch size in pixels.
        embed_dim: output channels per token (128 in the paper).
    """

    def __init__(self, patch_size: int, embed_dim: int = 128) -> None:
        """Build the convolution."""
        super().__init__()
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.proj = nn.Conv2d(6, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, rays: torch.Tensor) -> torch.Tensor:
        """Embed rays.

        Args:
            rays: ``(N, 6, H, W)`` ray maps, H and W multiples of the patch size.

        Returns:
            ``(N, h * w, embed_dim)`` tokens in row-major patch order.
        """
        return self.proj(rays).flatten(2).transpose(1, 2)
