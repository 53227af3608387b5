"""Offline bag processing: TF tree, mvfm-bag on a bag written here, read back independently."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from conftest import TINY_ADAPTER
from mcap.reader import make_reader
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from mvfm_ros import build_model
from mvfm_ros.demo.make_bag import BASE_TO_OPTICAL, write_demo_bag
from mvfm_ros.geometry.interpolation import matrix_to_quat, pose_matrix
from mvfm_ros.messages.bag import BagError, BagOptions, process_bag
from mvfm_ros.messages.bag_cli import main
from mvfm_ros.messages.tf_tree import TransformTree
from mvfm_ros.pipeline import Engine, Settings
from mvfm_ros.pipeline.outputs import output_topics
from mvfm_ros.pipeline.poses import PoseLookupError


def rotation_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def test_transform_tree_composes_interpolates_and_refuses_extrapolation() -> None:
    tree = TransformTree()
    tree.add('map', 'odom', 0, np.eye(4), static=True)
    tree.add('odom', 'base', 0, pose_matrix([0, 0, 0], matrix_to_quat(rotation_z(0))))
    tree.add('odom', 'base', 1_000_000_000, pose_matrix([1, 0, 0],
                                                        matrix_to_quat(rotation_z(0.4))))
    tree.add('base', 'cam', 0, BASE_TO_OPTICAL, static=True)
    mid = tree.lookup('map', 'cam', 500_000_000)
    expected = pose_matrix([0.5, 0, 0], matrix_to_quat(rotation_z(0.2))) @ BASE_TO_OPTICAL
    assert np.allclose(mid, expected, atol=1e-9)
    # The inverse direction is the inverse transform.
    assert np.allclose(tree.lookup('cam', 'map', 500_000_000) @ mid, np.eye(4), atol=1e-9)
    with pytest.raises(PoseLookupError):
        tree.lookup('map', 'cam', 2_000_000_000)
    with pytest.raises(LookupError, match="'nowhere' is not in"):
        tree.lookup('map', 'nowhere', 0)
    tree.add('island', 'rock', 0, np.eye(4), static=True)
    with pytest.raises(LookupError, match='no transform path'):
        tree.lookup('map', 'rock', 0)


@pytest.fixture(scope='module')
def small_bag(tmp_path_factory):
    return write_demo_bag(tmp_path_factory.mktemp('bag') / 'in', frames=6, size=(48, 64),
                          speed=1.0)


@pytest.fixture(scope='module')
def engine():
    model = build_model('vit_small_patch16_224', pretrained=False,
                        backbone_kwargs=dict(patch_size=8, embed_dim=32, depth=2, num_heads=2),
                        normal_head=8, **TINY_ADAPTER)
    return Engine(model, 'cpu', input_size=(32, 48), num_segments=3)


def read_mcap(folder):
    """Messages of an MCAP bag via the mcap library (not rosbags), CDR decoded by rosbags.

    Types the Jazzy store lacks (the package's window message) are registered from the
    definitions embedded in the bag's schemas, as Foxglove or ros2 bag would read them.
    """
    store = get_typestore(Stores.ROS2_JAZZY)
    files = list(folder.glob('*.mcap'))
    assert len(files) == 1
    out = {}
    with open(files[0], 'rb') as handle:
        for schema, channel, message in make_reader(handle).iter_messages():
            if schema.name not in store.types:
                store.register(embedded_types(schema.name, schema.data.decode()))
            msg = store.deserialize_cdr(message.data, schema.name)
            out.setdefault(channel.topic, []).append((message.log_time, msg))
    return out


def embedded_types(name: str, text: str) -> dict:
    """Types of a ros2msg schema: the main definition, then ``MSG: pkg/Type`` sections."""
    sections = re.split(r'^=+\n', text, flags=re.M)
    found = dict(get_types_from_msg(sections[0], name))
    for section in sections[1:]:
        header, _, body = section.partition('\n')
        sub = header.removeprefix('MSG: ').strip()
        if '/msg/' not in sub:
            sub = sub.replace('/', '/msg/')
        found.update(get_types_from_msg(body, sub))
    return found


CONFIG = dict(min_translation=0.0, min_rotation_deg=0.0, max_interval=0.0, window_size=3)


@pytest.mark.parametrize('pose_source', ['tf', 'topic'])
def test_bag_processor_writes_the_node_topics(small_bag, engine, tmp_path, pose_source) -> None:
    options = BagOptions(Settings(pose_source=pose_source, **CONFIG),
                         include_inputs=pose_source == 'topic')
    report = process_bag(small_bag, tmp_path / 'out', options, engine=engine, progress=False)
    assert report.images == 6 and report.results == 6 and not report.skipped
    bag = read_mcap(tmp_path / 'out')
    inputs = {t[0] for t in read_mcap(small_bag)['/camera/image']}
    # Every output of the node's table, for every keyframe (the first one included).
    # (This engine has no operators and the bag no depth: no ops topics, no map.)
    expected = {t for t, o in output_topics([]).items() if o.scope != 'map'}
    assert {t for t in bag if t.startswith('/mvfm/')} == {f'/mvfm/{t}' for t in expected}
    for topic in expected:
        assert len(bag[f'/mvfm/{topic}']) == 6, topic
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
              for _, m in bag['/mvfm/features']]
    assert set(stamps) == inputs and all(m.header.frame_id == 'camera_optical'
                                        for _, m in bag['/mvfm/features'])
    feats = bag['/mvfm/features'][0][1]
    assert (feats.encoding, feats.height, feats.width) == ('32FC32', 4, 6)
    info = bag['/mvfm/features/camera_info'][0][1]
    assert (info.height, info.width) == (4, 6) and info.k[0] > 0
    assert ('/camera/image' in bag) == (pose_source == 'topic')  # inputs copied on request
    assert not (tmp_path / 'out.partial').exists()
    # The window message: its views as computed together, the new one equal to the
    # per-keyframe topics of the same stamp.
    windows = [m for _, m in bag['/mvfm/window']]
    assert [len(w.views) for w in windows] == [1, 2, 3, 3, 3, 3]
    assert [w.window_id for w in windows] == list(range(6))
    per_keyframe = {m.header.stamp.sec * 10**9 + m.header.stamp.nanosec: m
                    for _, m in bag['/mvfm/features']}
    for window in windows:
        assert window.header.frame_id == 'map' and window.new_view == len(window.views) - 1
        new = window.views[window.new_view]
        assert new.header.stamp == window.header.stamp
        stamp = new.header.stamp.sec * 10**9 + new.header.stamp.nanosec
        assert np.array_equal(new.features.data, per_keyframe[stamp].data)
        assert np.allclose(new.feature_info.k, info.k)
        assert window.backbone == 'vit_small_patch16_224' and len(window.backbone_sha256) == 64
        assert window.pose_conditioning == 'paper'
    # Keyframe ids follow the views through consecutive windows; the oldest, the window's
    # pose reference, stays while the others slide past it (window_anchor, default 8).
    assert Settings().window_anchor >= 3
    assert [v.keyframe_id for v in windows[3].views] == [0, 2, 3]
    assert [v.keyframe_id for v in windows[4].views] == [0, 3, 4]


def test_tf_and_topic_poses_agree(small_bag, engine, tmp_path) -> None:
    results = {}
    for source in ('tf', 'topic'):
        options = BagOptions(Settings(pose_source=source, **CONFIG))
        process_bag(small_bag, tmp_path / source, options, engine=engine, progress=False)
        results[source] = [np.frombuffer(m.data, dtype='<f4')
                           for _, m in read_mcap(tmp_path / source)['/mvfm/features']]
    assert len(results['tf']) == len(results['topic']) == 6
    for a, b in zip(results['tf'], results['topic']):
        assert np.allclose(a, b, atol=1e-4)


def test_bag_errors_are_clear_and_leave_nothing_behind(small_bag, engine, tmp_path,
                                                       capsys) -> None:
    with pytest.raises(BagError, match=r"topic '/nope' is not in the bag; topics: .*"
                                       r'/camera/image'):
        process_bag(small_bag, tmp_path / 'a', BagOptions(image_topic='/nope'), engine=engine)
    with pytest.raises(BagError, match="world frame 'earth'"):
        process_bag(small_bag, tmp_path / 'b', BagOptions(Settings(world_frame='earth')),
                    engine=engine)
    assert not list(tmp_path.iterdir())  # no half-written output
    code = main([str(small_bag), str(tmp_path / 'c'), '--pose-topic', '/missing',
                 '--pose-source', 'topic'])
    assert code == 2
    assert "topic '/missing' is not in the bag" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        process_bag(tmp_path / 'none', tmp_path / 'd', BagOptions(), engine=engine)


def test_demo_bag_in_the_repository_is_small_and_complete() -> None:
    from pathlib import Path

    folder = Path(__file__).parents[1] / 'demo' / 'bag'
    size = sum(f.stat().st_size for f in folder.iterdir())
    # 36 frames at 240x320 (camera-like, so the DINOv2 default model sees what a camera gives)
    # with 16-bit depth: about 13 MB.
    assert size < 16 * 2**20
    topics = read_mcap(folder)
    assert {'/camera/image', '/camera/camera_info', '/camera/depth', '/tf', '/tf_static',
            '/pose'} <= set(topics)
    assert len(topics['/camera/image']) >= 30


def test_a_finished_bag_has_no_partial_names(small_bag, engine, tmp_path) -> None:
    process_bag(small_bag, tmp_path / 'out', BagOptions(Settings(**CONFIG)),
                engine=engine, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out']
    names = [p.name for p in (tmp_path / 'out').iterdir()]
    assert 'out.mcap' in names and not any('partial' in n for n in names)
    assert 'partial' not in (tmp_path / 'out' / 'metadata.yaml').read_text()


def test_a_truncated_bag_is_a_clear_error(small_bag, engine, tmp_path) -> None:
    import shutil

    broken = tmp_path / 'broken'
    shutil.copytree(small_bag, broken)
    data = next(broken.glob('*.mcap'))
    data.write_bytes(data.read_bytes()[:data.stat().st_size * 2 // 3])
    with pytest.raises(BagError, match=r'cannot read bag .*broken.* after \d+ images'):
        process_bag(broken, tmp_path / 'out', BagOptions(Settings(**CONFIG)),
                    engine=engine, progress=False)
    assert not list(tmp_path.glob('*out*'))  # nothing half-written left behind
    code = main([str(broken), str(tmp_path / 'out2')])
    assert code == 2


def test_corrupted_payloads_are_skipped_and_reported(small_bag, engine, tmp_path,
                                                     caplog) -> None:
    """A payload of random bytes does not decode: skipped, counted, said."""
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import StoragePlugin, Writer

    corrupt = tmp_path / 'corrupt'
    rng = np.random.default_rng(0)
    with AnyReader([small_bag]) as reader, Writer(corrupt, version=9,
                                                  storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {c.id: writer.add_connection(c.topic, c.msgtype, msgdef=c.msgdef.data,
                                             rihs01=c.digest) for c in reader.connections}
        images = 0
        for conn, time_ns, raw in reader.messages():
            if conn.topic == '/camera/image':
                images += 1
                if images == 3:
                    raw = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
            writer.write(conns[conn.id], time_ns, raw)
    report = process_bag(corrupt, tmp_path / 'out', BagOptions(Settings(**CONFIG)),
                         engine=engine, progress=False)
    assert report.skipped == {'undecodable_message': 1}
    assert report.results == 5
    assert 'does not decode' in caplog.text and 'no chunk checksums' in caplog.text


def test_bag_with_depth_writes_lifted_operators_the_map_and_a_ply(small_bag, tmp_path) -> None:
    from plyfile import PlyData

    from mvfm_ros.demo.report import cloud_array

    model = build_model('vit_small_patch16_224', pretrained=False,
                        backbone_kwargs=dict(patch_size=8, embed_dim=32, depth=2, num_heads=2),
                        normal_head=8, **TINY_ADAPTER)
    engine = Engine(model, 'cpu', input_size=(32, 48), num_segments=3)
    engine.set_operators(['superpixels'])
    options = BagOptions(Settings(map_period=0.2, **CONFIG), depth_topic='/camera/depth',
                         ply=str(tmp_path / 'map.ply'))
    report = process_bag(small_bag, tmp_path / 'out', options, engine=engine, progress=False)
    assert report.results == 6 and not report.skipped and report.map_voxels > 50
    bag = read_mcap(tmp_path / 'out')
    expected = set(output_topics(['superpixels']))
    assert {t for t in bag if t.startswith('/mvfm/')} == {f'/mvfm/{t}' for t in expected}
    assert len(bag['/mvfm/ops/superpixels']) == 6
    assert {m.encoding for _, m in bag['/mvfm/ops/superpixels']} == {'32SC1'}
    maps = [m for _, m in bag['/mvfm/map']]
    # Written as the map grows (every 0.2 s of image stamps) and once at the end, complete.
    sizes = [m.width for m in maps]
    assert len(maps) >= 2 and sizes == sorted(sizes) and sizes[-1] == report.map_voxels
    assert all(m.header.frame_id == 'map' for m in maps)
    cloud = cloud_array(maps[-1])
    vertex = PlyData.read(str(tmp_path / 'map.ply'))['vertex']
    assert len(vertex['x']) == len(cloud) and np.allclose(vertex['z'], cloud['z'])
