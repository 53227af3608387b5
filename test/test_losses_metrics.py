"""Losses and metrics against hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from mvfm_ros.eval.metrics import (
    angle_bin,
    hard_matches,
    location_errors,
    normal_metrics,
    pixel_errors,
    recall_at,
    rotation_angle_deg,
    segmentation_consistency,
)
from mvfm_ros.geometry.sampling import grid_unit_coords, to_pixels, to_unit
from mvfm_ros.train.losses import correspondence_loss, feature_regularizer


def one_hot_features(h: int, w: int) -> torch.Tensor:
    """Each patch has its own orthogonal feature: matching is unambiguous."""
    return torch.eye(h * w).reshape(h * w, h, w)


def test_unit_pixel_round_trip_and_grid_centres() -> None:
    pixels = torch.tensor([[-0.5, -0.5], [63.5, 47.5], [10.0, 20.0]])
    unit = to_unit(pixels, 48, 64)
    assert torch.allclose(unit[0], torch.tensor([-1.0, -1.0]))
    assert torch.allclose(unit[1], torch.tensor([1.0, 1.0]))
    assert torch.allclose(to_pixels(unit, 48, 64), pixels)
    grid = grid_unit_coords(2, 4)
    assert torch.allclose(grid[0], torch.tensor([-0.75, -0.5]))
    assert torch.allclose(grid[-1], torch.tensor([0.75, 0.5]))


def test_correspondence_loss_is_zero_for_perfect_features_and_known_otherwise() -> None:
    feats = one_hot_features(3, 3)
    centres = grid_unit_coords(3, 3)
    # Perfect features, targets at the true patch centres: loss ~ 0 (temperature makes it sharp).
    loss = correspondence_loss(feats, feats, centres, centres, temperature=0.02)
    assert loss < 1e-6
    # B's patches rolled one column right: queries in columns 0 and 1 land one column (2/3 in
    # unit x) right of their target, y is exact; averaged over x and y: 1/3.
    rolled = feats.roll(shifts=1, dims=2)
    queries = centres[[0, 1, 3, 4]]
    shifted = correspondence_loss(feats, rolled, queries, queries, temperature=0.02)
    assert torch.isclose(shifted, torch.tensor(1 / 3), atol=1e-4)


def test_correspondence_loss_has_gradients() -> None:
    feats = torch.randn(8, 4, 4, requires_grad=True)
    centres = grid_unit_coords(4, 4)
    correspondence_loss(feats, feats.roll(1, dims=1), centres, centres).backward()
    assert feats.grad is not None and feats.grad.abs().sum() > 0


def test_feature_regularizer_hand_cases() -> None:
    base = torch.randn(2, 8, 3, 3)
    assert feature_regularizer(base, base) < 1e-6
    assert torch.isclose(feature_regularizer(2 * base, base), torch.tensor(1.0), atol=1e-5)
    assert torch.isclose(feature_regularizer(-base, base), torch.tensor(2.0), atol=1e-5)


def test_hard_matches_and_location_error() -> None:
    feats = one_hot_features(2, 2)
    centres = grid_unit_coords(2, 2)
    assert torch.allclose(hard_matches(feats, feats, centres), centres)
    errors = location_errors(torch.tensor([[0.0, 0.0], [0.5, 0.5]]),
                             torch.tensor([[0.5, -0.5], [0.5, 0.5]]))
    assert torch.allclose(errors, torch.tensor([0.5, 0.0]))
    px = pixel_errors(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.5, 0.0]]), 100, 200)
    assert torch.allclose(px, torch.tensor([50.0]))


def test_recall_and_angle_bins() -> None:
    recall = recall_at(torch.tensor([1.0, 6.0, 15.0, 30.0]))
    assert recall == {'recall@5px': 0.25, 'recall@10px': 0.5, 'recall@20px': 0.75}
    assert all(math.isnan(v) for v in recall_at(torch.zeros(0)).values())
    rot = torch.eye(4)
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    rot[:2, :2] = torch.tensor([[c, -s], [s, c]])
    assert abs(rotation_angle_deg(torch.eye(4), rot) - 30.0) < 1e-4
    assert angle_bin(20.0) == '15-30' and angle_bin(0.0) == '0-15' and angle_bin(180.0) == '60-180'
    with pytest.raises(ValueError):
        angle_bin(-1.0)


def test_normal_metrics_hand_case() -> None:
    gt = torch.zeros(3, 4, 4)
    gt[2] = 1.0
    angle = math.radians(10)
    pred = torch.zeros(3, 4, 4)
    pred[0], pred[2] = math.sin(angle), math.cos(angle)
    pred[:, 0, 0] = torch.tensor([1.0, 0.0, 0.0])  # one pixel off by 90 degrees
    out = normal_metrics(pred, gt)
    assert abs(out['median_deg'] - 10.0) < 1e-3
    assert abs(out['mean_deg'] - (15 * 10 + 90) / 16) < 1e-3
    assert out['within_11.25deg'] == 15 / 16 and out['within_30deg'] == 15 / 16
    assert abs(out['rmse_deg'] - math.sqrt((15 * 100 + 8100) / 16)) < 1e-3


def test_segmentation_consistency_hand_case() -> None:
    target = torch.tensor([[[0, 0, 1, 1]], [[0, 0, 1, -1]]])  # (V=2, H=1, W=4)
    same = torch.tensor([[[5, 5, 7, 7]], [[5, 5, 7, 0]]])
    assert segmentation_consistency(same, target) == {'consistency': 1.0, 'purity': 1.0}
    # View 1 renames instance 0: half of instance 0's pixels carry another id.
    renamed = torch.tensor([[[5, 5, 7, 7]], [[9, 9, 7, 0]]])
    out = segmentation_consistency(renamed, target)
    assert out['consistency'] == pytest.approx(5 / 7) and out['purity'] == 1.0
    merged = torch.tensor([[[5, 5, 5, 5]], [[5, 5, 5, 0]]])
    assert segmentation_consistency(merged, target)['purity'] == pytest.approx(4 / 7)
