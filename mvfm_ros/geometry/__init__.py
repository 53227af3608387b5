"""Camera geometry: intrinsics, rigid poses, Plücker rays and projection (no ROS imports)."""

from mvfm_ros.geometry.camera import intrinsics_from_camera_info, pixel_grid, scale_intrinsics
from mvfm_ros.geometry.pose import check_poses, invert_rigid, normalize_cameras
from mvfm_ros.geometry.projection import project_points, unproject_depth
from mvfm_ros.geometry.rays import plucker_rays, ray_directions

__all__ = [
    'check_poses',
    'intrinsics_from_camera_info',
    'invert_rigid',
    'normalize_cameras',
    'pixel_grid',
    'plucker_rays',
    'project_points',
    'ray_directions',
    'scale_intrinsics',
    'unproject_depth',
]
