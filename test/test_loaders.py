"""Loaders: fixtures written by the tests in each format, and the real captures in shared/data."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mvfm_ros.data import SceneConfig, SceneGenerator, correspondence_mask
from mvfm_ros.data.colmap import MODEL_IDS, read_model, track_matches
from mvfm_ros.data.rgbd import load_7scenes, load_scannet, load_tum
from mvfm_ros.geometry import project_points

SHARED = Path(__file__).resolve().parents[1].parent / 'shared' / 'data'
SEVEN = SHARED / '7scenes-redkitchen'
COLMAP = SHARED / 'colmap-maupertuis'
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f'real captures not at {SHARED}')


@pytest.fixture(scope='module')
def generated():
    gen = SceneGenerator(seed=11, config=SceneConfig(height=48, width=64, supersample=1))
    return gen.sample(0, num_views=3, trajectory='forward')


def _write_png(path: Path, image: torch.Tensor) -> None:
    Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)


def _write_depth(path: Path, depth: torch.Tensor, scale: float) -> None:
    Image.fromarray((depth.numpy() * scale).round().astype(np.uint16)).save(path)


def _check_against(sample, loaded) -> None:
    assert torch.allclose(loaded.cam_to_world, sample.cam_to_world, atol=1e-5)
    assert torch.allclose(loaded.intrinsics, sample.intrinsics, atol=1e-4)
    assert (loaded.depth - sample.depth).abs().max() < 1e-3  # millimetre quantisation
    assert (loaded.images - sample.images).abs().max() < 1 / 255 + 1e-6


def test_7scenes_layout_round_trip(tmp_path: Path, generated) -> None:
    np.savetxt(tmp_path / 'camera-intrinsics.txt', generated.intrinsics[0].numpy())
    for v in range(3):
        stem = tmp_path / f'frame-{v:06d}'
        _write_png(Path(f'{stem}.color.png'), generated.images[v])
        _write_depth(Path(f'{stem}.depth.png'), generated.depth[v], 1000.0)
        np.savetxt(f'{stem}.pose.txt', generated.cam_to_world[v].numpy())
    seq = load_7scenes(tmp_path)
    _check_against(generated, seq.load([0, 1, 2]))


def test_scannet_layout_round_trip(tmp_path: Path, generated) -> None:
    for sub in ('color', 'depth', 'pose', 'intrinsic'):
        (tmp_path / sub).mkdir()
    k4 = np.eye(4)
    k4[:3, :3] = generated.intrinsics[0].numpy()
    np.savetxt(tmp_path / 'intrinsic' / 'intrinsic_color.txt', k4)
    for v in range(3):
        Image.fromarray((generated.images[v].permute(1, 2, 0).numpy() * 255).round().astype(
            np.uint8)).save(tmp_path / 'color' / f'{v}.jpg', quality=100)
        _write_depth(tmp_path / 'depth' / f'{v}.png', generated.depth[v], 1000.0)
        np.savetxt(tmp_path / 'pose' / f'{v}.txt', generated.cam_to_world[v].numpy())
    (tmp_path / 'pose' / '3.txt').write_text('-inf -inf -inf -inf\n' * 4)  # lost tracking
    seq = load_scannet(tmp_path)
    assert len(seq) == 3
    loaded = seq.load([0, 1, 2])
    assert torch.allclose(loaded.cam_to_world, generated.cam_to_world, atol=1e-5)
    assert (loaded.images - generated.images).abs().mean() < 0.03  # JPEG


def _rot_to_quat(rot: np.ndarray) -> tuple[float, float, float, float]:
    w = np.sqrt(max(0.0, 1 + np.trace(rot))) / 2
    x = np.copysign(np.sqrt(max(0.0, 1 + rot[0, 0] - rot[1, 1] - rot[2, 2])) / 2,
                    rot[2, 1] - rot[1, 2])
    y = np.copysign(np.sqrt(max(0.0, 1 - rot[0, 0] + rot[1, 1] - rot[2, 2])) / 2,
                    rot[0, 2] - rot[2, 0])
    z = np.copysign(np.sqrt(max(0.0, 1 - rot[0, 0] - rot[1, 1] + rot[2, 2])) / 2,
                    rot[1, 0] - rot[0, 1])
    return w, x, y, z


def test_tum_association_and_round_trip(tmp_path: Path, generated) -> None:
    (tmp_path / 'rgb').mkdir()
    (tmp_path / 'depth').mkdir()
    rgb, depth, gt = ['# rgb'], ['# depth'], ['# ground truth']
    for v in range(3):
        t = 100.0 + v
        _write_png(tmp_path / 'rgb' / f'{t:.6f}.png', generated.images[v])
        _write_depth(tmp_path / 'depth' / f'{t + 0.01:.6f}.png', generated.depth[v], 5000.0)
        rgb.append(f'{t:.6f} rgb/{t:.6f}.png')
        depth.append(f'{t + 0.01:.6f} depth/{t + 0.01:.6f}.png')
        pose = generated.cam_to_world[v].double().numpy()
        w, x, y, z = _rot_to_quat(pose[:3, :3])
        gt.append(f'{t - 0.005:.4f} {pose[0, 3]} {pose[1, 3]} {pose[2, 3]} {x} {y} {z} {w}')
    rgb.append('200.000000 rgb/none.png')  # no depth or pose near it: skipped
    for name, lines in (('rgb.txt', rgb), ('depth.txt', depth), ('groundtruth.txt', gt)):
        (tmp_path / name).write_text('\n'.join(lines) + '\n')
    k = generated.intrinsics[0]
    seq = load_tum(tmp_path, intrinsics=(k[0, 0], k[1, 1], k[0, 2], k[1, 2]))
    assert len(seq) == 3
    _check_against(generated, seq.load([0, 1, 2]))


def _write_colmap(root: Path, binary: bool, sample, points: np.ndarray) -> None:
    """Write a COLMAP model of ``sample``'s cameras observing ``points`` (COLMAP conventions)."""
    k = sample.intrinsics[0].double().numpy()
    h, w = sample.image_size
    cams = [(1, 'PINHOLE', w, h, [k[0, 0], k[1, 1], k[0, 2] + 0.5, k[1, 2] + 0.5])]
    images = []
    for v in range(sample.num_views):
        pose = sample.cam_to_world[v].double().numpy()
        rot_wc = pose[:3, :3].T
        t_wc = -rot_wc @ pose[:3, 3]
        px, _ = project_points(torch.tensor(points), torch.tensor(k), torch.tensor(pose))
        obs = [(u + 0.5, vv + 0.5, pid) for pid, (u, vv) in enumerate(px.numpy().tolist())]
        images.append((v + 1, _rot_to_quat(rot_wc), t_wc, 1, f'{v}.png', obs))
    if not binary:
        (root / 'cameras.txt').write_text(
            '\n'.join(f'{c[0]} {c[1]} {c[2]} {c[3]} ' + ' '.join(map(str, c[4])) for c in cams))
        lines = ['# images']
        for iid, q, t, cid, name, obs in images:
            numbers = ' '.join(repr(float(x)) for x in (*q, *t))
            lines.append(f'{iid} {numbers} {cid} {name}')
            lines.append(' '.join(f'{float(u)!r} {float(v)!r} {p}' for u, v, p in obs))
        (root / 'images.txt').write_text('\n'.join(lines) + '\n')
        (root / 'points3D.txt').write_text('\n'.join(
            f'{i} {p[0]} {p[1]} {p[2]} 0 0 0 0.1' for i, p in enumerate(points)))
        return
    with open(root / 'cameras.bin', 'wb') as f:
        f.write(struct.pack('<Q', len(cams)))
        for cid, model, width, height, params in cams:
            f.write(struct.pack('<iiQQ', cid, MODEL_IDS[model][0], width, height))
            f.write(struct.pack(f'<{len(params)}d', *params))
    with open(root / 'images.bin', 'wb') as f:
        f.write(struct.pack('<Q', len(images)))
        for iid, q, t, cid, name, obs in images:
            f.write(struct.pack('<i7di', iid, *q, *t, cid) + name.encode() + b'\x00')
            f.write(struct.pack('<Q', len(obs)))
            for u, v, p in obs:
                f.write(struct.pack('<ddq', u, v, p))
    with open(root / 'points3D.bin', 'wb') as f:
        f.write(struct.pack('<Q', len(points)))
        for i, p in enumerate(points):
            f.write(struct.pack('<Q3d3BdQ', i, *p, 0, 0, 0, 0.1, 0))


