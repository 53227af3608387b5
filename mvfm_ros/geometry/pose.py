"""Rigid transforms in the OpenCV optical convention (camera x right, y down, z forward).

Poses are camera-to-world 4x4 matrices. Inversion uses the closed form R^T, -R^T t rather
than a general matrix inverse: exact for rigid transforms and cheaper.
"""

from __future__ import annotations

import torch


def invert_rigid(transform: torch.Tensor) -> torch.Tensor:
    """Invert rigid transforms.

    Args:
        transform: ``(..., 4, 4)`` rotation + translation matrices.

    Returns:
        ``(..., 4, 4)`` inverses.
    """
    rot = transform[..., :3, :3]
    trans = transform[..., :3, 3:]
    rot_t = rot.transpose(-1, -2)
    out = torch.zeros_like(transform)
    out[..., :3, :3] = rot_t
    out[..., :3, 3:] = -rot_t @ trans
    out[..., 3, 3] = 1.0
    return out


def check_poses(cam_to_world: torch.Tensor, tolerance: float = 1e-3) -> None:
    """Raise ValueError unless every pose is finite and rigid (orthonormal R, last row 0 0 0 1).

    Args:
        cam_to_world: ``(..., 4, 4)`` poses.
        tolerance: largest accepted deviation of R^T R from identity and of det R from 1.
    """
    if cam_to_world.shape[-2:] != (4, 4):
        raise ValueError(f'poses must be (..., 4, 4), got {tuple(cam_to_world.shape)}')
    if not torch.isfinite(cam_to_world).all():
        raise ValueError('poses contain NaN or infinite values')
    rot = cam_to_world[..., :3, :3].double()
    eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
    ortho_err = (rot.transpose(-1, -2) @ rot - eye).abs().amax() if rot.numel() else 0.0
    det_err = (torch.linalg.det(rot) - 1.0).abs().amax() if rot.numel() else 0.0
    if ortho_err > tolerance or det_err > tolerance:
        raise ValueError(
            'poses must be rigid (orthonormal rotation, det +1): '
            f'max |R^T R - I| = {float(ortho_err):.2e}, max |det R - 1| = {float(det_err):.2e}'
        )
    bottom = cam_to_world[..., 3, :].double() - torch.tensor(
        [0.0, 0.0, 0.0, 1.0], dtype=torch.float64, device=cam_to_world.device)
    if bottom.numel() and float(bottom.abs().amax()) > 1e-6:
        raise ValueError('poses must have the last row 0 0 0 1')


POSE_CONDITIONINGS = ('paper', 'metric', 'official')


def condition_poses(cam_to_world: torch.Tensor, reference_view: int, mode: str,
                    metric_scale: float = 1.0) -> torch.Tensor:
    """Poses as the ray conditioning sees them, by the model's ``pose_conditioning``.

    ``paper``: :func:`normalize_cameras` (reference frame, centred, reference camera at
    distance 2: invariant to the scale of the window, which blows a small baseline up to a
    large one). ``metric``: :func:`metric_cameras` (reference frame, centred, a fixed
    metres-to-units scale: a 10 cm stereo pair stays a 10 cm stereo pair). ``official``:
    :func:`official_cameras` (what the paper's public code computes: reference frame, scaled
    as ``paper``, the origin at the reference camera).

    Args:
        cam_to_world: ``(B, V, 4, 4)`` camera-to-world poses (metres for ``metric``).
        reference_view: index of the view whose frame is the reference.
        mode: ``paper``, ``metric`` or ``official``.
        metric_scale: units per metre in ``metric`` mode.

    Returns:
        ``(B, V, 4, 4)`` conditioned camera-to-world poses.
    """
    if mode == 'paper':
        return normalize_cameras(cam_to_world, reference_view)
    if mode == 'metric':
        return metric_cameras(cam_to_world, reference_view, metric_scale)
    if mode == 'official':
        return official_cameras(cam_to_world, reference_view)
    raise ValueError(f"pose conditioning '{mode}' is not one of {POSE_CONDITIONINGS}")


