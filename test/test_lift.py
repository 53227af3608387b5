"""Lifting operators across views and time, and the world-frame voxel map (no ROS)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mvfm_ros.data import SceneConfig, SceneGenerator
from mvfm_ros.data.correspondence import corresponding_pixels
from mvfm_ros.eval.lift_metrics import id_stability, label_consistency, surface_distance
from mvfm_ros.lift.fuse import fuse_maps
from mvfm_ros.lift.labels import IdTable, LabelLifter
from mvfm_ros.lift.operators import OperatorError, load_operator, load_operators
from mvfm_ros.lift.voxel_map import VoxelMap, write_ply
from mvfm_ros.messages.conversions import depth_to_metres, image_fields
from mvfm_ros.pipeline import Frame, FrameError, Pipeline, Settings
from mvfm_ros.pipeline.engine import Engine

SIZE = (96, 128)


def test_label_lifter_gives_one_id_per_surface_and_keeps_it() -> None:
    # Two views of the same 2 x 2 blocks; ids are unrelated per view, view b splits one
    # block in two (over-segmented). Every pixel corresponds to the same pixel.
    a = np.repeat(np.repeat(np.array([[3, 7], [9, 4]]), 8, 0), 8, 1)
    b = np.repeat(np.repeat(np.array([[50, 60], [70, 80]]), 8, 0), 8, 1)
    b[:4, :8] = 55
    flat = np.arange(a.size)
    lifter, table = LabelLifter(), IdTable()
    la, lb = lifter.lift([a, b], [0, 1], {(0, 1): (flat, flat)}, None, table)
    assert label_consistency(la, lb, flat, flat) == 1.0 and (la == lb).all()
    assert len(np.unique(la)) == 4  # no two surfaces merged
    # Next window: view b stays, a new view c with fresh ids joins; ids are kept.
    c = b + 1000
    lb2, lc = lifter.lift([b, c], [1, 2], {(0, 1): (flat, flat)}, None, table)
    assert (lb2 == lb).all() and (lc == lb).all()
    assert id_stability(lb, lc, flat, flat) == 1.0
    # View d has one region over blocks 3 and 7. With alike features that is one surface ...
    merged = np.where(a == 7, 3, a)
    feats = np.zeros((2,) + a.shape)
    feats[0] = (a == 3) | (a == 7)
    feats[1] = 1 - feats[0]
    l1, _ = LabelLifter(min_similarity=0.9).lift([a, merged], [0, 1], {(0, 1): (flat, flat)},
                                                 [feats, feats], IdTable())
    assert l1[0, 0] == l1[0, 8]
    # ... with different features the leaky region cannot glue the two blocks together.
    feats[0] = a == 3
    feats[1] = a != 3
    l1, _ = LabelLifter(min_similarity=0.9).lift([a, merged], [0, 1], {(0, 1): (flat, flat)},
                                                 [feats, feats], IdTable())
    assert l1[0, 0] != l1[0, 8]


def test_fused_normals_agree_in_the_world_frame() -> None:
    rot = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90 deg about z
    world = torch.nn.functional.normalize(torch.randn(4, 4, 3), dim=-1)
    noise = 0.2 * torch.randn(2, 4, 4, 3)
    view_a = torch.nn.functional.normalize(world + noise[0], dim=-1)  # identity camera
    view_b = torch.nn.functional.normalize(world + noise[1], dim=-1) @ rot  # world -> camera b
    flat = torch.arange(16)
    fused = fuse_maps([view_a, view_b], {(0, 1): (flat, flat)}, [torch.eye(3), rot])
    before = (view_a - view_b @ rot.T).norm(dim=-1).mean()
    assert before > 0.1
    assert torch.allclose(fused[0], fused[1] @ rot.T, atol=1e-5)
    assert torch.allclose(fused[0].norm(dim=-1), torch.ones(4, 4), atol=1e-5)


def test_operators_load_and_bad_ones_raise_clearly() -> None:
    ops = load_operators(['superpixels', 'lift_operators:brightness', ' '])
    assert [o.name for o in ops] == ['superpixels', 'brightness']
    image = np.random.default_rng(0).integers(0, 255, SIZE + (3,), dtype=np.uint8)
    assert ops[0](image).shape == SIZE and ops[0].kind == 'labels'
    assert ops[1](image).shape == SIZE + (1,) and ops[1].kind == 'float'
    with pytest.raises(OperatorError, match='raised'):
        load_operator('lift_operators:raises')(image)
    with pytest.raises(OperatorError, match='shape'):
        load_operator('lift_operators:wrong_shape')(image)
    with pytest.raises(OperatorError, match='no operator named'):
        load_operator('nonexistent')
    with pytest.raises(OperatorError, match='cannot be imported'):
        load_operator('no_such_module:f')


def test_voxel_map_stays_bounded_and_round_trips(tmp_path) -> None:
    vmap = VoxelMap(voxel_size=0.1, max_voxels=500, feature_dim=4)
    rng = np.random.default_rng(0)
    for step in range(40):  # a long input: a robot driving along a wall
        points = rng.uniform(0, 1, (2000, 3)) + [step, 0, 0]
        vmap.integrate(points, rng.integers(0, 255, (2000, 3)), np.full(2000, step % 3),
                       vmap.project(rng.normal(size=(2000, 16))),
                       origin=np.array([step, 0.0, 0.0]))
        assert len(vmap) <= 500
    assert vmap.evicted > 0 and vmap.nbytes < 500 * 200
    cloud = vmap.cloud()
    assert cloud['x'].min() > 30  # the oldest (first) voxels went first
    assert set(cloud.dtype.names) == {'x', 'y', 'z', 'rgb', 'label', 'confidence', 'f0', 'f1',
                                      'f2', 'f3'}
    assert set(np.unique(cloud['label'])) <= {0, 1, 2} and (cloud['confidence'] <= 1).all()
    write_ply(str(tmp_path / 'map.ply'), cloud)
    from plyfile import PlyData

    vertex = PlyData.read(str(tmp_path / 'map.ply'))['vertex']
    assert len(vertex['x']) == len(cloud)
    assert np.allclose(vertex['x'], cloud['x']) and (vertex['label'] == cloud['label']).all()
    vmap.clear()
    assert len(vmap) == 0 and len(vmap.cloud()) == 0


def test_depth_messages_convert_or_are_refused() -> None:
    class Msg:
        def __init__(self, array, encoding):
            self.__dict__.update(image_fields(array, encoding))
            self.is_bigendian = False

    mm = np.array([[1000, 0], [2500, 65535]], np.uint16)
    assert np.allclose(depth_to_metres(Msg(mm, '16UC1'), (4, 4)), mm / 1000.0)
    metres = np.array([[1.5, np.nan], [2.0, -1.0]], np.float32)
    assert np.allclose(depth_to_metres(Msg(metres, '32FC1'), (2, 2)), [[1.5, 0], [2, 0]])
    with pytest.raises(FrameError, match='encoding') as err:
        depth_to_metres(Msg(np.zeros((2, 2, 3), np.uint8), 'rgb8'), (2, 2))
    assert err.value.kind == 'bad_depth'
    with pytest.raises(FrameError, match='aspect ratio'):
        depth_to_metres(Msg(mm, '16UC1'), (2, 4))


@pytest.fixture(scope='module')
def stream():
    """Return a generated orbit: 8 frames with depth, instances and poses."""
    return SceneGenerator(5, SceneConfig(*SIZE, supersample=1)).sequence(0, 8, 'orbit')


def _frames(sample, depth: bool = True) -> list[Frame]:
    return [Frame((sample.images[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8),
                  sample.intrinsics[i].numpy().astype(np.float64),
                  sample.cam_to_world[i].numpy().astype(np.float64), (i + 1) * 10**8,
                  depth=sample.depth[i].numpy() if depth else None)
            for i in range(sample.num_views)]


def test_pipeline_lifts_superpixels_and_maps_the_surfaces(stream) -> None:
    config = Settings(window_size=4, min_translation=0.0, min_rotation_deg=0.0,
                      max_interval=0.0, map_voxel_size=0.05,
                      operators=['superpixels', 'lift_operators:raises'],
                      allow_module_operators=True)
    engine, _ = Engine.from_settings(config)
    pipeline = Pipeline(engine, config)
    events = []
    pipeline.on_event = lambda kind, message: events.append(kind)
    results = [pipeline.add(f).views[-1] for f in _frames(stream)]
    # The raising operator is counted per keyframe and the frame is served without it.
    assert pipeline.stats.counts['operator_errors'] == len(results)
    assert set(events) == {'operator_errors'}
    assert all(set(r.ops) == {'superpixels'} and r.ops['superpixels'].dtype == np.int32
               for r in results)
    # Published (lifted) ids of consecutive keyframes agree better than per-view superpixels.
    depth = stream.depth
    ia, ib = (t.numpy() for t in corresponding_pixels(
        depth[3], depth[4], stream.intrinsics[3], stream.intrinsics[4],
        stream.cam_to_world[3], stream.cam_to_world[4]))
    lifted = label_consistency(results[3].ops['superpixels'], results[4].ops['superpixels'],
                               ia, ib)
    per_view = label_consistency(*(engine.lifting.operators[0](f.image)
                                   for f in (results[3].frame, results[4].frame)), ia, ib)
    assert lifted > per_view
    assert id_stability(results[3].ops['superpixels'], results[4].ops['superpixels'],
                        ia, ib) > 0.5
    # Every map point lies on a generated surface (within two voxels of the depth it came
    # from, checked in the view that sees it best); labelled with lifted ids.
    cloud = pipeline.map_cloud()
    assert len(cloud) > 100 and (cloud['label'] >= 0).mean() > 0.9
    best = surface_distance(np.stack([cloud['x'], cloud['y'], cloud['z']], 1), stream)
    assert (best <= 2 * 0.05).mean() > 0.99
    assert pipeline.stats.snapshot()['map_update_p50_s'] > 0
    assert pipeline.reset_map() == len(cloud) and len(pipeline.map_cloud()) == 0


def test_feature_only_lifting_runs_without_depth(stream) -> None:
    config = Settings(window_size=3, min_translation=0.0, min_rotation_deg=0.0,
                      max_interval=0.0, operators=['superpixels', 'normals'])
    engine, _ = Engine.from_settings(config)
    pipeline = Pipeline(engine, config)
    results = [pipeline.add(f).views[-1] for f in _frames(stream, depth=False)[:4]]
    assert all(set(r.ops) == {'superpixels', 'normals'} for r in results)
    normals = results[-1].ops['normals']
    assert normals.shape == SIZE + (3,)
    assert np.allclose(np.linalg.norm(normals, axis=-1), 1, atol=1e-4)
    assert len(pipeline.map) == 0  # no depth, no map
