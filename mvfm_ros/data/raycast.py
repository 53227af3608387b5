"""Analytic ray casting of boxes and spheres: depth, normals, instance ids and textured colour.

A tiny renderer is hand-written on purpose: the scenes are a few dozen boxes and spheres, for
which closed-form ray intersection in PyTorch is exact, dependency-free and fast on a CPU, and it
yields ground truth (depth, normals, ids) that a rasteriser library would have to be coaxed into.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mvfm_ros.geometry.camera import scale_intrinsics
from mvfm_ros.geometry.rays import ray_directions

_EPS = 1e-6


@dataclass
class Primitives:
    """A scene as tensors (N boxes, S spheres).

    Attributes:
        box_centre: ``(N, 3)`` world centres.
        box_rot: ``(N, 3, 3)`` box-to-world rotations.
        box_half: ``(N, 3)`` half extents.
        box_inside: ``(N,)`` bool, True for the room (seen from inside).
        box_ids: ``(N, 6)`` instance id of each face (-x, +x, -y, +y, -z, +z).
        box_tex: ``(N, 6)`` texture index of each face.
        box_tex_scale: ``(N,)`` metres per texture tile.
        sphere_centre: ``(S, 3)``.
        sphere_radius: ``(S,)``.
        sphere_ids: ``(S,)``.
        sphere_tex: ``(S,)``.
        light: ``(3,)`` unit direction towards the light.
    """

    box_centre: torch.Tensor
    box_rot: torch.Tensor
    box_half: torch.Tensor
    box_inside: torch.Tensor
    box_ids: torch.Tensor
    box_tex: torch.Tensor
    box_tex_scale: torch.Tensor
    sphere_centre: torch.Tensor
    sphere_radius: torch.Tensor
    sphere_ids: torch.Tensor
    sphere_tex: torch.Tensor
    light: torch.Tensor


def _intersect_boxes(origin: torch.Tensor, dirs: torch.Tensor, prims: Primitives):
    """Nearest hit per ray over all boxes: (t, normal, id, texture, uv)."""
    rot = prims.box_rot  # (N, 3, 3)
    o_l = torch.einsum('pnk,nkj->pnj', origin[:, None] - prims.box_centre[None], rot)
    d_l = torch.einsum('pk,nkj->pnj', dirs, rot)
    d_safe = torch.where(d_l.abs() < _EPS, torch.full_like(d_l, _EPS), d_l)
    half = prims.box_half[None]
    t1, t2 = (-half - o_l) / d_safe, (half - o_l) / d_safe
    t_near_ax, t_far_ax = torch.minimum(t1, t2), torch.maximum(t1, t2)
    t_near, near_axis = t_near_ax.max(dim=-1)
    t_far, far_axis = t_far_ax.min(dim=-1)
    inside = prims.box_inside[None].expand_as(t_near)
    t = torch.where(inside, t_far, t_near)
    axis = torch.where(inside, far_axis, near_axis)
    valid = (t_far >= t_near) & (t > _EPS)
    t = torch.where(valid, t, torch.full_like(t, float('inf')))
    t_best, n_best = t.min(dim=1)  # (P,)
    p_idx = torch.arange(origin.shape[0], device=origin.device)
    ax = axis[p_idx, n_best]
    d_hit = d_l[p_idx, n_best]
    sign_d = torch.sign(d_hit.gather(1, ax[:, None]).squeeze(1))
    # Outside: the face faces against the ray; inside (room): also against the ray (inward).
    normal_local = torch.zeros_like(d_hit)
    normal_local.scatter_(1, ax[:, None], -sign_d[:, None])
    normal = torch.einsum('pj,pkj->pk', normal_local, rot[n_best])
    hit_local = o_l[p_idx, n_best] + t_best.clamp_max(1e6)[:, None] * d_hit
    face = ax * 2 + (normal_local.gather(1, ax[:, None]).squeeze(1) > 0).long()
    ids = prims.box_ids[n_best, face]
    tex = prims.box_tex[n_best, face]
    # Planar texture coordinates: the two local axes other than the face axis.
    others = torch.tensor([[1, 2], [0, 2], [0, 1]], device=origin.device)[ax]
    uv = hit_local.gather(1, others) / prims.box_tex_scale[n_best, None]
    return t_best, normal, ids, tex, uv


def _intersect_spheres(origin: torch.Tensor, dirs: torch.Tensor, prims: Primitives):
    """Nearest hit per ray over all spheres: (t, normal, id, texture, uv)."""
    num_rays = origin.shape[0]
    if prims.sphere_centre.shape[0] == 0:
        inf = torch.full((num_rays,), float('inf'), device=origin.device)
        zeros = torch.zeros(num_rays, dtype=torch.long, device=origin.device)
        uv = torch.zeros(num_rays, 2, device=origin.device)
        return inf, torch.zeros_like(origin), zeros, zeros, uv
    oc = origin[:, None] - prims.sphere_centre[None]  # (P, S, 3)
    b = (oc * dirs[:, None]).sum(-1)
    c = (oc * oc).sum(-1) - prims.sphere_radius[None] ** 2
    disc = b * b - c
    t = -b - disc.clamp_min(0).sqrt()
    t = torch.where((disc >= 0) & (t > _EPS), t, torch.full_like(t, float('inf')))
    t_best, s_best = t.min(dim=1)
    hit = origin + t_best.clamp_max(1e6)[:, None] * dirs
    normal = (hit - prims.sphere_centre[s_best]) / prims.sphere_radius[s_best, None]
    u = torch.atan2(normal[:, 1], normal[:, 0]) / (2 * torch.pi) * 4
    v = torch.acos(normal[:, 2].clamp(-1, 1)) / torch.pi * 2
    uv = torch.stack((u, v), 1)
    return t_best, normal, prims.sphere_ids[s_best], prims.sphere_tex[s_best], uv


def _sample_texture(textures: torch.Tensor, tex: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup with wrap-around: ``(P,)`` texture ids, ``(P, 2)`` uv -> ``(P, 3)``."""
    size = textures.shape[-1]
    coords = (uv % 1.0) * size - 0.5
    x0 = coords.floor()
    frac = coords - x0
    x0 = x0.long()
    out = 0
    for dx in (0, 1):
        for dy in (0, 1):
            xi = (x0[:, 0] + dx) % size
            yi = (x0[:, 1] + dy) % size
            wx = frac[:, 0] if dx else 1 - frac[:, 0]
            wy = frac[:, 1] if dy else 1 - frac[:, 1]
            weight = wx * wy
            out = out + weight[:, None] * textures[tex, :, yi, xi]
    return out


