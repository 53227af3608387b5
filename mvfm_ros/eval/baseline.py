"""A naive descriptor baseline: normalised RGB patches pooled to the backbone's grid."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rgb_patch_descriptors(images: torch.Tensor, patch_size: int, cells: int = 4) -> torch.Tensor:
    """Describe each patch by its colours pooled to ``cells x cells``, zero-mean and unit-norm.

    Gives the evaluation a floor: a learned feature that does not beat raw colour patches has
    learned nothing about correspondence.

    Args:
        images: ``(N, 3, H, W)`` in [0, 1], H and W multiples of ``patch_size``.
        patch_size: patch size of the model the baseline stands next to.
        cells: pooling cells per patch side (descriptor length ``3 * cells ** 2``).

    Returns:
        ``(N, 3 * cells ** 2, H / patch, W / patch)``.
    """
    n, _, height, width = images.shape
    h, w = height // patch_size, width // patch_size
    pooled = F.adaptive_avg_pool2d(images.float(), (h * cells, w * cells))
    desc = pooled.reshape(n, 3, h, cells, w, cells).permute(0, 1, 3, 5, 2, 4)
    desc = desc.reshape(n, 3 * cells * cells, h, w)
    desc = desc - desc.mean(dim=1, keepdim=True)
    return F.normalize(desc, dim=1, eps=1e-6)
