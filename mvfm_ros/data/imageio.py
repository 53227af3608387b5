"""Reading and resizing images and depth maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


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


def image_size(path: str | Path) -> tuple[int, int]:
    """Return (H, W) of an image file, read from its header without decoding the pixels."""
    with Image.open(path) as image:
        return image.height, image.width


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``(3, H, W)`` to ``size`` (bilinear, antialiased).

    K follows with :func:`mvfm_ros.geometry.camera.scale_intrinsics` (pixel-centre rule).
    """
    return F.interpolate(image[None], size=size, mode='bilinear', align_corners=False,
                         antialias=True)[0].clamp(0, 1)


def resize_depth(depth: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``(H, W)`` depth to ``size`` with nearest sampling (no blending across edges)."""
    return F.interpolate(depth[None, None], size=size, mode='nearest-exact')[0, 0]