def render(prims: Primitives, textures: torch.Tensor, intrinsics: torch.Tensor,
           cam_to_world: torch.Tensor, height: int, width: int,
           supersample: int = 2) -> dict[str, torch.Tensor]:
    """Render one view.

    Args:
        prims: the scene.
        textures: ``(T, 3, S, S)`` texture bank.
        intrinsics: ``(3, 3)`` K.
        cam_to_world: ``(4, 4)`` pose (OpenCV optical convention).
        height: image height.
        width: image width.
        supersample: colour is rendered at this factor and averaged (anti-aliasing).

    Returns:
        ``image`` (3, H, W), ``depth`` (H, W) z-depth, ``normals`` (3, H, W) in the optical frame,
        ``instances`` (H, W) int64.
    """
    out = _cast(prims, textures, intrinsics, cam_to_world, height, width)
    if supersample > 1:
        k_hi = scale_intrinsics(intrinsics, supersample, supersample)
        hi = _cast(prims, textures, k_hi, cam_to_world, height * supersample,
                   width * supersample)
        out['image'] = F.avg_pool2d(hi['image'][None], supersample)[0]
    return out


def _cast(prims: Primitives, textures: torch.Tensor, intrinsics: torch.Tensor,
          cam_to_world: torch.Tensor, height: int, width: int) -> dict[str, torch.Tensor]:
    dirs = ray_directions(intrinsics, cam_to_world, height, width).reshape(-1, 3)
    origin = cam_to_world[:3, 3].expand_as(dirs)
    tb, nb, ib, xb, uvb = _intersect_boxes(origin, dirs, prims)
    ts, ns, is_, xs, uvs = _intersect_spheres(origin, dirs, prims)
    use_s = ts < tb
    t = torch.where(use_s, ts, tb)
    normal = torch.where(use_s[:, None], ns, nb)
    ids = torch.where(use_s, is_, ib)
    tex = torch.where(use_s, xs, xb)
    uv = torch.where(use_s[:, None], uvs.to(uvb), uvb)
    hit = torch.isfinite(t)
    shade = 0.45 + 0.55 * (normal @ prims.light).clamp_min(0)
    colour = _sample_texture(textures, tex, uv) * shade[:, None]
    colour = torch.where(hit[:, None], colour, torch.zeros_like(colour)).clamp(0, 1)
    rot = cam_to_world[:3, :3]
    z = torch.where(hit, t * (dirs @ rot[:, 2]), torch.zeros_like(t))
    normal_cam = torch.where(hit[:, None], normal @ rot, torch.zeros_like(normal))
    return {
        'image': colour.T.reshape(3, height, width),
        'depth': z.reshape(height, width),
        'normals': normal_cam.T.reshape(3, height, width),
        'instances': torch.where(hit, ids, torch.full_like(ids, -1)).reshape(height, width),
    }
