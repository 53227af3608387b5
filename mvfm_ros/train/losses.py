"""The paper's losses: soft-argmax dense correspondence loss and the feature regulariser.

Coordinates are "unit" coordinates in [-1, 1] (see :mod:`mvfm_ros.geometry.sampling`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mvfm_ros.geometry.matching import soft_argmax


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
    expected = soft_argmax(features_a, features_b, unit_a, temperature)
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


def cross_window_loss(features_a: torch.Tensor, features_b: torch.Tensor,
                      dim: int = -3) -> torch.Tensor:
    """Disagreement of the same views' features computed in two different windows.

    ``mean(1 - cos)`` over patches: zero exactly when each patch's feature points the same
    way in both windows (the node publishes each keyframe from its own window, so this is what
    a consumer comparing keyframes sees), positive otherwise.

    Args:
        features_a: ``(..., C, h, w)`` features of some views in one window.
        features_b: the same views' features computed in another window.
        dim: the channel dimension.
    """
    return (1 - F.cosine_similarity(features_a.float(), features_b.float(), dim=dim)).mean()
