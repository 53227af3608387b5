"""The procedural generator and depth correspondences, checked against each other."""

from __future__ import annotations

import math

import pytest
import torch

from mvfm_ros.data import (
    SceneConfig,
    SceneGenerator,
    correspondence_mask,
    sample_correspondences,
)
from mvfm_ros.data.procedural import look_pose


@pytest.fixture(scope='module')
def generator() -> SceneGenerator:
    return SceneGenerator(seed=3, config=SceneConfig(height=64, width=80, supersample=1))


def test_samples_are_deterministic_and_distinct(generator: SceneGenerator) -> None:
    a, b = generator.sample(5, num_views=3), generator.sample(5, num_views=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.cam_to_world, b.cam_to_world)
    c = generator.sample(6, num_views=3)
    assert not torch.equal(a.images, c.images)
    assert a.images.shape == (3, 3, 64, 80) and a.depth.shape == (3, 64, 80)
    assert 0.0 <= float(a.images.min()) and float(a.images.max()) <= 1.0


@pytest.mark.parametrize('index', [0, 1, 2])
def test_ground_truth_is_geometrically_consistent(generator: SceneGenerator, index: int) -> None:
    sample = generator.sample(index, num_views=3)
    assert (sample.depth > 0).all(), 'the room encloses every camera: every pixel hits'
    norms = sample.normals.norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-4)
    # Normals face the camera: n . (ray direction) < 0 in the optical frame.
    k_inv = torch.linalg.inv(sample.intrinsics[0])
    v, u = torch.meshgrid(torch.arange(64.0), torch.arange(80.0), indexing='ij')
    rays = torch.einsum('ij,jhw->ihw', k_inv, torch.stack((u, v, torch.ones_like(u))))
    assert ((sample.normals * rays[None]).sum(1) < 1e-4).all()
    # Corresponding pixels see the same instance with (nearly) the same colour.
    valid, pixels = correspondence_mask(sample.depth[0], sample.depth[1], sample.intrinsics[0],
                                        sample.intrinsics[1], sample.cam_to_world[0],
                                        sample.cam_to_world[1])
    assert valid.float().mean() > 0.1
    col = pixels[..., 0].round().long().clamp(0, 79)
    row = pixels[..., 1].round().long().clamp(0, 63)
    same_id = sample.instances[1][row, col] == sample.instances[0]
    assert same_id[valid].float().mean() > 0.97
    colour_diff = (sample.images[1][:, row, col] - sample.images[0]).abs().mean(0)[valid]
    other = sample.images[1][:, torch.randint(0, 64, (64, 80)), torch.randint(0, 80, (64, 80))]
    random_diff = (other - sample.images[0]).abs().mean(0)[valid]
    assert colour_diff.median() < 0.5 * random_diff.median()


def test_views_overlap_as_configured(generator: SceneGenerator) -> None:
    overlaps = [generator.sample(i, num_views=4).extra['overlap'] for i in range(4)]
    assert sum(o >= generator.config.min_overlap for o in overlaps) >= 3


def test_rig_and_trajectory_options(generator: SceneGenerator) -> None:
    def baseline(sample) -> float:
        return float((sample.cam_to_world[0, :3, 3] - sample.cam_to_world[1, :3, 3]).norm())

    # A stereo rig 5-25 cm wide (drawn per sample), or as wide as asked.
    widths = [baseline(generator.sample(i, num_views=2, trajectory='forward', rig='stereo'))
              for i in range(4)]
    assert all(0.05 <= w <= 0.25 for w in widths) and len(set(widths)) == 4
    asked = generator.sample(0, num_views=2, trajectory='forward', rig='stereo', baseline=0.12)
    assert baseline(asked) == pytest.approx(0.12, abs=1e-4)
    # Small motions: creeping and hovering move centimetres between consecutive frames.
    for kind in ('creep', 'hover'):
        sample = generator.sample(1, num_views=3, trajectory=kind)
        steps = (sample.cam_to_world[1:, :3, 3] - sample.cam_to_world[:-1, :3, 3]).norm(dim=1)
        assert float(steps.max()) < 0.08, (kind, steps)
    with pytest.raises(ValueError, match='unknown trajectory'):
        generator.sample(0, trajectory='teleport')


def test_look_pose_is_optical_frame_in_z_up_world() -> None:
    pose = look_pose([0.0, 0.0, 1.0], yaw=0.0, pitch=0.0)
    assert torch.allclose(torch.tensor(pose[:3, 2]), torch.tensor([1.0, 0.0, 0.0]).double())
    assert torch.allclose(torch.tensor(pose[:3, 1]), torch.tensor([0.0, 0.0, -1.0]).double())
    assert abs(torch.linalg.det(torch.tensor(pose[:3, :3])) - 1) < 1e-12


def _plane_pair(occluder: bool):
    h, w, f = 40, 60, 50.0
    k = torch.tensor([[f, 0.0, (w - 1) / 2], [0.0, f, (h - 1) / 2], [0.0, 0.0, 1.0]])
    pose_a = torch.eye(4)
    pose_b = torch.eye(4)
    pose_b[0, 3] = 0.2  # B is 0.2 m to the right of A; both face a wall at z = 2
    depth_a = torch.full((h, w), 2.0)
    depth_b = torch.full((h, w), 2.0)
    if occluder:
        depth_b[:, :20] = 1.0  # something close to B hides the wall on B's left
    return depth_a, depth_b, k, pose_a, pose_b


def test_correspondences_on_a_plane_match_the_analytic_shift() -> None:
    depth_a, depth_b, k, pose_a, pose_b = _plane_pair(occluder=False)
    valid, pixels = correspondence_mask(depth_a, depth_b, k, k, pose_a, pose_b)
    shift = 50.0 * 0.2 / 2.0  # f * baseline / depth = 5 px to the left
    u = torch.arange(60.0)
    assert torch.allclose(pixels[10, :, 0], u - shift, atol=1e-4)
    assert torch.equal(valid[10], (u - shift) >= -0.5)


def test_occluded_points_are_not_correspondences() -> None:
    depth_a, depth_b, k, pose_a, pose_b = _plane_pair(occluder=True)
    valid, pixels = correspondence_mask(depth_a, depth_b, k, k, pose_a, pose_b)
    target_col = pixels[..., 0].round()
    assert not valid[target_col < 20].any()
    assert valid[(target_col >= 20) & (target_col < 60)].all()


def test_sample_correspondences_rows_are_valid() -> None:
    depth_a, depth_b, k, pose_a, pose_b = _plane_pair(occluder=True)
    rows = sample_correspondences(torch.stack((depth_a, depth_b)), torch.stack((k, k)),
                                  torch.stack((pose_a, pose_b)), num=30,
                                  generator=torch.Generator().manual_seed(0))
    assert rows.shape == (60, 6)
    forward = rows[rows[:, 0] == 0]
    assert torch.allclose(forward[:, 4], forward[:, 1] - 5.0, atol=1e-4)
    assert (forward[:, 4].round() >= 20).all()
    assert not math.isnan(float(rows.sum()))
