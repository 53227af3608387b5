"""Keyframe selection: a frame joins the window when its camera moved, turned or time passed."""

from __future__ import annotations

import math

import numpy as np

from mvfm_ros.geometry.interpolation import rotation_angle


class KeyframeSelector:
    """Decide per camera whether a frame is a keyframe.

    Args:
        min_translation: metres since the camera's last keyframe.
        min_rotation_deg: degrees since the camera's last keyframe.
        max_interval: seconds since the camera's last keyframe (0: no time trigger).
    """

    def __init__(self, min_translation: float, min_rotation_deg: float,
                 max_interval: float) -> None:
        """Start with no keyframes."""
        self.min_translation = min_translation
        self.min_rotation = math.radians(min_rotation_deg)
        self.max_interval_ns = int(max_interval * 1e9)
        self.last: dict[str, tuple[int, np.ndarray]] = {}

    def is_keyframe(self, camera: str, stamp_ns: int, cam_to_world: np.ndarray) -> bool:
        """Return True (and remember the frame) if it should join the window."""
        previous = self.last.get(camera)
        keep = previous is None
        if not keep:
            stamp0, pose0 = previous
            moved = float(np.linalg.norm(cam_to_world[:3, 3] - pose0[:3, 3]))
            turned = rotation_angle(pose0[:3, :3].T @ cam_to_world[:3, :3])
            keep = (moved >= self.min_translation or turned >= self.min_rotation
                    or (self.max_interval_ns > 0
                        and stamp_ns - stamp0 >= self.max_interval_ns))
        if keep:
            self.last[camera] = (stamp_ns, cam_to_world.copy())
        return keep

    def reset(self) -> None:
        """Forget every camera's last keyframe."""
        self.last.clear()
