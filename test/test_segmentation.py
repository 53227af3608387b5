"""Training-free segmentation heads on features with known structure."""

from __future__ import annotations

import pytest
import torch

from mvfm_ros.eval.metrics import segmentation_consistency
from mvfm_ros.geometry.sampling import grid_unit_coords
from mvfm_ros.models.heads import cluster_segments, otsu_threshold, prompted_segment


def three_object_window(noise: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """(V=3, C=16, 6, 8) features: each instance has its own direction, placed differently."""
    gen = torch.Generator().manual_seed(0)
    prototypes = torch.randn(3, 16, generator=gen)
    instances = torch.zeros(3, 6, 8, dtype=torch.long)
    instances[0, :, 3:] = 1
    instances[1, :, 5:] = 1
    instances[1, :2] = 2
    instances[2, 3:, :4] = 2
    feats = prototypes[instances].permute(0, 3, 1, 2)
    feats = feats + noise * torch.randn(feats.shape, generator=gen)
    return feats, instances


def test_cluster_segments_are_consistent_across_views() -> None:
    feats, instances = three_object_window()
    ids = cluster_segments(feats, num_segments=3)
    assert ids.shape == (3, 6, 8)
    assert segmentation_consistency(ids, instances) == {'consistency': 1.0, 'purity': 1.0}
    assert torch.equal(ids, cluster_segments(feats, num_segments=3))  # deterministic


def test_cluster_segments_fail_on_unstructured_features() -> None:
    """The metric detects inconsistency: random features do not follow the instances."""
    _, instances = three_object_window()
    noise = torch.randn(3, 16, 6, 8, generator=torch.Generator().manual_seed(1))
    ids = cluster_segments(noise, num_segments=3)
    assert segmentation_consistency(ids, instances)['consistency'] < 0.8


def test_prompted_segment_selects_the_object_in_every_view() -> None:
    feats, instances = three_object_window()
    centres = grid_unit_coords(6, 8).reshape(6, 8, 2)
    prompt = centres[4, 1]  # view 2, a pixel of instance 2
    mask, similarity = prompted_segment(feats, view=2, unit_xy=prompt)
    assert torch.equal(mask, instances == 2)
    assert similarity.shape == (3, 6, 8) and float(similarity.max()) <= 1.0 + 1e-6
    fixed, _ = prompted_segment(feats, view=2, unit_xy=prompt, threshold=0.99999)
    assert fixed.sum() < mask.sum()


def test_otsu_threshold_separates_two_modes() -> None:
    values = torch.cat((torch.full((50,), 0.1), torch.full((30,), 0.9)))
    t = otsu_threshold(values)
    assert 0.1 < t <= 0.9
    assert otsu_threshold(torch.full((5,), 0.3)) == pytest.approx(0.3)