def metric_cameras(cam_to_world: torch.Tensor, reference_view: int = 0,
                   scale: float = 1.0) -> torch.Tensor:
    """Express a window of metric poses relative to a reference camera, centred, fixed scale.

    Unchanged by a rigid transform of all poses; a change of scale changes it (the geometry
    keeps its size).

    Args:
        cam_to_world: ``(B, V, 4, 4)`` camera-to-world poses in metres.
        reference_view: index of the view whose frame is the reference.
        scale: units per metre.

    Returns:
        ``(B, V, 4, 4)`` poses.
    """
    ref = cam_to_world[:, reference_view:reference_view + 1]
    rel = invert_rigid(ref) @ cam_to_world
    centres = rel[..., :3, 3]
    out = rel.clone()
    out[..., :3, 3] = (centres - centres.mean(dim=1, keepdim=True)) * scale
    return out


def normalize_cameras(
    cam_to_world: torch.Tensor,
    reference_view: int = 0,
    target_distance: float = 2.0,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Express a window of poses relative to a reference camera, centred and scaled.

    As in the paper's public code: poses are taken into the reference camera's frame, the origin
    moves to the mean camera centre, and the scene is scaled so the reference camera sits at
    ``target_distance`` from that centre. The result is unchanged by any rigid transform or
    global scale applied to all input poses. When all cameras share one centre (pure rotation)
    no scale is applied.

    Args:
        cam_to_world: ``(B, V, 4, 4)`` camera-to-world poses.
        reference_view: index of the view whose frame is the reference.
        target_distance: distance of the reference camera from the centre after scaling.
        eps: centre distances below this count as "all cameras at one point".

    Returns:
        ``(B, V, 4, 4)`` normalised camera-to-world poses.
    """
    ref = cam_to_world[:, reference_view:reference_view + 1]
    rel = invert_rigid(ref) @ cam_to_world
    centres = rel[..., :3, 3]
    centre = centres.mean(dim=1, keepdim=True)
    shifted = centres - centre
    ref_dist = shifted[:, reference_view].norm(dim=-1)
    scale = torch.where(ref_dist > eps, target_distance / ref_dist.clamp_min(eps), 1.0)
    out = rel.clone()
    out[..., :3, 3] = shifted * scale[:, None, None]
    return out


def official_cameras(cam_to_world: torch.Tensor, reference_view: int = 0,
                     target_distance: float = 2.0) -> torch.Tensor:
    """Poses as the paper's public code conditions them (its COLMAP dataset and rays).

    The code centres the camera centres on their mean (leaving out, as it does, centres
    further than ten times the 97th percentile of the distances to their median), scales
    them so the reference camera sits at ``target_distance`` from that mean, and then takes
    every pose relative to the reference camera, where the centring cancels out: the origin is
    the reference camera itself (unlike :func:`normalize_cameras`, which keeps it centred).

    Args:
        cam_to_world: ``(B, V, 4, 4)`` camera-to-world poses.
        reference_view: index of the view whose frame is the reference.
        target_distance: distance of the reference camera from the (robust) mean centre.

    Returns:
        ``(B, V, 4, 4)`` poses in the reference camera's frame, translations scaled.
    """
    centres = cam_to_world[..., :3, 3]
    to_median = (centres - centres.median(dim=1, keepdim=True).values).norm(dim=-1)
    limit = (torch.quantile(to_median, 0.97, dim=1, keepdim=True) * 10).clamp(max=1e6)
    valid = (to_median <= limit).to(centres.dtype)[..., None]
    mean = (centres * valid).sum(1, keepdim=True) / valid.sum(1, keepdim=True)
    distance = (centres[:, reference_view] - mean[:, 0]).norm(dim=-1)
    scale = torch.where(distance > 1e-5, target_distance / distance.clamp_min(1e-12),
                        torch.full_like(distance, target_distance))
    ref = cam_to_world[:, reference_view:reference_view + 1]
    rel = invert_rigid(ref) @ cam_to_world
    out = rel.clone()
    out[..., :3, 3] = rel[..., :3, 3] * scale[:, None, None]
    return out
