"""Geometry: round trips and invariants (kornia-style), against independent computations."""

from __future__ import annotations

import pytest
import torch
from conftest import random_rig, random_rotation

from mvfm_ros.geometry import (
    check_poses,
    intrinsics_from_camera_info,
    invert_rigid,
    normalize_cameras,
    plucker_rays,
    project_points,
    scale_intrinsics,
    unproject_depth,
)

K_FULL = [500.0, 0.0, 319.5, 0.0, 505.0, 239.5, 0.0, 0.0, 1.0]


def _project_cam(k: torch.Tensor, point: torch.Tensor) -> torch.Tensor:
    uvw = k @ point
    return uvw[:2] / uvw[2]


def test_camera_info_binning_and_roi_match_the_published_pixels() -> None:
    point = torch.tensor([0.31, -0.12, 2.0], dtype=torch.float64)
    raw = _project_cam(torch.tensor(K_FULL, dtype=torch.float64).reshape(3, 3), point)
    roi = (100, 40, 300, 400)
    k = intrinsics_from_camera_info(K_FULL, binning_x=2, binning_y=4, roi=roi)
    got = _project_cam(k, point)
    # Binned pixel i averages raw pixels b*i .. b*i+b-1 of the cropped image.
    expected_u = (raw[0] - roi[0] - 0.5) / 2
    expected_v = (raw[1] - roi[1] - 1.5) / 4
    assert torch.allclose(got, torch.stack((expected_u, expected_v)), atol=1e-9)
    # No binning (0 or 1) and no ROI leaves K alone.
    assert torch.equal(intrinsics_from_camera_info(K_FULL, 0, 1).flatten(),
                       torch.tensor(K_FULL, dtype=torch.float64))


@pytest.mark.parametrize('bad', [[0.0] * 9, [float('nan')] + K_FULL[1:], K_FULL[:8]])
def test_camera_info_rejects_invalid_k(bad: list[float]) -> None:
    with pytest.raises(ValueError, match='CameraInfo.k'):
        intrinsics_from_camera_info(bad)


def test_scale_intrinsics_round_trip_and_pixel_centres() -> None:
    k = torch.tensor(K_FULL, dtype=torch.float64).reshape(3, 3)
    scaled = scale_intrinsics(k, 0.25, 0.5)
    assert torch.allclose(scale_intrinsics(scaled, 4.0, 2.0), k)
    point = torch.tensor([-0.4, 0.2, 3.0], dtype=torch.float64)
    u, v = _project_cam(k, point)
    u2, v2 = _project_cam(scaled, point)
    assert torch.isclose(u2, (u + 0.5) * 0.25 - 0.5)
    assert torch.isclose(v2, (v + 0.5) * 0.5 - 0.5)


def test_invert_rigid_round_trip(generator: torch.Generator) -> None:
    poses = random_rig(5, generator)
    eye = torch.eye(4, dtype=torch.float64).expand_as(poses)
    assert torch.allclose(poses @ invert_rigid(poses), eye, atol=1e-12)
    assert torch.allclose(invert_rigid(poses) @ poses, eye, atol=1e-12)
    assert torch.allclose(invert_rigid(poses), torch.linalg.inv(poses), atol=1e-12)


def test_check_poses_rejects_nan_and_non_rigid(generator: torch.Generator) -> None:
    poses = random_rig(3, generator)
    check_poses(poses)
    nan = poses.clone()
    nan[0, 1, 0, 3] = float('nan')
    with pytest.raises(ValueError, match='NaN'):
        check_poses(nan)
    scaled = poses.clone()
    scaled[0, 2, :3, :3] *= 1.5
    with pytest.raises(ValueError, match='rigid'):
        check_poses(scaled)


def test_normalize_cameras_is_invariant_to_rigid_transform_and_scale(
        generator: torch.Generator) -> None:
    poses = random_rig(4, generator)
    transform = torch.eye(4, dtype=torch.float64)
    transform[:3, :3] = random_rotation(generator)
    transform[:3, 3] = torch.tensor([5.0, -3.0, 1.5], dtype=torch.float64)
    moved = transform @ poses
    moved[..., :3, 3] *= 3.7
    for ref in range(4):
        a = normalize_cameras(poses, reference_view=ref)
        b = normalize_cameras(moved, reference_view=ref)
        assert torch.allclose(a, b, atol=1e-10)
        assert torch.allclose(a[0, ref, :3, :3], torch.eye(3, dtype=torch.float64), atol=1e-12)
        assert torch.isclose(a[0, ref, :3, 3].norm(), torch.tensor(2.0, dtype=torch.float64))
        assert torch.allclose(a[0, :, :3, 3].mean(0), torch.zeros(3, dtype=torch.float64),
                              atol=1e-12)


