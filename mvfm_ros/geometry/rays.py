"""Plücker ray maps: per pixel (d, o x d) with d the unit ray direction and o the camera centre."""

from __future__ import annotations

import torch

from mvfm_ros.geometry.camera import cross, invert_intrinsics, pixel_grid


def ray_directions(intrinsics: torch.Tensor, cam_to_world: torch.Tensor, height: int,
                   width: int) -> torch.Tensor:
    """Return unit world-frame ray directions through every pixel centre.

    Args:
        intrinsics: ``(..., 3, 3)`` K in pixels.
        cam_to_world: ``(..., 4, 4)`` poses.
        height: image height in pixels.
        width: image width in pixels.

    Returns:
        ``(..., H, W, 3)`` unit directions.
    """
    grid = pixel_grid(height, width, device=intrinsics.device, dtype=intrinsics.dtype)
    homog = torch.cat((grid, torch.ones_like(grid[..., :1])), dim=-1)  # (H, W, 3)
    k_inv = invert_intrinsics(intrinsics)
    rot = cam_to_world[..., :3, :3]
    mat = (rot @ k_inv)[..., None, None, :, :]  # (..., 1, 1, 3, 3)
    dirs = (mat @ homog[..., None]).squeeze(-1)
    return dirs / dirs.norm(dim=-1, keepdim=True)


def plucker_rays(intrinsics: torch.Tensor, cam_to_world: torch.Tensor, height: int,
                 width: int) -> torch.Tensor:
    """Plücker coordinates of the ray through every pixel centre.

    Args:
        intrinsics: ``(..., 3, 3)`` K in pixels.
        cam_to_world: ``(..., 4, 4)`` poses (usually already normalised, see
            :func:`mvfm_ros.geometry.pose.normalize_cameras`).
        height: image height in pixels.
        width: image width in pixels.

    Returns:
        ``(..., 6, H, W)``: channels 0-2 the unit direction d, 3-5 the moment o x d.
    """
    dirs = ray_directions(intrinsics, cam_to_world, height, width)
    origin = cam_to_world[..., None, None, :3, 3].expand_as(dirs)
    moment = cross(origin, dirs)
    rays = torch.cat((dirs, moment), dim=-1)  # (..., H, W, 6)
    n = rays.dim()  # explicit non-negative permutation: exports to a valid ONNX Transpose
    return rays.permute(*range(n - 3), n - 1, n - 3, n - 2)
