"""Posed RGB-D sequences: 7-Scenes, ScanNet / ScanNet++ exports, TUM RGB-D.

Each loader turns its format into a list of :class:`RGBDFrame`; :class:`RGBDSequence` then builds
multi-view samples from windows of frames, rejecting windows whose views do not overlap.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mvfm_ros.data.colmap import quat_to_rot
from mvfm_ros.data.correspondence import window_overlap
from mvfm_ros.data.imageio import image_size, read_depth, read_rgb, resize_depth, resize_image
from mvfm_ros.data.sample import MultiViewSample
from mvfm_ros.geometry.camera import scale_intrinsics


@dataclass
class RGBDFrame:
    """One posed RGB-D frame. K refers to the colour image; depth is resized to match it."""

    color: Path
    depth: Path | None
    cam_to_world: np.ndarray
    intrinsics: np.ndarray
    stamp: float = 0.0


class RGBDSequence:
    """A posed RGB-D sequence that yields overlapping multi-view windows.

    Args:
        frames: the frames, in time order.
        depth_scale: depth PNG units per metre (1000 for 7-Scenes and ScanNet, 5000 for TUM).
        invalid_depth: raw depth values meaning "no measurement".
        name: for sample names and logs.
    """

    def __init__(self, frames: list[RGBDFrame], depth_scale: float,
                 invalid_depth: tuple[int, ...] = (0,), name: str = '') -> None:
        """Keep the frames; poses with NaN/inf (ScanNet marks lost tracking so) are dropped."""
        self.frames = [f for f in frames if np.isfinite(f.cam_to_world).all()]
        if not self.frames:
            raise ValueError(f'sequence {name!r} has no frames with a valid pose')
        self.depth_scale = depth_scale
        self.invalid_depth = invalid_depth
        self.name = name

    def __len__(self) -> int:
        """Return the number of frames."""
        return len(self.frames)

    def _view(self, frame: RGBDFrame, size: tuple[int, int] | None,
              with_image: bool) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Return (image or None, K, depth) of one frame at ``size``.

        ``size`` defaults to the depth resolution (ScanNet: colour 1296x968 comes down to the
        640x480 of its depth). Without ``with_image`` the colour file is not decoded: only its
        header is read, for the size K refers to.
        """
        image = read_rgb(frame.color) if with_image else None
        color_hw = tuple(image.shape[1:]) if image is not None else image_size(frame.color)
        depth = None
        if frame.depth is not None:
            depth = read_depth(frame.depth, self.depth_scale, self.invalid_depth)
        target = tuple(size or (depth.shape if depth is not None else color_hw))
        k = scale_intrinsics(torch.tensor(frame.intrinsics, dtype=torch.float32),
                             target[1] / color_hw[1], target[0] / color_hw[0])
        if image is not None and tuple(image.shape[1:]) != target:
            image = resize_image(image, target)
        if depth is None:
            depth = torch.zeros(target)
        elif tuple(depth.shape) != target:
            depth = resize_depth(depth, target)
        return image, k, depth

    def load(self, indices: list[int], size: tuple[int, int] | None = None) -> MultiViewSample:
        """Load frames as one sample, resized to ``size`` (H, W) if given."""
        views = [self._view(self.frames[i], size, with_image=True) for i in indices]
        return MultiViewSample(images=torch.stack([v[0] for v in views]),
                               intrinsics=torch.stack([v[1] for v in views]),
                               cam_to_world=self._poses(indices),
                               depth=torch.stack([v[2] for v in views]),
                               name=f'{self.name}/{",".join(map(str, indices))}')

    def _poses(self, indices: list[int]) -> torch.Tensor:
        return torch.stack([torch.tensor(self.frames[i].cam_to_world, dtype=torch.float32)
                            for i in indices])

    def windows(self, num_views: int, stride: int = 1, min_overlap: float = 0.2,
                size: tuple[int, int] | None = (120, 160)) -> list[list[int]]:
        """Frame-index windows of ``num_views`` frames, ``stride`` apart, that overlap.

        Overlap (fraction of view 0's depth pixels seen in each other view) is computed on
        depth maps downsized to ``size`` for speed.
        """
        out = []
        span = (num_views - 1) * stride
        for start in range(0, len(self.frames) - span, max(1, span)):
            idx = [start + v * stride for v in range(num_views)]
            views = [self._view(self.frames[i], size, with_image=False) for i in idx]
            overlap = window_overlap(torch.stack([v[2] for v in views]),
                                     torch.stack([v[1] for v in views]), self._poses(idx))
            if overlap >= min_overlap:
                out.append(idx)
        return out


def _read_matrix(path: Path, rows: int) -> np.ndarray:
    return np.loadtxt(path, dtype=np.float64).reshape(-1, 4 if rows == 4 else 3)[:rows]


