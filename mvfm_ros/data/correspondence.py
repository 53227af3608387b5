"""Dense correspondences from depth: reprojection with an occlusion (depth agreement) check."""

from __future__ import annotations

import torch

from mvfm_ros.geometry.projection import project_points, unproject_depth


def reproject(depth_a: torch.Tensor, k_a: torch.Tensor, k_b: torch.Tensor,
              pose_a: torch.Tensor, pose_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where every pixel of view A lands in view B.

    Args:
        depth_a: ``(H, W)`` z-depth of A.
        k_a: ``(3, 3)`` K of A.
        k_b: ``(3, 3)`` K of B.
        pose_a: ``(4, 4)`` camera-to-world of A.
        pose_b: ``(4, 4)`` camera-to-world of B.

    Returns:
        pixels ``(H, W, 2)`` (u, v) in B and depth ``(H, W)`` of the point in B's frame.
    """
    points = unproject_depth(depth_a, k_a, pose_a)
    h, w = depth_a.shape
    pixels, z = project_points(points.reshape(-1, 3), k_b, pose_b)
    return pixels.reshape(h, w, 2), z.reshape(h, w)


def correspondence_mask(depth_a: torch.Tensor, depth_b: torch.Tensor, k_a: torch.Tensor,
                        k_b: torch.Tensor, pose_a: torch.Tensor, pose_b: torch.Tensor,
                        rel_tol: float = 0.03) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels of A whose 3D point is seen (not occluded) in B.

    A pixel corresponds when its depth is valid, it projects in front of B inside B's image,
    and B's depth at the nearest pixel agrees with the projected depth within ``rel_tol``
    (relative). Nearest-pixel lookup avoids blending depths across occlusion edges.

    Returns:
        valid ``(H, W)`` bool and pixels ``(H, W, 2)`` in B.
    """
    pixels, z = reproject(depth_a, k_a, k_b, pose_a, pose_b)
    hb, wb = depth_b.shape
    col = pixels[..., 0].round().long()
    row = pixels[..., 1].round().long()
    inside = (col >= 0) & (col < wb) & (row >= 0) & (row < hb) & (depth_a > 0) & (z > 0)
    seen = depth_b[row.clamp(0, hb - 1), col.clamp(0, wb - 1)]
    agree = (seen > 0) & ((seen - z).abs() <= rel_tol * z)
    return inside & agree, pixels


def corresponding_pixels(depth_a: torch.Tensor, depth_b: torch.Tensor, k_a: torch.Tensor,
                         k_b: torch.Tensor, pose_a: torch.Tensor, pose_b: torch.Tensor,
                         rel_tol: float = 0.03) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat indices ``(N,)`` of the pixels of A and of their partners in B (nearest pixel).

    The pixels :func:`correspondence_mask` keeps, as indices into ``depth_a.flatten()`` and
    ``depth_b.flatten()``: what dense consumers (lifting, consistency scores) index with.
    """
    valid, pixels = correspondence_mask(depth_a, depth_b, k_a, k_b, pose_a, pose_b, rel_tol)
    idx_a = valid.flatten().nonzero()[:, 0]
    uv = pixels.reshape(-1, 2)[idx_a].round().long()
    return idx_a, uv[:, 1] * depth_b.shape[1] + uv[:, 0]


def overlap_fraction(depth_a: torch.Tensor, depth_b: torch.Tensor, k_a: torch.Tensor,
                     k_b: torch.Tensor, pose_a: torch.Tensor, pose_b: torch.Tensor) -> float:
    """Fraction of A's valid-depth pixels that are visible in B."""
    valid, _ = correspondence_mask(depth_a, depth_b, k_a, k_b, pose_a, pose_b)
    has_depth = (depth_a > 0).sum().clamp_min(1)
    return float(valid.sum() / has_depth)


def window_overlap(depth: torch.Tensor, intrinsics: torch.Tensor,
                   cam_to_world: torch.Tensor) -> float:
    """Smallest overlap of view 0 with any other view of a window (1.0 for one view).

    Args:
        depth: ``(V, H, W)``.
        intrinsics: ``(V, 3, 3)``.
        cam_to_world: ``(V, 4, 4)``.
    """
    return min((overlap_fraction(depth[0], depth[v], intrinsics[0], intrinsics[v],
                                 cam_to_world[0], cam_to_world[v])
                for v in range(1, depth.shape[0])), default=1.0)


def sample_correspondences(depth: torch.Tensor, intrinsics: torch.Tensor,
                           cam_to_world: torch.Tensor, num: int, generator: torch.Generator,
                           pairs: list[tuple[int, int]] | None = None) -> torch.Tensor:
    """Draw up to ``num`` random correspondences per view pair from depth.

    Args:
        depth: ``(V, H, W)``.
        intrinsics: ``(V, 3, 3)``.
        cam_to_world: ``(V, 4, 4)``.
        num: correspondences per pair (fewer when the pair overlaps less).
        generator: random source.
        pairs: (a, b) view pairs; default every ordered pair a != b.

    Returns:
        ``(N, 6)`` rows ``(view_a, u_a, v_a, view_b, u_b, v_b)`` in pixels.
    """
    views = depth.shape[0]
    pairs = pairs or [(a, b) for a in range(views) for b in range(views) if a != b]
    rows = []
    for a, b in pairs:
        valid, pixels = correspondence_mask(depth[a], depth[b], intrinsics[a], intrinsics[b],
                                            cam_to_world[a], cam_to_world[b])
        idx = valid.flatten().nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        pick = idx[torch.randperm(idx.numel(), generator=generator)[:num]]
        w = depth.shape[2]
        ua, va = (pick % w).float(), (pick // w).float()
        target = pixels.reshape(-1, 2)[pick]
        rows.append(torch.stack((torch.full_like(ua, a), ua, va, torch.full_like(ua, b),
                                 target[:, 0], target[:, 1]), dim=1))
    return torch.cat(rows) if rows else torch.zeros(0, 6)
