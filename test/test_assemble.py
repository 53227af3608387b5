"""One frame assembly for the node and bags: the same messages make the same frames and counts.

A two-camera rig with depth and pose topics, with the problems a robot has (an image before its
camera_info, a late pose, a pose that never comes, a missing and a bad depth, a duplicate
stamp), goes once through the node's intake (:mod:`mvfm_ros.ros.intake`, driven as the node's
intake thread drives it, the clock at each message's recorded time) and once through
``mvfm-bag`` (a bag of the same messages): the frames reaching the pipeline, their poses and
depth, the windows and every count must be the same.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TINY_ADAPTER
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from mvfm_ros import build_model
from mvfm_ros.messages.assemble import FrameAssembler
from mvfm_ros.messages.bag import BagOptions, process_bag
from mvfm_ros.messages.factory import rosbags_factory
from mvfm_ros.pipeline import Engine, Pipeline, Settings
from mvfm_ros.ros.intake import Intake

STORE = get_typestore(Stores.ROS2_JAZZY)
BUILD = rosbags_factory(STORE)
T = STORE.types
SIZE = (24, 32)
K = np.array([[30.0, 0, 15.5], [0, 30.0, 11.5], [0, 0, 1.0]])
MS = 1_000_000
SETTINGS = dict(cameras=['left', 'right'], pose_source='topic', tf_timeout=0.3,
                depth_tolerance=0.005, max_pose_gap=0.5, min_translation=0.0,
                min_rotation_deg=0.0, max_interval=0.0, window_size=3, queue_size=64)


def pose_matrix(t: float, camera: str) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, 3] = [0.1 * t, 0.0 if camera == 'left' else 0.12, 0.0]
    return pose


def pose_msg(stamp: int, camera: str) -> object:
    return T['geometry_msgs/msg/PoseStamped'](
        header=BUILD.header(stamp, 'map'), pose=BUILD.pose(pose_matrix(stamp / 1e9, camera)))


def image_msg(stamp: int, camera: str, seed: int) -> object:
    rng = np.random.default_rng(seed)
    return BUILD.image(BUILD.header(stamp, f'{camera}_optical'),
                       rng.integers(0, 256, SIZE + (3,), dtype=np.uint8), 'rgb8')


def depth_msg(stamp: int, camera: str, encoding: str = '16UC1') -> object:
    depth = np.full(SIZE, 1500 if encoding == '16UC1' else 1.5, dtype=np.uint16
                    if encoding == '16UC1' else np.float32)
    return BUILD.image(BUILD.header(stamp, f'{camera}_optical'), depth,
                       encoding if encoding != 'bad' else 'rgb8')


def sequence() -> list[tuple[int, str, str, object]]:
    """Return (recorded time, camera, kind, message) tuples in recorded order."""
    out = []
    for camera in ('left', 'right'):
        out.append((0, camera, 'pose', pose_msg(0, camera)))
    for i in range(1, 13):
        stamp = i * 100 * MS
        for camera in ('left', 'right'):
            seed = i * 2 + (camera == 'right')
            if not (camera == 'right' and i == 1):  # right's first image has no camera_info
                out.append((stamp, camera, 'camera_info',
                            BUILD.camera_info(BUILD.header(stamp, f'{camera}_optical'), K,
                                              *SIZE)))
            late = camera == 'left' and i == 4  # this pose is recorded 200 ms late
            lost = camera == 'right' and i in (5, 6, 7, 8, 9)  # right's poses stop for 0.6 s
            if not late and not lost:
                out.append((stamp, camera, 'pose', pose_msg(stamp, camera)))
            if not (camera == 'left' and i == 6):  # one depth never comes
                kind = 'bad' if (camera == 'right' and i == 3) else '16UC1'
                out.append((stamp + 2 * MS, camera, 'depth', depth_msg(stamp, camera, kind)))
            out.append((stamp + 3 * MS, camera, 'image', image_msg(stamp, camera, seed)))
            if camera == 'left' and i == 9:  # the same stamp again
                out.append((stamp + 4 * MS, camera, 'image', image_msg(stamp, camera, 99)))
        if i == 6:
            out.append((4 * 100 * MS + 200 * MS, 'left', 'pose', pose_msg(400 * MS, 'left')))
    return sorted(out, key=lambda item: item[0])


@pytest.fixture(scope='module')
def engine():
    model = build_model('vit_small_patch16_224', pretrained=False,
                        backbone_kwargs=dict(patch_size=8, embed_dim=32, depth=2, num_heads=2),
                        **TINY_ADAPTER)
    return Engine(model, 'cpu', input_size=(24, 32), num_segments=3)


class SyncWorker:
    """The worker's contract (check and keep keyframes, run the window) without a thread."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.windows = []

    def submit(self, frame) -> bool:
        window = self.pipeline.add(frame)
        if window is not None:
            self.windows.append(window)
        return window is not None


