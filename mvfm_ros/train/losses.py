"""The paper's losses: soft-argmax dense correspondence loss and the feature regulariser.

Coordinate convention: "unit" coordinates map pixel centres of an H x W image to [-1, 1] as
``torch.nn.functional.grid_sample(align_corners=False)`` does: u -> (u + 0.5) / W * 2 - 1.
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


def match_logits(features_a: torch.Tensor, features_b: torch.Tensor, unit_a: torch.Tensor,
                 temperature: float = 1.0) -> torch.Tensor:
    """Cosine similarity of features sampled in A against every patch of B, / temperature.

    Returns:
        ``(N, h * w)`` logits over B's patches.
    """
    query = F.normalize(sample_features(features_a, unit_a).float(), dim=-1)
    keys = F.normalize(features_b.flatten(1).float(), dim=0)
    return query @ keys / temperature


def correspondence_loss(features_a: torch.Tensor, features_b: torch.Tensor,
                        unit_a: torch.Tensor, unit_b: torch.Tensor,
                        temperature: float = 0.02) -> torch.Tensor:
    """Soft-argmax dense correspondence loss (mean L1 in unit coordinates).

    Args:
        features_a: ``(C, h, w)`` features of view A.
        features_b: ``(C, h, w)`` features of view B.
        unit_a: ``(N, 2)`` query points in A (unit coordinates).
        unit_b: ``(N, 2)`` their ground-truth locations in B.
        temperature: softmax temperature (0.02 in the paper).
    """
    probs = match_logits(features_a, features_b, unit_a, temperature).softmax(dim=-1)
    grid = grid_unit_coords(*features_b.shape[1:], device=features_b.device)
    expected = probs @ grid
    return F.l1_loss(expected, unit_b.float())


def feature_regularizer(features: torch.Tensor, base: torch.Tensor,
                        dim: int = -3) -> torch.Tensor:
    """Keep features close to the backbone's: mean |‖f‖/‖f_base‖ − 1| + mean(1 − cos(f, f_base)).

    Args:
        features: ``(..., C, h, w)`` adapted features.
        base: same shape, frozen backbone features.
        dim: the channel dimension.
    """
    features, base = features.float(), base.float()
    ratio = features.norm(dim=dim) / base.norm(dim=dim).clamp_min(1e-6)
    cosine = F.cosine_similarity(features, base, dim=dim)
    return (ratio - 1).abs().mean() + (1 - cosine).mean()
