"""Reading and resizing images and depth maps, keeping intrinsics exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mvfm_ros.geometry.camera import scale_intrinsics


def read_rgb(path: str | Path) -> torch.Tensor:
    """Read an image file as ``(3, H, W)`` float in [0, 1]."""
    with Image.open(path) as image:
        array = np.asarray(image.convert('RGB'), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def read_depth(path: str | Path, scale: float, invalid: tuple[int, ...] = (0,)) -> torch.Tensor:
    """Read a 16-bit depth PNG as ``(H, W)`` metres (``value / scale``); invalid values -> 0."""
    with Image.open(path) as image:
        raw = np.asarray(image, dtype=np.int64)
    depth = torch.from_numpy(raw.astype(np.float32) / scale)
    for value in invalid:
        depth[torch.from_numpy(raw == value)] = 0.0
    return depth


def resize_view(image: torch.Tensor, intrinsics: torch.Tensor, size: tuple[int, int],
                depth: torch.Tensor | None = None):
    """Resize an image (bilinear, antialiased) and optionally its depth (nearest) to (H, W).

    Returns:
        (image, intrinsics, depth) with K scaled by the exact pixel-centre rule.
    """
    height, width = image.shape[-2:]
    new_h, new_w = size
    out = F.interpolate(image[None], size=size, mode='bilinear', align_corners=False,
                        antialias=True)[0].clamp(0, 1)
    k = scale_intrinsics(intrinsics, new_w / width, new_h / height)
    if depth is not None:
        dh, dw = depth.shape
        if (dh, dw) != (height, width):
            raise ValueError(f'depth {dh}x{dw} and image {height}x{width} differ in size')
        depth = F.interpolate(depth[None, None], size=size, mode='nearest-exact')[0, 0]
    return out, k, depth