def test_metric_cameras_keep_the_scale_and_ignore_rigid_motion(
        generator: torch.Generator) -> None:
    from mvfm_ros.geometry.pose import condition_poses, metric_cameras

    poses = random_rig(4, generator)
    transform = torch.eye(4, dtype=torch.float64)
    transform[:3, :3] = random_rotation(generator)
    transform[:3, 3] = torch.tensor([5.0, -3.0, 1.5], dtype=torch.float64)
    for ref in range(4):
        a = metric_cameras(poses, ref, scale=1.0)
        assert torch.allclose(a, metric_cameras(transform @ poses, ref), atol=1e-10)
        # Distances between cameras are the metric ones (centring and rotation keep them).
        assert torch.allclose(torch.cdist(a[0, :, :3, 3], a[0, :, :3, 3]),
                              torch.cdist(poses[0, :, :3, 3], poses[0, :, :3, 3]), atol=1e-10)
    twice = poses.clone()
    twice[..., :3, 3] *= 2
    assert torch.allclose(metric_cameras(twice)[..., :3, 3],
                          2 * metric_cameras(poses)[..., :3, 3], atol=1e-10)
    assert torch.allclose(condition_poses(poses, 1, 'paper'), normalize_cameras(poses, 1))
    with pytest.raises(ValueError, match='not one of'):
        condition_poses(poses, 0, 'window')


def test_normalize_cameras_pure_rotation_keeps_zero_translation(
        generator: torch.Generator) -> None:
    poses = random_rig(3, generator)
    poses[..., :3, 3] = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    out = normalize_cameras(poses)
    assert torch.isfinite(out).all()
    assert torch.allclose(out[..., :3, 3], torch.zeros(1, 3, 3, dtype=torch.float64))


def test_plucker_invariants(generator: torch.Generator) -> None:
    poses = random_rig(3, generator)
    k = torch.tensor(K_FULL, dtype=torch.float64).reshape(3, 3) / 10
    k[2, 2] = 1.0
    rays = plucker_rays(k.expand(1, 3, 3, 3), poses, 48, 64)
    assert rays.shape == (1, 3, 6, 48, 64)
    d, m = rays[:, :, :3], rays[:, :, 3:]
    assert torch.allclose(d.norm(dim=2), torch.ones(1, 3, 48, 64, dtype=torch.float64))
    assert (d * m).sum(dim=2).abs().max() < 1e-12
    # The principal point's ray is the camera's optical axis.
    k_c = k.clone()
    k_c[0, 2], k_c[1, 2] = 10.0, 20.0
    axis = plucker_rays(k_c, poses[0, 0], 48, 64)[:3, 20, 10]
    assert torch.allclose(axis, poses[0, 0, :3, 2], atol=1e-12)


def test_plucker_agrees_with_independent_projection(generator: torch.Generator) -> None:
    poses = random_rig(2, generator)[0]
    k = torch.tensor([[60.0, 0.0, 31.5], [0.0, 62.0, 23.5], [0.0, 0.0, 1.0]],
                     dtype=torch.float64)
    rays = plucker_rays(k, poses, 48, 64)  # (V, 6, H, W)
    rows = torch.randint(0, 48, (50,), generator=generator)
    cols = torch.randint(0, 64, (50,), generator=generator)
    for view in range(2):
        d = rays[view, :3, rows, cols].T
        m = rays[view, 3:, rows, cols].T
        origin = poses[view, :3, 3]
        depth = 0.5 + 4 * torch.rand(50, 1, generator=generator, dtype=torch.float64)
        points = origin + depth * d  # points along each ray
        pixels, z = project_points(points, k, poses[view])
        assert (z > 0).all()
        assert torch.allclose(pixels, torch.stack((cols, rows), 1).double(), atol=1e-9)
        # Every point of a Plücker line (d, m) satisfies x × d = m.
        assert torch.allclose(torch.linalg.cross(points, d, dim=-1), m, atol=1e-12)