def load_7scenes(root: str | Path) -> RGBDSequence:
    """7-Scenes layout: ``frame-XXXXXX.{color.jpg,depth.png,pose.txt}``, ``camera-intrinsics.txt``.

    Depth is millimetres; 0 and 65535 are invalid. Colour is not registered to depth (a few
    pixels of offset), as in the original data.
    """
    root = Path(root)
    k_path = root / 'camera-intrinsics.txt'
    k = _read_matrix(k_path, 3) if k_path.is_file() else np.array(
        [[585.0, 0, 320.0], [0, 585.0, 240.0], [0, 0, 1]])
    frames = []
    for pose_path in sorted(root.glob('frame-*.pose.txt')):
        stem = pose_path.name[:-len('.pose.txt')]
        color = root / f'{stem}.color.png'
        color = color if color.is_file() else root / f'{stem}.color.jpg'
        frames.append(RGBDFrame(color, root / f'{stem}.depth.png', _read_matrix(pose_path, 4), k,
                                float(re.sub(r'\D', '', stem) or 0)))
    if not frames:
        raise FileNotFoundError(f"no frame-*.pose.txt files in '{root}'")
    return RGBDSequence(frames, depth_scale=1000.0, invalid_depth=(0, 65535), name=root.name)


def load_scannet(root: str | Path) -> RGBDSequence:
    """ScanNet/ScanNet++ export: ``color/N.jpg``, ``depth/N.png``, ``pose/N.txt``, ``intrinsic/``.

    ``intrinsic/intrinsic_color.txt`` (4x4) describes the colour image; the colour image is
    resized to the depth resolution when loading, with K scaled accordingly.
    """
    root = Path(root)
    k = _read_matrix(root / 'intrinsic' / 'intrinsic_color.txt', 4)[:3, :3]
    frames = []
    poses = sorted((root / 'pose').glob('*.txt'), key=lambda p: int(p.stem))
    for pose_path in poses:
        n = pose_path.stem
        color = root / 'color' / f'{n}.jpg'
        frames.append(RGBDFrame(color, root / 'depth' / f'{n}.png', _read_matrix(pose_path, 4),
                                k, float(n)))
    if not frames:
        raise FileNotFoundError(f"no pose/*.txt files in '{root}'")
    return RGBDSequence(frames, depth_scale=1000.0, name=root.name)


TUM_INTRINSICS = {  # from the TUM RGB-D benchmark's camera calibration page
    'freiburg1': (517.3, 516.5, 318.6, 255.3),
    'freiburg2': (520.9, 521.0, 325.1, 249.7),
    'freiburg3': (535.4, 539.2, 320.1, 247.6),
}


def _tum_list(path: Path) -> list[tuple[float, list[str]]]:
    rows = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith('#'):
            parts = line.split()
            rows.append((float(parts[0]), parts[1:]))
    return rows


def _nearest(stamps: list[float], t: float) -> int:
    i = bisect.bisect_left(stamps, t)
    candidates = [j for j in (i - 1, i) if 0 <= j < len(stamps)]
    return min(candidates, key=lambda j: abs(stamps[j] - t))


def load_tum(root: str | Path, intrinsics: tuple[float, float, float, float] | None = None,
             max_dt: float = 0.02) -> RGBDSequence:
    """TUM RGB-D: ``rgb.txt``, ``depth.txt``, ``groundtruth.txt``, associated by timestamp.

    Each colour frame takes the nearest depth frame and the ground-truth pose interpolated
    (linear position, nearest rotation within ``max_dt``); frames without both within
    ``max_dt`` seconds are skipped. Intrinsics default to the sensor named in the folder
    (freiburg1/2/3). Depth is 5000 units per metre.
    """
    root = Path(root)
    if intrinsics is None:
        sensor = next((s for s in TUM_INTRINSICS if s in root.name), 'freiburg1')
        intrinsics = TUM_INTRINSICS[sensor]
    fx, fy, cx, cy = intrinsics
    k = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
    depth_rows = _tum_list(root / 'depth.txt')
    gt_rows = _tum_list(root / 'groundtruth.txt')
    d_stamps = [t for t, _ in depth_rows]
    g_stamps = [t for t, _ in gt_rows]
    frames = []
    for t, (rel,) in ((t, p[:1]) for t, p in _tum_list(root / 'rgb.txt')):
        if not d_stamps or not g_stamps:
            break
        d = _nearest(d_stamps, t)
        g = _nearest(g_stamps, t)
        if abs(d_stamps[d] - t) > max_dt or abs(g_stamps[g] - t) > max_dt:
            continue
        tx, ty, tz, qx, qy, qz, qw = (float(v) for v in gt_rows[g][1][:7])
        pose = np.eye(4)
        pose[:3, :3] = quat_to_rot(qw, qx, qy, qz)
        pose[:3, 3] = (tx, ty, tz)
        frames.append(RGBDFrame(root / rel, root / depth_rows[d][1][0], pose, k, t))
    if not frames:
        raise ValueError(f"no colour frame in '{root}' has depth and ground truth within "
                         f'{max_dt} s')
    return RGBDSequence(frames, depth_scale=5000.0, name=root.name)


__all__ = ['RGBDFrame', 'RGBDSequence', 'load_7scenes', 'load_scannet', 'load_tum']
