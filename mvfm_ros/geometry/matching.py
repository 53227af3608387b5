"""Matching features between two views: similarity to every patch, soft and hard argmax.

The training loss (soft-argmax, :mod:`mvfm_ros.train.losses`) and the evaluation's location
error (hard argmax, :mod:`mvfm_ros.eval.metrics`) match the same way, here. Coordinates are
"unit" coordinates in [-1, 1] (:mod:`mvfm_ros.geometry.sampling`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mvfm_ros.geometry.sampling import grid_unit_coords, sample_features


def match_logits(features_a: torch.Tensor, features_b: torch.Tensor, unit_a: torch.Tensor,
                 temperature: float = 1.0) -> torch.Tensor:
    """Cosine similarity of features sampled in A against every patch of B, / temperature.

    Args:
        features_a: ``(C, h, w)`` features of view A.
        features_b: ``(C, h, w)`` features of view B.
        unit_a: ``(N, 2)`` query points in A.
        temperature: divides the cosine similarities.

    Returns:
        ``(N, h * w)`` logits over B's patches.
    """
    query = F.normalize(sample_features(features_a, unit_a).float(), dim=-1)
    keys = F.normalize(features_b.flatten(1).float(), dim=0)
    return query @ keys / temperature


def soft_argmax(features_a: torch.Tensor, features_b: torch.Tensor, unit_a: torch.Tensor,
                temperature: float) -> torch.Tensor:
    """Return the expected location ``(N, 2)`` in B of each query of A (softmax over B)."""
    probs = match_logits(features_a, features_b, unit_a, temperature).softmax(dim=-1)
    return probs @ grid_unit_coords(*features_b.shape[1:], device=features_b.device)


def hard_argmax(features_a: torch.Tensor, features_b: torch.Tensor,
                unit_a: torch.Tensor) -> torch.Tensor:
    """Return the best-matching patch centre ``(N, 2)`` of B for each query of A."""
    best = match_logits(features_a, features_b, unit_a).argmax(dim=-1)
    return grid_unit_coords(*features_b.shape[1:], device=features_b.device)[best]


def location_errors(predicted_unit: torch.Tensor, target_unit: torch.Tensor) -> torch.Tensor:
    """Per-match L1 error in unit coordinates, averaged over x and y (``F.l1_loss`` convention).

    Returns:
        ``(N,)`` errors; their mean is the paper's "Loc. Err.".
    """
    return (predicted_unit - target_unit).abs().mean(dim=-1)
