"""Scores of lifted operator outputs: consistency across views, accuracy, stability over time."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def _table(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Co-occurrence counts of the ids of paired samples ``a`` and ``b``."""
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    table = np.zeros((ia.max() + 1, ib.max() + 1)) if len(a) else np.zeros((0, 0))
    np.add.at(table, (ia, ib), 1)
    return table


def label_consistency(labels_a: np.ndarray, labels_b: np.ndarray, idx_a: np.ndarray,
                      idx_b: np.ndarray) -> float:
    """Fraction of corresponding pixel pairs with the same id after the best one-to-one id match.

    The ids of the two views are matched one to one (Hungarian, most shared pixels), so
    unrelated per-view ids are scored fairly; unlabelled pixels (negative ids) count as misses.
    """
    if not len(idx_a):
        return float('nan')
    a, b = labels_a.reshape(-1)[idx_a], labels_b.reshape(-1)[idx_b]
    keep = (a >= 0) & (b >= 0)
    table = _table(a[keep], b[keep])
    if not table.size:
        return 0.0
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / len(idx_a))


def id_stability(labels_a: np.ndarray, labels_b: np.ndarray, idx_a: np.ndarray,
                 idx_b: np.ndarray) -> float:
    """Fraction of corresponding pixel pairs whose ids are equal as published (no matching)."""
    if not len(idx_a):
        return float('nan')
    a, b = labels_a.reshape(-1)[idx_a], labels_b.reshape(-1)[idx_b]
    return float(((a == b) & (a >= 0)).mean())


def purity(labels: np.ndarray, instances: np.ndarray) -> float:
    """Share of labelled pixels whose id's majority ground-truth instance is theirs."""
    lab, inst = labels.reshape(-1), instances.reshape(-1)
    keep = (lab >= 0) & (inst >= 0)
    table = _table(lab[keep], inst[keep])
    return float(table.max(1).sum() / max(table.sum(), 1)) if table.size else float('nan')


def normal_angles(normals_a: np.ndarray, normals_b: np.ndarray, rot_a: np.ndarray,
                  rot_b: np.ndarray, idx_a: np.ndarray, idx_b: np.ndarray) -> np.ndarray:
    """Angles in degrees between corresponding normals, compared in the world frame."""
    wa = normals_a.reshape(-1, 3)[idx_a] @ rot_a.T
    wb = normals_b.reshape(-1, 3)[idx_b] @ rot_b.T
    cos = (wa * wb).sum(1) / np.maximum(np.linalg.norm(wa, axis=1) * np.linalg.norm(wb, axis=1),
                                        1e-12)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def normal_error(normals: np.ndarray, truth: np.ndarray) -> float:
    """Mean angle in degrees to ground-truth normals ``(H, W, 3)`` where those are known."""
    known = np.abs(truth).sum(-1) > 0
    cos = (normals[known] * truth[known]).sum(-1) / np.maximum(
        np.linalg.norm(normals[known], axis=-1), 1e-12)
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))).mean())


def surface_lookups(points: np.ndarray, sample) -> list[tuple[int, np.ndarray, np.ndarray,
                                                               np.ndarray, np.ndarray]]:
    """Where world points ``(N, 3)`` fall in each view of a sample with depth.

    Returns, per view, ``(view, indices, rows, cols, error)``: the points in front of the camera
    and inside its image, their pixel, and ``|depth - z|`` there (how far off the surface the
    view measured they are).
    """
    out = []
    pts = torch.as_tensor(np.asarray(points), dtype=torch.float64)
    height, width = sample.depth.shape[-2:]
    for v in range(sample.num_views):
        pose = sample.cam_to_world[v].double()
        cam = (pts - pose[:3, 3]) @ pose[:3, :3]
        uv = cam @ sample.intrinsics[v].double().T
        z = cam[:, 2]
        cols = (uv[:, 0] / z.clamp_min(1e-9)).round().long()
        rows = (uv[:, 1] / z.clamp_min(1e-9)).round().long()
        idx = ((z > 0) & (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)).nonzero()
        idx = idx[:, 0]
        seen = sample.depth[v][rows[idx], cols[idx]].double()
        out.append((v, idx.numpy(), rows[idx].numpy(), cols[idx].numpy(),
                    (seen - z[idx]).abs().numpy()))
    return out


def surface_distance(points: np.ndarray, sample) -> np.ndarray:
    """``(N,)`` smallest ``|depth - z|`` of each world point over the views that see it."""
    best = np.full(len(points), np.inf)
    for _, idx, _, _, error in surface_lookups(points, sample):
        np.minimum.at(best, idx, error)
    return best
