"""Unit coordinates and feature sampling.

"Unit" coordinates map pixel centres of an H x W image to [-1, 1] as
``torch.nn.functional.grid_sample(align_corners=False)`` does: u -> (u + 0.5) / W * 2 - 1. They
are resolution-independent, so a point addresses an image and its feature grid alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_unit(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel (u, v) ``(..., 2)`` to unit coordinates in [-1, 1]."""
    size = pixels.new_tensor([width, height])
    return (pixels + 0.5) / size * 2 - 1


def to_pixels(unit: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Convert unit coordinates ``(..., 2)`` back to pixel (u, v)."""
    size = unit.new_tensor([width, height])
    return (unit + 1) / 2 * size - 0.5


def grid_unit_coords(h: int, w: int, device: torch.device | None = None) -> torch.Tensor:
    """Return unit coordinates of an h x w grid's cell centres, ``(h * w, 2)`` row-major."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w * 2 - 1
    gy, gx = torch.meshgrid(ys, xs, indexing='ij')
    return torch.stack((gx, gy), dim=-1).reshape(-1, 2)


def sample_features(features: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample ``(C, h, w)`` features at ``(N, 2)`` unit coordinates -> ``(N, C)``."""
    grid = unit.to(features.dtype).view(1, 1, -1, 2)
    out = F.grid_sample(features[None], grid, mode='bilinear', align_corners=False)
    return out[0, :, 0].T
