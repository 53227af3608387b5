"""Projection of world points into cameras and back-projection of depth."""

from __future__ import annotations

import torch

from mvfm_ros.geometry.camera import invert_intrinsics, pixel_grid
from mvfm_ros.geometry.pose import invert_rigid


def project_points(points: torch.Tensor, intrinsics: torch.Tensor,
                   cam_to_world: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Project world points into a camera.

    Args:
        points: ``(..., N, 3)`` world points.
        intrinsics: ``(..., 3, 3)`` K.
        cam_to_world: ``(..., 4, 4)`` pose.

    Returns:
        pixels ``(..., N, 2)`` as (u, v) and depth ``(..., N)`` along the optical axis. Pixels of
        points with depth <= 0 are meaningless; callers mask them with the depth.
    """
    world_to_cam = invert_rigid(cam_to_world)
    cam = points @ world_to_cam[..., :3, :3].transpose(-1, -2) + world_to_cam[..., None, :3, 3]
    depth = cam[..., 2]
    proj = cam @ intrinsics.transpose(-1, -2)
    pixels = proj[..., :2] / proj[..., 2:].clamp_min(1e-12)
    return pixels, depth


def unproject_depth(depth: torch.Tensor, intrinsics: torch.Tensor,
                    cam_to_world: torch.Tensor) -> torch.Tensor:
    """Back-project a depth map (z along the optical axis) to world points.

    Args:
        depth: ``(..., H, W)`` depth in metres.
        intrinsics: ``(..., 3, 3)`` K.
        cam_to_world: ``(..., 4, 4)`` pose.

    Returns:
        ``(..., H, W, 3)`` world points.
    """
    height, width = depth.shape[-2:]
    grid = pixel_grid(height, width, device=depth.device, dtype=depth.dtype)
    homog = torch.cat((grid, torch.ones_like(grid[..., :1])), dim=-1)
    k_inv = invert_intrinsics(intrinsics)[..., None, None, :, :]
    cam = (k_inv @ homog[..., None]).squeeze(-1) * depth[..., None]
    rot = cam_to_world[..., None, None, :3, :3]
    return (rot @ cam[..., None]).squeeze(-1) + cam_to_world[..., None, None, :3, 3]


def unproject_pixels(pixels: torch.Tensor, depth: torch.Tensor, intrinsics: torch.Tensor,
                     cam_to_world: torch.Tensor) -> torch.Tensor:
    """Back-project pixels with their depth (z along the optical axis) to world points.

    Args:
        pixels: ``(N, 2)`` (u, v) pixel coordinates (pixel centres at integers).
        depth: ``(N,)`` metres.
        intrinsics: ``(3, 3)`` pinhole K (no skew).
        cam_to_world: ``(4, 4)`` pose.

    Returns:
        ``(N, 3)`` world points.
    """
    x = (pixels[:, 0] - intrinsics[0, 2]) / intrinsics[0, 0] * depth
    y = (pixels[:, 1] - intrinsics[1, 2]) / intrinsics[1, 1] * depth
    cam = torch.stack((x, y, depth), 1)
    return cam @ cam_to_world[:3, :3].T + cam_to_world[:3, 3]
