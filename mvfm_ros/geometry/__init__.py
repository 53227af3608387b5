"""Camera geometry: intrinsics, rigid poses, Plücker rays and projection (no ROS imports).

Names are imported on first use (PEP 562): the numpy-only pose helpers
(``mvfm_ros.geometry.interpolation``) load without PyTorch.
"""

from __future__ import annotations

from mvfm_ros._lazy import lazy_getattr

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

__getattr__ = lazy_getattr('mvfm_ros.geometry', _LAZY)
