"""Poses over time: interpolate a pose stream to image stamps, never extrapolate."""

from __future__ import annotations

import bisect
import math

import numpy as np

from mvfm_ros.geometry.interpolation import interpolate_pose
from mvfm_ros.pipeline.frame import FrameError


class PoseLookupError(FrameError):
    """No pose for a stamp: ``pose_extrapolation`` (outside the data) or ``pose_gap``.

    ``ahead`` is True when the stamp is newer than every pose held (a pose that covers it may
    still arrive).
    """

    def __init__(self, kind: str, message: str, ahead: bool = False) -> None:
        """Record whether the stamp lies ahead of the data."""
        super().__init__(kind, message)
        self.ahead = ahead


class PoseBuffer:
    """Time-sorted ``(4, 4)`` poses of one frame in another, interpolated at query stamps.

    Args:
        max_gap: seconds; a stamp between two poses further apart than this has no pose
            (``math.inf``: any gap, as tf2 interpolates).
        max_age: seconds of history kept (0: everything, for offline use).
    """

    def __init__(self, max_gap: float = 0.5, max_age: float = 30.0) -> None:
        """Start empty."""
        self.max_gap_ns = max_gap * 1e9 if math.isinf(max_gap) else int(max_gap * 1e9)
        self.max_age_ns = int(max_age * 1e9)
        self.stamps: list[int] = []
        self.poses: list[np.ndarray] = []

    def __len__(self) -> int:
        """Return the number of poses held."""
        return len(self.stamps)

    def add(self, stamp_ns: int, pose: np.ndarray) -> None:
        """Insert a pose (out-of-order arrivals are placed in order; same stamp replaces)."""
        pose = np.asarray(pose, dtype=np.float64)
        if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
            raise ValueError('pose must be a finite (4, 4) transform')
        i = bisect.bisect_left(self.stamps, stamp_ns)
        if i < len(self.stamps) and self.stamps[i] == stamp_ns:
            self.poses[i] = pose
        else:
            self.stamps.insert(i, stamp_ns)
            self.poses.insert(i, pose)
        if self.max_age_ns and self.stamps[-1] - self.stamps[0] > self.max_age_ns:
            cut = bisect.bisect_left(self.stamps, self.stamps[-1] - self.max_age_ns)
            del self.stamps[:cut], self.poses[:cut]

    def clear(self) -> None:
        """Forget every pose."""
        self.stamps.clear()
        self.poses.clear()

    def latest_stamp(self) -> int | None:
        """Stamp of the newest pose, or None."""
        return self.stamps[-1] if self.stamps else None

    def lookup(self, stamp_ns: int) -> np.ndarray:
        """Pose at ``stamp_ns``, interpolated between the poses around it.

        Raises:
            PoseLookupError: the stamp is outside the buffered time range (``extrapolation``)
                or the poses around it are more than ``max_gap`` apart (``gap``).
        """
        if not self.stamps:
            raise PoseLookupError('pose_extrapolation', 'no poses received yet', ahead=True)
        i = bisect.bisect_left(self.stamps, stamp_ns)
        if i < len(self.stamps) and self.stamps[i] == stamp_ns:
            return self.poses[i].copy()
        if i == 0 or i == len(self.stamps):
            first, last = self.stamps[0] / 1e9, self.stamps[-1] / 1e9
            raise PoseLookupError(
                'pose_extrapolation',
                f'stamp {stamp_ns / 1e9:.3f} s is outside the poses received ({first:.3f} .. '
                f'{last:.3f} s); poses are interpolated, never extrapolated',
                ahead=i == len(self.stamps))
        t0, t1 = self.stamps[i - 1], self.stamps[i]
        if t1 - t0 > self.max_gap_ns:
            raise PoseLookupError(
                'pose_gap', f'poses around stamp {stamp_ns / 1e9:.3f} s are '
                f'{(t1 - t0) / 1e9:.3f} s apart (max_pose_gap {self.max_gap_ns / 1e9:g} s)')
        return interpolate_pose(self.poses[i - 1], self.poses[i], (stamp_ns - t0) / (t1 - t0))