def through_the_node(engine) -> tuple[list, dict]:
    settings = Settings(use_depth=True, **SETTINGS)
    pipeline = Pipeline(engine, settings)
    worker = SyncWorker(pipeline)
    clock = [0]
    counted = []

    def problem(kind, message, counted_already=False):
        counted.append(kind)
        if not counted_already:
            pipeline.stats.count(kind)

    intake = Intake(settings, worker, lambda: clock[0], problem)
    for time_ns, camera, kind, msg in sequence():
        clock[0] = time_ns
        intake.handle([(kind, camera, msg, 0.0)])
    for frame in intake.assembler.flush():  # the node stops; the bag ends
        worker.submit(frame)
    return worker.windows, dict(pipeline.stats.counts)


def through_a_bag(engine, folder) -> tuple[list, dict]:
    bag = folder / 'in'
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        types = {'pose': 'geometry_msgs/msg/PoseStamped', 'camera_info':
                 'sensor_msgs/msg/CameraInfo', 'image': 'sensor_msgs/msg/Image',
                 'depth': 'sensor_msgs/msg/Image'}
        conns = {}
        for time_ns, camera, kind, msg in sequence():
            topic = f'/{camera}/{kind}'
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, types[kind], typestore=STORE)
            writer.write(conns[topic], time_ns, STORE.serialize_cdr(msg, types[kind]))
    windows = []
    original = Pipeline.add

    def add(self, frame):
        window = original(self, frame)
        if window is not None:
            windows.append(window)
            add.stats = self.stats
        return window

    Pipeline.add = add
    try:
        process_bag(bag, folder / 'out', BagOptions(Settings(**SETTINGS),
                                                    depth_topic='/{camera}/depth'),
                    engine=engine, progress=False)
    finally:
        Pipeline.add = original
    return windows, dict(add.stats.counts)


def summary(windows: list) -> list[tuple]:
    """Each window's new keyframe: camera, stamp, uid, pose, depth, and the window's views."""
    out = []
    for window in windows:
        frame = window.frames[window.new_view]
        out.append((frame.camera, frame.stamp_ns, frame.uid, frame.cam_to_world.round(9).tobytes(),
                    None if frame.depth is None else frame.depth.tobytes(),
                    tuple((f.camera, f.stamp_ns) for f in window.frames)))
    return out


def test_the_node_and_the_bag_tool_assemble_the_same_frames(engine, tmp_path) -> None:
    node_windows, node_counts = through_the_node(engine)
    bag_windows, bag_counts = through_a_bag(engine, tmp_path)
    assert summary(node_windows) == summary(bag_windows)
    assert node_counts == bag_counts
    # Every problem of the sequence was seen, with its kind, in both.
    for kind in ('missing_camera_info', 'depth_missing', 'bad_depth', 'duplicate_stamp',
                 'pose_gap', 'pose_lookup_failed'):
        assert node_counts.get(kind, 0) >= 1, (kind, node_counts)
    # The late pose arrived within tf_timeout: that image was served with its pose.
    served = {(f.camera, f.stamp_ns): f for w in node_windows for f in [w.frames[w.new_view]]}
    assert ('left', 400 * MS) in served
    assert np.allclose(served[('left', 400 * MS)].cam_to_world, pose_matrix(0.4, 'left'))
    # Both cameras' views join one window, in order of their stamps per camera.
    assert {f.camera for f in node_windows[-1].frames} == {'left', 'right'}
    sent = 2 * 12 + 1  # every image, the duplicate included
    assert node_counts['frames_received'] == sent


def test_an_image_waits_for_its_pose_until_the_deadline_then_counts() -> None:
    reported = []
    settings = Settings(cameras=['camera'], pose_source='topic', tf_timeout=0.3)
    assembler = FrameAssembler(settings, lambda *args: reported.append(args))
    assembler.camera_info('camera', BUILD.camera_info(BUILD.header(0, 'cam'), K, *SIZE))
    assembler.pose('camera', pose_msg(0, 'left'))
    assembler.image('camera', image_msg(100 * MS, 'camera', 0), now_ns=100 * MS)
    assert assembler.poll(200 * MS) == [] and assembler.pending() == 1  # may still come
    assembler.pose('camera', pose_msg(150 * MS, 'left'))
    [frame] = assembler.poll(250 * MS)  # it came: interpolated at the image stamp
    assert np.allclose(frame.cam_to_world, pose_matrix(0.1, 'left'))
    assembler.image('camera', image_msg(300 * MS, 'camera', 1), now_ns=300 * MS)
    assert assembler.poll(599 * MS) == []
    assert assembler.poll(600 * MS) == [] and assembler.pending() == 0  # deadline passed
    assert [r[0] for r in reported] == ['pose_lookup_failed'] and reported[0][2] is True
