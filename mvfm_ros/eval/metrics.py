"""Evaluation metrics: the paper's location error, Probe3D-style recall, normals, segmentation."""

from __future__ import annotations

import math

import torch

from mvfm_ros.geometry.matching import hard_argmax, location_errors

__all__ = ['ANGLE_BINS_DEG', 'NORMAL_THRESHOLDS_DEG', 'RECALL_THRESHOLDS_PX', 'angle_bin',
           'hard_matches', 'location_errors', 'normal_metrics', 'pixel_errors', 'recall_at',
           'rotation_angle_deg', 'segmentation_consistency']
from mvfm_ros.geometry.sampling import to_pixels

RECALL_THRESHOLDS_PX = (5, 10, 20)
ANGLE_BINS_DEG = (0, 15, 30, 60, 180)
NORMAL_THRESHOLDS_DEG = (11.25, 22.5, 30.0)


hard_matches = hard_argmax  # the paper's "Loc. Err." matches with the hard argmax


def pixel_errors(predicted_unit: torch.Tensor, target_unit: torch.Tensor, height: int,
                 width: int) -> torch.Tensor:
    """Euclidean match error in pixels of the input image, ``(N,)``."""
    return (to_pixels(predicted_unit, height, width) - to_pixels(target_unit, height, width)
            ).norm(dim=-1)


def recall_at(errors_px: torch.Tensor,
              thresholds: tuple[float, ...] = RECALL_THRESHOLDS_PX) -> dict[str, float]:
    """Fraction of matches within each pixel threshold."""
    if errors_px.numel() == 0:
        return {f'recall@{t}px': math.nan for t in thresholds}
    return {f'recall@{t}px': float((errors_px <= t).float().mean()) for t in thresholds}


def rotation_angle_deg(pose_a: torch.Tensor, pose_b: torch.Tensor) -> float:
    """Angle of the relative rotation between two camera-to-world poses, in degrees."""
    rel = pose_a[:3, :3].T.double() @ pose_b[:3, :3].double()
    cos = ((torch.trace(rel) - 1) / 2).clamp(-1, 1)
    return math.degrees(math.acos(float(cos)))


def angle_bin(angle_deg: float, bins: tuple[float, ...] = ANGLE_BINS_DEG) -> str:
    """Label of the viewpoint-angle bin containing ``angle_deg`` (e.g. ``'15-30'``)."""
    for low, high in zip(bins[:-1], bins[1:]):
        if low <= angle_deg < high or (high == bins[-1] and angle_deg == high):
            return f'{low:g}-{high:g}'
    raise ValueError(f'angle {angle_deg} outside the bins {bins}')


def normal_metrics(predicted: torch.Tensor, target: torch.Tensor,
                   valid: torch.Tensor | None = None) -> dict[str, float]:
    """Angular error statistics of unit normals (Probe3D metrics).

    Args:
        predicted: ``(..., 3, H, W)`` normals (normalised here).
        target: same shape, ground truth.
        valid: ``(..., H, W)`` mask (default: where the target is non-zero).
    """
    pred = torch.nn.functional.normalize(predicted.float(), dim=-3)
    gt = torch.nn.functional.normalize(target.float(), dim=-3)
    if valid is None:
        valid = target.abs().sum(dim=-3) > 0
    cos = (pred * gt).sum(dim=-3).clamp(-1, 1)
    angles = torch.rad2deg(torch.acos(cos))[valid]
    if angles.numel() == 0:
        raise ValueError('no valid pixels to evaluate normals on')
    out = {'mean_deg': float(angles.mean()), 'median_deg': float(angles.median()),
           'rmse_deg': float(angles.square().mean().sqrt())}
    for t in NORMAL_THRESHOLDS_DEG:
        out[f'within_{t:g}deg'] = float((angles < t).float().mean())
    return out


def segmentation_consistency(predicted: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """How consistently predicted segment ids follow ground-truth instances across views.

    Both are ``(V, H, W)`` integer maps (target -1 = unknown). Each ground-truth instance is
    assigned the predicted id it most often receives over the whole window; ``consistency`` is
    the fraction of pixels carrying their instance's id (1.0: every instance has one id in
    every view). ``purity`` is the converse: the fraction of pixels whose predicted segment's
    majority instance is their own (1.0: no segment spans two instances).
    """
    valid = target >= 0
    pred, gt = predicted[valid].long(), target[valid].long()
    if gt.numel() == 0:
        raise ValueError('no labelled pixels')
    pairs = torch.stack((gt, pred), 1)
    uniq, counts = pairs.unique(dim=0, return_counts=True)

    def majority_share(key_col: int) -> float:
        best = {}
        for (g, p), c in zip(uniq.tolist(), counts.tolist()):
            key = (g, p)[key_col]
            best[key] = max(best.get(key, 0), c)
        return sum(best.values()) / gt.numel()

    return {'consistency': majority_share(0), 'purity': majority_share(1)}
