"""A bounded world-frame voxel map of colour, lifted labels and a compact projection of features.

Each voxel keeps running sums (position, colour, features), an observation count and a label
with a majority vote (Boyer-Moore: the same label adds to its votes, another subtracts and
replaces it when the votes run out), so an update costs one pass over the new points. Voxels are
kept sorted by key (numpy ``searchsorted``: no per-point Python work). Memory is bounded: past
``max_voxels`` the least recently seen voxels are evicted (the farthest first among equals) and
counted. A fixed linear projection of the features (PCA of the first window that reaches the
map, kept until reset) makes the ``f0..fN`` channels comparable over the map's lifetime.
"""

from __future__ import annotations

import numpy as np
import torch

from mvfm_ros.geometry.projection import unproject_pixels
from mvfm_ros.lift.labels import IGNORE

KEY_BITS = 21  # bits per axis of a packed voxel key: +-2^20 voxels (52 km at 5 cm)
_OFFSET = 1 << (KEY_BITS - 1)
_MASK = (1 << KEY_BITS) - 1
COUNT, LABEL, VOTES, SEEN = range(4)  # columns of VoxelMap.ints


def pack_keys(cells: np.ndarray) -> np.ndarray:
    """Pack ``(N, 3)`` integer voxel coordinates into int64 keys."""
    c = (cells.astype(np.int64) + _OFFSET) & _MASK
    return (c[:, 0] << (2 * KEY_BITS)) | (c[:, 1] << KEY_BITS) | c[:, 2]


