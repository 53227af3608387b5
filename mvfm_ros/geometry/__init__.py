"""Camera geometry: intrinsics, rigid poses, Plücker rays and projection (no ROS imports).

Names are imported on first use (PEP 562): the numpy-only pose helpers
(``mvfm_ros.geometry.interpolation``) load without PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    'check_poses': 'pose',
    'intrinsics_from_camera_info': 'camera',
    'invert_rigid': 'pose',
    'normalize_cameras': 'pose',
    'pixel_grid': 'camera',
    'plucker_rays': 'rays',
    'project_points': 'projection',
    'ray_directions': 'rays',
    'scale_intrinsics': 'camera',
    'unproject_depth': 'projection',
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    """Import public names on first use."""
    if name in _LAZY:
        return getattr(importlib.import_module(f'mvfm_ros.geometry.{_LAZY[name]}'), name)
    raise AttributeError(f"module 'mvfm_ros.geometry' has no attribute '{name}'")
