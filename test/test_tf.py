"""TF as a robot has it: the real tf2 (built by ``make ros-tools``, or a ROS 2 install).

The bag tool's transform tree against tf2's own ``BufferCore`` (same transforms, same
refusals), and the node with ``pose_source: tf`` on a real ``tf2_ros`` buffer: a mobile base
whose TF arrives late, static transforms, missing and disconnected frames, a two-camera rig.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

tf2_py = pytest.importorskip(
    'tf2_py', reason='tf2 is not installed: `make ros-tools` builds it from ../shared/ros-src '
    '(or source a ROS 2 install)')

from builtin_interfaces.msg import Time  # noqa: E402
from geometry_msgs.msg import TransformStamped  # noqa: E402
from rclpy.duration import Duration  # noqa: E402
from rosbags.highlevel import AnyReader  # noqa: E402

from mvfm_ros.geometry.interpolation import matrix_to_quat, pose_matrix  # noqa: E402
from mvfm_ros.messages.conversions import stamp_to_ns, transform_to_matrix  # noqa: E402
from mvfm_ros.messages.tf_tree import FrameUnknown, NotConnected, TransformTree  # noqa: E402
from mvfm_ros.pipeline.poses import PoseLookupError  # noqa: E402

ROOT = Path(__file__).parents[1]
LONG_CACHE = Duration(seconds=10**6)  # the tree keeps every transform of a bag


def _stamped(parent: str, child: str, stamp_ns: int, matrix: np.ndarray) -> TransformStamped:
    msg = TransformStamped()
    msg.header.frame_id, msg.child_frame_id = parent, child
    msg.header.stamp = Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    t, q = matrix[:3, 3], matrix_to_quat(matrix[:3, :3])
    tr = msg.transform
    tr.translation.x, tr.translation.y, tr.translation.z = (float(v) for v in t)
    tr.rotation.x, tr.rotation.y, tr.rotation.z, tr.rotation.w = (float(v) for v in q)
    return msg


class Both:
    """The bag tool's tree and tf2's BufferCore, fed the same transforms."""

    def __init__(self) -> None:
        self.tree = TransformTree()
        self.core = tf2_py.BufferCore(LONG_CACHE)

    def add(self, parent: str, child: str, stamp_ns: int, matrix: np.ndarray,
            static: bool = False) -> None:
        self.tree.add(parent, child, stamp_ns, matrix, static)
        msg = _stamped(parent, child, stamp_ns, matrix)
        (self.core.set_transform_static if static else self.core.set_transform)(msg, 'test')

    def lookup(self, target: str, source: str, stamp_ns: int) -> tuple[str, np.ndarray | None]:
        """(outcome, matrix) from each: outcome 'ok', 'unknown', 'not_connected', 'outside'."""
        out = []
        try:
            out.append(('ok', self.tree.lookup(target, source, stamp_ns)))
        except FrameUnknown:
            out.append(('unknown', None))
        except NotConnected:
            out.append(('not_connected', None))
        except PoseLookupError:
            out.append(('outside', None))
        time = Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
        try:
            msg = self.core.lookup_transform_core(target, source, time)
            out.append(('ok', transform_to_matrix(msg.transform)))
        except tf2_py.LookupException:
            out.append(('unknown', None))
        except tf2_py.ConnectivityException:
            out.append(('not_connected', None))
        except tf2_py.ExtrapolationException:
            out.append(('outside', None))
        return out[0], out[1]


def _agree(tree: tuple, tf2: tuple) -> None:
    assert tree[0] == tf2[0], (tree[0], tf2[0])
    if tree[0] == 'ok':
        assert np.allclose(tree[1], tf2[1], atol=1e-9), np.abs(tree[1] - tf2[1]).max()


def test_the_bag_tools_tree_agrees_with_tf2_on_every_image_of_the_demo_bag() -> None:
    both = Both()
    stamps, frames = [], set()
    with AnyReader([ROOT / 'demo' / 'bag']) as reader:
        wanted = [c for c in reader.connections if c.topic in ('/tf', '/tf_static',
                                                               '/camera/image')]
        for conn, _, raw in reader.messages(connections=wanted):
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.topic == '/camera/image':
                stamps.append(stamp_to_ns(msg.header.stamp))
                frames.add(msg.header.frame_id)
                continue
            for t in msg.transforms:
                both.add(t.header.frame_id, t.child_frame_id, stamp_to_ns(t.header.stamp),
                         transform_to_matrix(t.transform), conn.topic == '/tf_static')
    assert len(stamps) >= 30
    for frame in frames:
        for stamp in stamps:
            tree, tf2 = both.lookup('map', frame, stamp)
            assert tree[0] == 'ok', (frame, stamp)
            _agree(tree, tf2)


def test_the_tree_and_tf2_agree_on_out_of_order_static_and_refused_lookups() -> None:
    rng = np.random.default_rng(3)
    both = Both()

    def random_pose() -> np.ndarray:
        q = rng.standard_normal(4)
        return pose_matrix(rng.standard_normal(3), q / np.linalg.norm(q))

    both.add('map', 'odom', 0, random_pose(), static=True)
    both.add('base_link', 'camera_link', 0, random_pose(), static=True)
    both.add('camera_link', 'camera_optical', 0, random_pose(), static=True)
    stamps = rng.permutation(np.arange(10) * 10**8 + 10**9)  # 1.0 .. 1.9 s, out of order
    for stamp in stamps:
        both.add('odom', 'base_link', int(stamp), random_pose())
    both.add('island', 'rock', 0, random_pose(), static=True)
    queries = [int(s) for s in rng.uniform(0.9e9, 2.0e9, 60)] + [10**9, 19 * 10**8]
    for stamp in queries:
        for target, source in (('map', 'camera_optical'), ('camera_optical', 'map'),
                               ('base_link', 'odom'), ('map', 'rock'), ('map', 'nowhere'),
                               ('odom', 'map')):
            tree, tf2 = both.lookup(target, source, stamp)
            _agree(tree, tf2)
    # The cases were all met: interpolated, outside the data, unknown and disconnected.
    outcomes = {both.lookup(t, s, q)[0][0] for q in queries for t, s in (
        ('map', 'camera_optical'), ('map', 'rock'), ('map', 'nowhere'))}
    assert outcomes == {'ok', 'outside', 'not_connected', 'unknown'}
    # tf2 interpolates across any gap between two transforms: so does the tree.
    both.add('odom', 'base_link', 5 * 10**9, random_pose())
    _agree(*both.lookup('map', 'camera_optical', 4 * 10**9))
    assert math.isinf(both.tree.dynamic[('odom', 'base_link')].max_gap_ns)


# ---------------------------------------------------------------- the node on a real tf2_ros
SPEED = 0.5  # m/s of the mobile base along x
TURN = 0.4  # rad/s of its heading
DELAY_S = 0.12  # TF of the base arrives this long after its stamp (a localiser's latency)
BASE_TO_CAMERA = pose_matrix([0.2, 0.0, 0.5], [0.0, 0.0, 0.0, 1.0])
CAMERA_TO_OPTICAL = pose_matrix([0.0, 0.0, 0.0], [-0.5, 0.5, -0.5, 0.5])
MAP_TO_ODOM = pose_matrix([1.0, -2.0, 0.0], [0.0, 0.0, math.sin(0.15), math.cos(0.15)])


def odom_to_base(t: float) -> np.ndarray:
    """Return the base's pose: along x while turning, linear and at a constant rate.

    tf2's interpolation (lerp + slerp) between 20 ms samples of it is exact.
    """
    yaw = TURN * t
    return pose_matrix([SPEED * t, 0.0, 0.0], [0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)])


def optical_in_map(t: float, camera: np.ndarray = BASE_TO_CAMERA) -> np.ndarray:
    return MAP_TO_ODOM @ odom_to_base(t) @ camera @ CAMERA_TO_OPTICAL


class Robot:
    """Static transforms, a base whose TF comes late at 50 Hz, and a camera publishing images."""

    def __init__(self, harness, cameras=('camera',), frames=('camera_optical',),
                 offsets=(BASE_TO_CAMERA,)) -> None:
        from ros_helpers import wait_for
        from sensor_msgs.msg import CameraInfo, Image
        from tf2_ros import StaticTransformBroadcaster, TransformBroadcaster

        self.harness, self.node = harness, harness.peer
        self.clock = self.node.get_clock()
        self.static = StaticTransformBroadcaster(self.node)
        statics = [_stamped('map', 'odom', 0, MAP_TO_ODOM),
                   _stamped('island', 'rock', 0, np.eye(4))]
        for frame, offset in zip(frames, offsets):
            link = frame.replace('_optical', '_link')
            statics += [_stamped('base_link', link, 0, offset),
                        _stamped(link, frame, 0, CAMERA_TO_OPTICAL)]
        self.static.sendTransform(statics)
        self.dynamic = TransformBroadcaster(self.node)
        rig = len(cameras) > 1
        self.images = {c: harness.publisher(Image, f'{c}/image' if rig else 'image')
                       for c in cameras}
        self.infos = {c: harness.publisher(CameraInfo, f'{c}/camera_info' if rig
                                           else 'camera_info') for c in cameras}
        self.start = self.clock.now().nanoseconds
        self.base_until = math.inf  # stamps after this get no base TF (a stalled localiser)
        self.sent = 0.0  # stamp (s) of the last base TF sent
        assert wait_for(lambda: all(p.get_subscription_count() for p in
                                    [*self.images.values(), *self.infos.values()]), 10)

    def now(self) -> float:
        """Seconds since the robot started (its motion's time)."""
        return (self.clock.now().nanoseconds - self.start) / 1e9

    def tick(self) -> None:
        """Send the base's TF up to DELAY_S ago, every 20 ms of stamps."""
        while self.sent + 0.02 <= min(self.now() - DELAY_S, self.base_until):
            self.sent += 0.02
            stamp = self.start + round(self.sent * 1e9)
            self.dynamic.sendTransform(_stamped('odom', 'base_link', stamp,
                                                odom_to_base(self.sent)))

    def image(self, camera: str, frame_id: str, image: np.ndarray, k: np.ndarray) -> float:
        """Publish an image stamped now; returns its time on the motion's clock."""
        from ros_helpers import frame_messages

        t = self.now()
        img, info, _ = frame_messages(image, k, np.eye(4), self.start + round(t * 1e9),
                                      frame_id=frame_id)
        self.infos[camera].publish(info)
        self.images[camera].publish(img)
        return t

    def run_until(self, condition, timeout: float) -> bool:
        """Keep sending TF until ``condition()`` or ``timeout`` seconds."""
        import time

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.tick()
            if condition():
                return True
            time.sleep(0.01)
        return condition()


def _window_poses(windows) -> dict[float, np.ndarray]:
    from mvfm_ros.geometry.interpolation import pose_matrix as make

    out = {}
    for window in windows:
        for view in window.views:
            p, q = view.pose.position, view.pose.orientation
            key = view.header.stamp.sec * 10**9 + view.header.stamp.nanosec
            out[key] = make([p.x, p.y, p.z], [q.x, q.y, q.z, q.w])
    return out


def test_pose_source_tf_gives_each_keyframe_the_pose_at_its_own_stamp(ros_context, sequence,
                                                                     capfd) -> None:
    from ros_helpers import ConsoleLog, make_node, start

    from mvfm_ros.msg import FeatureWindow

    sample, images = sequence
    harness = start(make_node(pose_source='tf', tf_timeout=0.5))
    log = ConsoleLog(capfd)
    try:
        windows = harness.subscribe(FeatureWindow, '/mvfm/window')
        robot = Robot(harness)
        k = sample.intrinsics[0].numpy()
        robot.run_until(lambda: robot.now() > 0.3, 5)  # TF flowing
        sent = {}
        for i in range(5):
            t = robot.image('camera', 'camera_optical', images[i], k)
            sent[robot.start + round(t * 1e9)] = t
            assert robot.run_until(lambda i=i: len(windows) > i, 30), log.lines()[-5:]
            robot.run_until(lambda t=t: robot.now() > t + 0.25, 5)
        poses = _window_poses(windows)
        assert set(sent) <= set(poses)
        for stamp, t in sent.items():
            # The pose of the image's own stamp (the base moved ~0.06 m while its TF was late)
            assert np.allclose(poses[stamp], optical_in_map(t), atol=1e-5), stamp
        latest = optical_in_map(max(sent.values()) + 0.2)
        assert not np.allclose(poses[max(sent)], latest, atol=1e-2)  # not "latest"
        node = harness.node
        counts = node.pipeline.stats.counts
        # A frame TF never names, one not connected to the map, and one whose base TF stalls
        # beyond tf_timeout: each counted under its kind, none served.
        served = len(windows)
        robot.image('camera', 'ghost_optical', images[0], k)
        assert robot.run_until(lambda: counts['tf_frame_unknown'] == 1, 10)
        robot.image('camera', 'rock', images[1], k)
        assert robot.run_until(lambda: counts['tf_not_connected'] == 1, 10)
        robot.base_until = robot.now() - DELAY_S  # the localiser stalls
        robot.image('camera', 'camera_optical', images[2], k)
        assert robot.run_until(lambda: counts['pose_lookup_failed'] == 1, 10)
        assert len(windows) == served
        assert log.has('[tf_frame_unknown]') and log.has('[tf_not_connected]')
    finally:
        harness.close()


def test_a_two_camera_rig_takes_each_cameras_pose_from_tf(ros_context, sequence) -> None:
    from ros_helpers import make_node, start

    from mvfm_ros.msg import FeatureWindow

    sample, images = sequence
    right = pose_matrix([0.2, -0.15, 0.5], [0.0, 0.0, 0.0, 1.0])
    harness = start(make_node(pose_source='tf', tf_timeout=0.5, cameras=['left', 'right']))
    try:
        windows = harness.subscribe(FeatureWindow, '/mvfm/window')
        robot = Robot(harness, cameras=('left', 'right'),
                      frames=('left_optical', 'right_optical'), offsets=(BASE_TO_CAMERA, right))
        k = sample.intrinsics[0].numpy()
        robot.run_until(lambda: robot.now() > 0.3, 5)
        sent = {}
        for i in range(4):
            camera = ('left', 'right')[i % 2]
            t = robot.image(camera, f'{camera}_optical', images[i], k)
            sent[robot.start + round(t * 1e9)] = (t, BASE_TO_CAMERA if camera == 'left'
                                                  else right)
            assert robot.run_until(lambda i=i: len(windows) > i, 30)
            robot.run_until(lambda t=t: robot.now() > t + 0.25, 5)
        poses = _window_poses(windows)
        for stamp, (t, offset) in sent.items():
            assert np.allclose(poses[stamp], optical_in_map(t, offset), atol=1e-5)
        assert {v.camera for v in windows[-1].views} == {'left', 'right'}
    finally:
        harness.close()