def cloud_dtype(feature_dim: int) -> np.dtype:
    """Return the map's point layout.

    x, y, z, rgb (packed in a float32, as RViz reads it), label, confidence, f0..f{N-1}.
    """
    fields = [('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('rgb', '<f4'), ('label', '<i4'),
              ('confidence', '<f4')] + [(f'f{i}', '<f4') for i in range(feature_dim)]
    return np.dtype(fields)


class FeatureProjection:
    """A linear map of features to ``dim`` channels, fitted once (PCA) and then fixed."""

    def __init__(self, dim: int) -> None:
        """Unfitted."""
        self.dim = dim
        self.mean: np.ndarray | None = None
        self.basis: np.ndarray | None = None

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """Project ``(N, C)`` features to ``(N, dim)`` (fits on the first call)."""
        if self.mean is None:
            self.mean = features.mean(0)
            _, _, vt = np.linalg.svd(features - self.mean, full_matrices=False)
            basis = np.zeros((self.dim, features.shape[1]), np.float32)
            basis[:min(self.dim, len(vt))] = vt[:self.dim]
            self.basis = basis
        return ((features - self.mean) @ self.basis.T).astype(np.float32)


class VoxelMap:
    """Voxel map in the world frame.

    Args:
        voxel_size: edge length in metres.
        max_voxels: most voxels kept (older ones are evicted past it).
        feature_dim: feature channels per voxel (0: none).
    """

    def __init__(self, voxel_size: float = 0.05, max_voxels: int = 200_000,
                 feature_dim: int = 8) -> None:
        """Start empty."""
        if voxel_size <= 0 or max_voxels < 1:
            raise ValueError('voxel_size must be positive and max_voxels at least 1')
        self.voxel_size = float(voxel_size)
        self.max_voxels = int(max_voxels)
        self.feature_dim = int(feature_dim)
        self.clear()

    def clear(self) -> None:
        """Remove every voxel (the reset service); counters restart."""
        self.keys = np.zeros(0, np.int64)
        # Two arrays instead of one per quantity: a batch of new voxels is two inserts.
        self.sums = np.zeros((0, 6 + self.feature_dim), np.float64)  # xyz, rgb, features
        self.ints = np.zeros((0, 4), np.int64)  # observations, label, votes, last update
        self.projection = FeatureProjection(self.feature_dim)
        self.updates = 0
        self.evicted = 0

    count = property(lambda self: self.ints[:, COUNT], doc='observations per voxel')
    label = property(lambda self: self.ints[:, LABEL], doc='label per voxel (-1: none)')
    votes = property(lambda self: self.ints[:, VOTES], doc='majority votes of the label')
    seen = property(lambda self: self.ints[:, SEEN], doc='update that last saw the voxel')

    def __len__(self) -> int:
        """Return the number of voxels."""
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        """Bytes held by the voxel arrays."""
        return self.keys.nbytes + self.sums.nbytes + self.ints.nbytes

    def project(self, features: np.ndarray) -> np.ndarray:
        """Project ``(..., C)`` features to ``(..., feature_dim)`` map channels (fixed PCA)."""
        flat = np.asarray(features, np.float32).reshape(-1, features.shape[-1])
        return self.projection(flat).reshape(features.shape[:-1] + (self.feature_dim,))

    def integrate(self, points: np.ndarray, colours: np.ndarray, labels: np.ndarray | None = None,
                  features: np.ndarray | None = None, origin: np.ndarray | None = None) -> None:
        """Add observed points.

        Args:
            points: ``(N, 3)`` world coordinates.
            colours: ``(N, 3)`` uint8 RGB.
            labels: ``(N,)`` integer ids (negative: unlabelled), or None.
            features: ``(N, feature_dim)`` projected features (:meth:`project`), or None.
            origin: ``(3,)`` camera centre, to evict far voxels first among the oldest.
        """
        self.updates += 1
        if len(points) == 0:
            return
        cells = np.floor(points / self.voxel_size).astype(np.int64)
        keys, inverse = np.unique(pack_keys(cells), return_inverse=True)
        n = len(keys)
        values = [points.astype(np.float64), colours.astype(np.float64)]
        if self.feature_dim:
            values.append(np.zeros((len(points), self.feature_dim)) if features is None
                          else np.asarray(features, np.float64))
        values = np.concatenate(values, 1)
        sums = np.stack([np.bincount(inverse, weights=values[:, c], minlength=n)
                         for c in range(values.shape[1])], 1)
        count = np.bincount(inverse, minlength=n)
        label, votes = self._batch_labels(inverse, n, labels)
        pos = np.searchsorted(self.keys, keys)
        found = pos < len(self.keys)
        found[found] = self.keys[pos[found]] == keys[found]
        old, at = np.nonzero(found)[0], pos[found]
        self.sums[at] += sums[old]
        ints = self.ints[at]
        ints[:, COUNT] += count[old]
        ints[:, SEEN] = self.updates
        votes_now = np.where(ints[:, LABEL] == label[old], ints[:, VOTES] + votes[old],
                             ints[:, VOTES] - votes[old])
        ints[:, LABEL] = np.where(votes_now < 0, label[old], ints[:, LABEL])
        ints[:, VOTES] = np.abs(votes_now)
        self.ints[at] = ints
        new = np.nonzero(~found)[0]
        if len(new):
            where = pos[new]
            self.keys = np.insert(self.keys, where, keys[new])
            self.sums = np.insert(self.sums, where, sums[new], axis=0)
            self.ints = np.insert(self.ints, where, np.stack(
                (count[new], label[new], votes[new], np.full(len(new), self.updates)), 1),
                axis=0)
        if len(self.keys) > self.max_voxels:
            self._evict(origin)

    @staticmethod
    def _batch_labels(inverse: np.ndarray, n: int,
                      labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Most frequent label per voxel of a batch and how many points carried it."""
        if labels is None:
            return np.full(n, IGNORE, np.int32), np.zeros(n, np.int64)
        labels = np.asarray(labels).astype(np.int64)
        ids, compact = np.unique(labels, return_inverse=True)
        table = np.bincount(inverse * len(ids) + compact, minlength=n * len(ids))
        table = table.reshape(n, len(ids))
        best = table.argmax(1)
        return ids[best].astype(np.int32), table[np.arange(n), best]

    def _evict(self, origin: np.ndarray | None) -> None:
        extra = len(self.keys) - self.max_voxels
        distance = np.zeros(len(self.keys))
        if origin is not None:
            distance = np.linalg.norm(self.sums[:, :3] / self.count[:, None] - origin, axis=1)
        order = np.lexsort((-distance, self.seen))  # oldest first, the farthest among equals
        keep = np.sort(order[extra:])
        self.keys, self.sums, self.ints = self.keys[keep], self.sums[keep], self.ints[keep]
        self.evicted += extra

    def cloud(self) -> np.ndarray:
        """Return the map as a structured array of :func:`cloud_dtype`, one point per voxel."""
        out = np.zeros(len(self.keys), cloud_dtype(self.feature_dim))
        if not len(out):
            return out
        mean = self.sums / self.count[:, None].astype(np.float64)
        out['x'], out['y'], out['z'] = (mean[:, i].astype(np.float32) for i in range(3))
        rgb = np.clip(np.rint(mean[:, 3:6]), 0, 255).astype(np.uint32)
        packed = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
        out['rgb'] = packed.view(np.float32)
        out['label'] = self.label
        out['confidence'] = np.where(self.label >= 0, self.votes / self.count, 0.0)
        for i in range(self.feature_dim):
            out[f'f{i}'] = mean[:, 6 + i]
        return out


def depth_points(depth: np.ndarray, intrinsics: np.ndarray, cam_to_world: np.ndarray,
                 voxel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """World points of a depth image, sampled about two per voxel at the median depth.

    Sampling every pixel of a 640x480 image would spend the time on points that fall into the
    same voxels; the stride keeps the points about half a voxel apart where most of the scene
    is, so the map update stays a small part of the model time.

    Args:
        depth: ``(H, W)`` metres (0 or not finite: no measurement).
        intrinsics: ``(3, 3)`` K of the depth image.
        cam_to_world: ``(4, 4)`` pose of its optical frame.
        voxel_size: map voxel edge in metres.

    Returns:
        points ``(N, 3)`` world and their pixels ``(N, 2)`` as (row, col).
    """
    coarse = depth[::8, ::8]  # the median of a sample is enough to choose a stride
    coarse = coarse[np.isfinite(coarse) & (coarse > 0)]
    if not coarse.size:
        coarse = depth[np.isfinite(depth) & (depth > 0)]
        if not coarse.size:
            return np.zeros((0, 3)), np.zeros((0, 2), np.int64)
    stride = max(1, int(voxel_size * intrinsics[0, 0] / (2.0 * float(np.median(coarse)))))
    sampled = depth[::stride, ::stride]
    rows, cols = np.nonzero(np.isfinite(sampled) & (sampled > 0))
    rows, cols = rows * stride, cols * stride
    z = torch.from_numpy(depth[rows, cols].astype(np.float64))
    pixels = torch.from_numpy(np.stack((cols, rows), 1).astype(np.float64))
    points = unproject_pixels(pixels, z, torch.from_numpy(np.asarray(intrinsics, np.float64)),
                              torch.from_numpy(np.asarray(cam_to_world, np.float64))).numpy()
    return points, np.stack((rows, cols), 1)


def write_ply(path: str, cloud: np.ndarray) -> None:
    """Write a map cloud as a binary PLY (colour as red/green/blue bytes) with plyfile."""
    from plyfile import PlyData, PlyElement

    rgb = cloud['rgb'].view(np.uint32)
    names = [n for n in cloud.dtype.names if n != 'rgb']
    dtype = [(n, cloud.dtype[n].str) for n in names[:3]] + [
        ('red', 'u1'), ('green', 'u1'), ('blue', 'u1')] + [(n, cloud.dtype[n].str)
                                                              for n in names[3:]]
    vertex = np.zeros(len(cloud), dtype)
    for name in names:
        vertex[name] = cloud[name]
    vertex['red'], vertex['green'], vertex['blue'] = rgb >> 16 & 255, rgb >> 8 & 255, rgb & 255
    PlyData([PlyElement.describe(vertex, 'vertex')]).write(path)