def test_unproject_then_project_round_trip(generator: torch.Generator) -> None:
    pose = random_rig(1, generator)[0, 0]
    k = torch.tensor([[40.0, 0.0, 15.5], [0.0, 40.0, 11.5], [0.0, 0.0, 1.0]],
                     dtype=torch.float64)
    depth = 1 + torch.rand(24, 32, generator=generator, dtype=torch.float64)
    points = unproject_depth(depth, k, pose)
    pixels, z = project_points(points.reshape(-1, 3), k, pose)
    v, u = torch.meshgrid(torch.arange(24.0), torch.arange(32.0), indexing='ij')
    assert torch.allclose(z, depth.flatten(), atol=1e-12)
    assert torch.allclose(pixels, torch.stack((u, v), -1).reshape(-1, 2).double(), atol=1e-9)


def test_closed_form_intrinsics_inverse_and_cross_product(generator) -> None:
    from mvfm_ros.geometry.camera import cross, invert_intrinsics

    k = torch.tensor([[500.0, 0.7, 320.5], [0.0, 480.0, 240.25], [0.0, 0.0, 1.0]],
                     dtype=torch.float64).expand(2, 3, 3).clone()
    k[1, 0, 0] = 300.0
    assert torch.allclose(invert_intrinsics(k) @ k, torch.eye(3, dtype=torch.float64).expand(
        2, 3, 3), atol=1e-12)
    a = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    b = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    assert torch.allclose(cross(a, b), torch.linalg.cross(a, b), atol=1e-12)


def test_pixels_unproject_to_the_points_that_project_to_them(generator) -> None:
    from mvfm_ros.geometry.projection import unproject_pixels

    pose = random_rig(1, generator)[0, 0]
    k = torch.tensor([[40.0, 0.0, 15.5], [0.0, 42.0, 11.5], [0.0, 0.0, 1.0]],
                     dtype=torch.float64)
    pixels = torch.rand(50, 2, generator=generator, dtype=torch.float64) * 30
    depth = 1 + torch.rand(50, generator=generator, dtype=torch.float64)
    points = unproject_pixels(pixels, depth, k, pose)
    back, z = project_points(points, k, pose)
    assert torch.allclose(back, pixels, atol=1e-9) and torch.allclose(z, depth, atol=1e-12)


def test_corresponding_pixels_satisfy_the_epipolar_constraint(generator) -> None:
    from mvfm_ros.geometry.epipolar import fundamental_matrix, relative_pose, skew

    t = torch.randn(3, generator=generator, dtype=torch.float64)
    u = torch.randn(3, generator=generator, dtype=torch.float64)
    assert torch.allclose(skew(t) @ u, torch.linalg.cross(t, u), atol=1e-12)
    assert torch.allclose(skew(t).T, -skew(t))
    poses = random_rig(2, generator)[0]
    k_a = torch.tensor([[40.0, 0.0, 15.5], [0.0, 40.0, 11.5], [0.0, 0.0, 1.0]],
                       dtype=torch.float64)
    k_b = torch.tensor([[55.0, 0.0, 20.0], [0.0, 50.0, 14.0], [0.0, 0.0, 1.0]],
                       dtype=torch.float64)
    points = torch.randn(40, 3, generator=generator, dtype=torch.float64) * 0.3
    pa, _ = project_points(points, k_a, poses[0])
    pb, _ = project_points(points, k_b, poses[1])
    f = fundamental_matrix(k_a, k_b, relative_pose(poses[0], poses[1]))
    ha = torch.cat((pa, torch.ones(40, 1, dtype=torch.float64)), 1)
    hb = torch.cat((pb, torch.ones(40, 1, dtype=torch.float64)), 1)
    residual = (hb * (ha @ f.T)).sum(1).abs() / (ha @ f.T)[:, :2].norm(dim=1)
    assert residual.max() < 1e-9  # pixels from the distance to the epipolar line
    wrong = (hb.roll(1, 0) * (ha @ f.T)).sum(1).abs() / (ha @ f.T)[:, :2].norm(dim=1)
    assert wrong.median() > 0.5  # a shuffled pairing does not fit