@pytest.mark.parametrize('binary', [False, True])
def test_colmap_text_and_binary_round_trip(tmp_path: Path, generated, binary: bool) -> None:
    from mvfm_ros.geometry import unproject_depth

    # 3D points = back-projected pixels of view 0 that view 1 sees.
    valid, _ = correspondence_mask(generated.depth[0], generated.depth[1],
                                   generated.intrinsics[0], generated.intrinsics[1],
                                   generated.cam_to_world[0], generated.cam_to_world[1])
    world = unproject_depth(generated.depth[0].double(), generated.intrinsics[0].double(),
                            generated.cam_to_world[0].double())
    points = world[valid][:20].numpy()
    _write_colmap(tmp_path, binary, generated, points)
    model = read_model(tmp_path)
    assert len(model.images) == 3 and len(model.points3d) == len(points)
    for v in range(3):
        assert np.allclose(model.images[v + 1].cam_to_world,
                           generated.cam_to_world[v].double().numpy(), atol=1e-5)
    assert np.allclose(model.cameras[1].intrinsics, generated.intrinsics[0].double().numpy())
    matches = track_matches(model, [1, 2])
    assert matches.shape == (2 * len(points), 6)
    # Track matches agree with depth-based reprojection of the same points.
    rows = matches[matches[:, 0] == 0]
    px, _ = project_points(torch.tensor(points), generated.intrinsics[1].double(),
                           generated.cam_to_world[1].double())
    assert np.allclose(rows[:, 4:6], px.numpy(), atol=1e-6)


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match='no COLMAP model'):
        read_model(tmp_path)
    with pytest.raises(FileNotFoundError, match='frame-'):
        load_7scenes(tmp_path)


