"""Training-free multi-view segmentation on a window's features.

Both functions work on all views of a window at once, so the ids (or the selected object) are
the same across views wherever the features agree, which is what the adapters train for.
k-means is hand-written in PyTorch (rather than scikit-learn's) so it runs on the model's device
next to the network, inside the node's inference step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mvfm_ros.geometry.sampling import sample_features


def cluster_segments(features: torch.Tensor, num_segments: int = 8, iterations: int = 20,
                     seed: int = 0) -> torch.Tensor:
    """Jointly cluster the patch features of every view (spherical k-means).

    Args:
        features: ``(V, C, h, w)`` features of one window.
        num_segments: k.
        iterations: Lloyd iterations.
        seed: seed of the k-means++ initialisation (results are deterministic).

    Returns:
        ``(V, h, w)`` int64 segment ids in [0, k), consistent across views.
    """
    views, channels, h, w = features.shape
    points = features.float().permute(0, 2, 3, 1).reshape(-1, channels)
    labels, _ = spherical_kmeans(points, num_segments, iterations, seed)
    return labels.reshape(views, h, w)


def spherical_kmeans(points: torch.Tensor, k: int, iterations: int = 20, seed: int = 0,
                     centres: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Spherical k-means (cosine similarity) of ``(N, C)`` points.

    Args:
        points: ``(N, C)`` vectors (normalised here).
        k: number of clusters.
        iterations: Lloyd iterations.
        seed: seed of the k-means++ initialisation.
        centres: ``(k, C)`` starting centres, e.g. the previous window's, which keeps ids stable
            over time in a stream (k-means++ is used when None or when the shape differs).

    Returns:
        labels ``(N,)`` int64 in [0, k) and the final centres ``(k', C)`` (k' <= k).
    """
    points = F.normalize(points.float(), dim=1)
    k = min(k, points.shape[0])
    if centres is None or tuple(centres.shape) != (k, points.shape[1]):
        centres = _kmeans_pp(points, k, seed)
    else:
        centres = F.normalize(centres.to(points), dim=1)
    for _ in range(iterations):
        labels = (points @ centres.T).argmax(dim=1)
        # One-hot matmul rather than index_add_: the latter is slow on CPU in inference mode.
        onehot = F.one_hot(labels, centres.shape[0]).to(points.dtype)
        sums = onehot.T @ points
        counts = onehot.sum(dim=0)
        updated = F.normalize(sums, dim=1)
        centres = torch.where((counts > 0)[:, None], updated, centres)
    return (points @ centres.T).argmax(dim=1), centres


def _kmeans_pp(points: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """k-means++ initialisation on cosine distance (deterministic for a seed)."""
    generator = torch.Generator(device='cpu').manual_seed(seed)
    first = int(torch.randint(points.shape[0], (1,), generator=generator))
    centres = [points[first]]
    for _ in range(1, k):
        dist = (1 - points @ torch.stack(centres).T).amin(dim=1).clamp_min(0)
        if float(dist.sum()) <= 0:
            break
        pick = int(torch.multinomial(dist.cpu() + 1e-12, 1, generator=generator))
        centres.append(points[pick])
    return torch.stack(centres)


def prompted_segment(features: torch.Tensor, view: int, unit_xy: torch.Tensor,
                     threshold: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Select the object under a prompt point in every view of the window.

    Args:
        features: ``(V, C, h, w)``.
        view: the view the prompt lies in.
        unit_xy: ``(2,)`` prompt location in unit coordinates of that view.
        threshold: cosine similarity above which a patch belongs to the object; None picks it
            per window with Otsu's method on the similarity histogram.

    Returns:
        mask ``(V, h, w)`` bool and similarity ``(V, h, w)`` float in [-1, 1].
    """
    query = F.normalize(sample_features(features[view], unit_xy.view(1, 2)).float(), dim=1)
    keys = F.normalize(features.float(), dim=1)
    similarity = torch.einsum('c,vchw->vhw', query[0], keys)
    if threshold is None:
        threshold = otsu_threshold(similarity.flatten())
    return similarity >= threshold, similarity


def otsu_threshold(values: torch.Tensor, bins: int = 64) -> float:
    """Threshold maximising the between-class variance of a 1-D sample (Otsu, 1979)."""
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-6:
        return low
    hist = torch.histc(values.float(), bins=bins, min=low, max=high)
    centres = torch.linspace(low, high, bins + 1)[:-1] + (high - low) / bins / 2
    weight0 = hist.cumsum(0)
    weight1 = hist.sum() - weight0
    mean0 = (hist * centres).cumsum(0) / weight0.clamp_min(1e-12)
    mean1 = ((hist * centres).sum() - (hist * centres).cumsum(0)) / weight1.clamp_min(1e-12)
    between = weight0 * weight1 * (mean0 - mean1) ** 2
    return float(centres[int(between[:-1].argmax())] + (high - low) / bins / 2)