@needs_shared
def test_real_colmap_model_reprojects_its_tracks() -> None:
    model = read_model(COLMAP / 'sparse')
    assert len(model.images) == 4 and len(model.points3d) == 1039
    k = torch.tensor(model.cameras[1].intrinsics)
    errors = []
    for img in model.images.values():
        keep = img.point3d_ids >= 0
        pts = torch.tensor(np.stack([model.points3d[i] for i in img.point3d_ids[keep]]))
        px, z = project_points(pts, k, torch.tensor(img.cam_to_world))
        assert (z > 0).all()
        errors.append((px - torch.tensor(img.xys[keep])).norm(dim=1))
    assert torch.cat(errors).median() < 1.0  # pixels: a consistent model and reader
    assert track_matches(model, sorted(model.images)).shape[0] > 1000


@needs_shared
def test_real_7scenes_depth_correspondences_agree() -> None:
    seq = load_7scenes(SEVEN)
    assert len(seq) == 100
    windows = seq.windows(3, stride=2, min_overlap=0.3)
    assert len(windows) >= 10
    sample = seq.load(windows[0], (120, 160))
    valid, pixels = correspondence_mask(sample.depth[0], sample.depth[2], sample.intrinsics[0],
                                        sample.intrinsics[2], sample.cam_to_world[0],
                                        sample.cam_to_world[2], rel_tol=0.05)
    assert valid.float().mean() > 0.3
    col = pixels[..., 0].round().long().clamp(0, 159)
    row = pixels[..., 1].round().long().clamp(0, 119)
    diff = (sample.images[2][:, row, col] - sample.images[0]).abs().mean(0)[valid]
    assert diff.median() < 0.1  # same surface, same colour (real, unregistered Kinect data)
