"""The reliability matrix: the live node over DDS against bad inputs, one case after another.

For every case: the node stays alive, the bad input is counted under its kind in /diagnostics,
its kind gets one clear log line (throttled: a kind repeated later logs nothing more), and a good
frame sent afterwards is still served. Then the defects found by an adversarial run: lifecycle
transitions by id, a pose from the future, time jumps, pose intake under slow image callbacks.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from ros_helpers import (  # isort: skip
    STEP_NS, ConsoleLog, Player, frame_messages, make_node, start, stamp, wait_for)

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import PointStamped  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState  # noqa: E402
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

rclpy = pytest.importorskip('rclpy')
DAY_NS = 86_400 * 1_000_000_000


def _value(value) -> ParameterValue:
    if isinstance(value, bool):
        return ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
    if isinstance(value, int):
        return ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    if isinstance(value, float):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    if isinstance(value, list):
        return ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY,
                              string_array_value=value)
    return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)


class Rig:
    """The node, a player, service clients, and what the node said."""

    def __init__(self, harness, sequence, capfd) -> None:
        """Create publishers and clients; wait for the node to be reachable."""
        self.harness = harness
        self.node = harness.node
        self.sample, self.images = sequence
        self.player = Player(harness)
        self.prompt = harness.publisher(PointStamped, '/clicked_point', 10)
        self.logs = ConsoleLog(capfd)
        self.diags = harness.subscribe(DiagnosticArray, '/diagnostics')
        self.feats = harness.subscribe(Image, '/mvfm/features')
        name = self.node.get_fully_qualified_name()
        self.params = harness.peer.create_client(SetParameters, f'{name}/set_parameters')
        self.lifecycle = harness.peer.create_client(ChangeState, f'{name}/change_state')
        assert self.params.wait_for_service(10) and self.lifecycle.wait_for_service(10)
        self.t = 100 * STEP_NS  # stamps of good frames: always increasing

    def frame(self, i: int = 0):
        """Messages of a good frame at the next stamp."""
        self.t += STEP_NS
        j = i % len(self.images)
        return frame_messages(self.images[j], self.sample.intrinsics[j].numpy(),
                              self.sample.cam_to_world[j].double().numpy(), self.t)

    def send(self, img, info, pose) -> None:
        """Publish camera_info, pose (if any) and image."""
        self.player.info.publish(info)
        if pose is not None:
            self.player.pose.publish(pose)
        self.player.image.publish(img)

    def count(self, kind: str) -> int:
        """Return the count of a problem kind, as /diagnostics reports it."""
        values = {kv.key: kv.value for kv in self.node.diagnostics().values}
        return int(values.get(kind, 0))

    def served(self) -> None:
        """Send a good frame and check that it still gets its output."""
        before = len(self.feats)
        self.send(*self.frame())
        assert wait_for(lambda: len(self.feats) > before, 30), 'no output after a bad input'

    def call(self, client, request):
        """Call a service of the node and return the response."""
        future = client.call_async(request)
        assert wait_for(future.done, 10)
        return future.result()

    def set_parameter(self, name: str, value):
        """SetParameters over the service, as `ros2 param set` does."""
        request = SetParameters.Request(parameters=[Parameter(name=name, value=_value(value))])
        return self.call(self.params, request).results[0]


def image_cases(rig: Rig):
    """(name, kind, messages builder) of bad images, camera_infos and stamps."""
    def mutate(change):
        def build():  # at send time, so stamps follow the good frames sent before
            img, info, pose = rig.frame()
            change(img, info, pose)
            return img, info, pose
        return build

    def short(img, info, pose):
        img.data = bytes(img.data)[:len(img.data) // 2]

    def padded_wrong(img, info, pose):
        img.step = img.width * 3 + 16  # claims padding its data does not have

    def zero_size(img, info, pose):
        img.height = img.width = 0
        img.data = b''

    def huge(img, info, pose):
        img.height = img.width = 100_000

    def k_last_row(img, info, pose):
        info.k = list(info.k[:6]) + [0.0, 0.5, 1.0]

    def dup(img, info, pose):
        stamp(img, rig.t - STEP_NS)  # the previous good frame's stamp (its pose is known)

    def back(img, info, pose):
        stamp(img, rig.t - STEP_NS - 1)

    def set_(**fields):
        def change(img, info, pose):
            for key, value in fields.items():
                target, attr = key.split('__')
                setattr({'img': img, 'info': info}[target], attr, value)
        return change

    now = rig.node.get_clock().now().nanoseconds
    # (name, kind, build messages)
    return [
        ('16UC1 image', 'unsupported_encoding', mutate(set_(img__encoding='16UC1'))),
        ('yuv422 image', 'unsupported_encoding', mutate(set_(img__encoding='yuv422'))),
        ('short data', 'bad_image', mutate(short)),
        ('empty data', 'bad_image', mutate(set_(img__data=b''))),
        ('step below width', 'bad_image', mutate(set_(img__step=10))),
        ('step claims padding', 'bad_image', mutate(padded_wrong)),
        ('zero size', 'bad_image', mutate(zero_size)),
        ('huge size', 'bad_image', mutate(huge)),
        ('empty image frame_id', 'missing_frame_id', mutate(set_(img__header=_header('')))),
        ('all-zero K', 'bad_camera_info', mutate(set_(info__k=[0.0] * 9))),
        ('NaN K', 'bad_camera_info', mutate(set_(info__k=[math.nan] * 9))),
        ('K last row not 0 0 1', 'bad_camera_info', mutate(k_last_row)),
        ('camera_info 0x0', 'bad_camera_info', mutate(set_(info__width=0, info__height=0))),
        ('camera_info of another size', 'size_mismatch', mutate(set_(info__width=64))),
        ('duplicate stamp', 'duplicate_stamp', mutate(dup)),
        ('stamp going back', 'out_of_order_stamp', mutate(back)),
        ('stamp zero', 'pose_extrapolation', mutate(set_(img__header=_header('camera_optical')))),
        ('stamp a day ahead', 'future_stamp', mutate(set_(img__header=_header(
            'camera_optical', now + DAY_NS)))),
    ]


def pose_cases(rig: Rig):
    """(name, kind, messages builder) of bad poses (each followed by its image)."""
    def mutate(change):
        def build():
            img, info, pose = rig.frame()
            change(pose)
            return img, info, pose
        return build

    def quat(x, y, z, w):
        def change(pose):
            q = pose.pose.orientation
            q.x, q.y, q.z, q.w = x, y, z, w
        return change

    def position_nan(pose):
        pose.pose.position.x = math.nan

    def frame(name):
        def change(pose):
            pose.header.frame_id = name
        return change

    def future(pose):
        stamp(pose, rig.node.get_clock().now().nanoseconds + 3 * 3600 * 10**9)

    return [
        ('NaN quaternion', 'bad_pose', mutate(quat(0.0, 0.0, 0.0, math.nan))),
        ('zero quaternion', 'bad_pose', mutate(quat(0.0, 0.0, 0.0, 0.0))),
        ('NaN position', 'bad_pose', mutate(position_nan)),
        ('pose in odom', 'pose_frame_mismatch', mutate(frame('odom'))),
        ('pose without frame', 'missing_frame_id', mutate(frame(''))),
        ('pose 3 h ahead', 'future_stamp', mutate(future)),
    ]


def _header(frame_id: str, ns: int = 0):
    from std_msgs.msg import Header

    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = divmod(ns, 1_000_000_000)
    return header


def prompt_cases():
    """(name, point, frame) of bad prompts."""
    return [('prompt in odom', (1.0, 0.0, 1.0), 'odom'),
            ('NaN prompt', (math.nan, 0.0, 1.0), 'map'),
            ('prompt at 1e300', (1e300, 0.0, 0.0), 'map'),
            ('prompt without frame', (1.0, 0.0, 1.0), '')]


PARAMETER_CASES = [('window_size', 0), ('window_size', -1), ('window_size', 1000),
                   ('queue_size', 0), ('device', 'cuda:7'), ('input_height', 7),
                   ('tf_timeout', -5.0), ('pose_source', 'nonsense'),
                   ('diagnostics_period', 0.0), ('num_segments', 300), ('cameras', ['a b'])]


def test_reliability_matrix(ros_context, sequence, capfd) -> None:
    harness = start(make_node(log_throttle=120.0))
    try:
        rig = Rig(harness, sequence, capfd)
        node = rig.node
        # An image before any camera_info.
        img, _, pose = rig.frame()
        rig.player.pose.publish(pose)
        rig.player.image.publish(img)
        assert wait_for(lambda: rig.count('missing_camera_info') == 1, 10)
        rig.served()  # and the first good frame (a one-view window) is served
        tried = ['image before camera_info']

        def expect(name: str, kind: str, act) -> None:
            before = rig.count(kind)
            act()
            assert wait_for(lambda: rig.count(kind) > before, 10), (name, kind)
            assert harness.thread.is_alive(), name
            rig.served()
            tried.append(name)

        for name, kind, messages in image_cases(rig) + pose_cases(rig):
            expect(name, kind, lambda m=messages: rig.send(*m()))
        # A non-unit quaternion is normalised and used, and counted.
        img, info, pose = rig.frame()
        q = pose.pose.orientation
        q.x, q.y, q.z, q.w = 2 * q.x, 2 * q.y, 2 * q.z, 2 * q.w
        before = len(rig.feats)
        expect('quaternion of norm 2', 'non_unit_quaternion', lambda: rig.send(img, info, pose))
        assert len(rig.feats) >= before + 1
        # A padded row stride is valid: served, not refused.
        img, info, pose = rig.frame()
        rows = np.frombuffer(bytes(img.data), np.uint8).reshape(img.height, -1)
        img.data = np.pad(rows, ((0, 0), (0, 16))).tobytes()
        img.step += 16
        before = len(rig.feats)
        rig.send(img, info, pose)
        assert wait_for(lambda: len(rig.feats) > before, 30), 'padded rows refused'
        for name, point, frame in prompt_cases():
            msg = PointStamped()
            msg.header.frame_id = frame
            msg.point.x, msg.point.y, msg.point.z = point
            expect(name, 'bad_prompt', lambda m=msg: rig.prompt.publish(m))
        assert node.pipeline.prompt is None  # no bad prompt reached the pipeline
        for name, value in PARAMETER_CASES:
            old = node.get_parameter(name).value
            result = {}

            def act(name=name, value=value, result=result):
                result['r'] = rig.set_parameter(name, value)

            expect(f'{name} := {value}', 'parameter_refused', act)
            assert not result['r'].successful and result['r'].reason, (name, value)
            assert node.get_parameter(name).value == old, name
        # Lifecycle transitions invalid in the active state, by id and by label.
        for transition in (Transition(id=Transition.TRANSITION_CONFIGURE),
                           Transition(label='activate'), Transition(id=99)):
            result = {}

            def act(t=transition, result=result):
                result['r'] = rig.call(rig.lifecycle, ChangeState.Request(transition=t))

            expect(f'transition {transition.id or transition.label}', 'lifecycle_refused', act)
            assert result['r'].success is False
        assert len(tried) >= 25, tried
        # One log line per kind, however often it happened (log_throttle 120 s).
        lines = [line[line.index(']: [') + 3:] for line in rig.logs.lines()
                 if '[mvfm_perception]: [' in line]
        kinds = {line[1:line.index(']')] for line in lines}
        for kind in kinds:
            assert sum(line.startswith(f'[{kind}]') for line in lines) == 1, (kind, lines)
        assert {'bad_image', 'bad_camera_info', 'bad_pose', 'bad_prompt',
                'parameter_refused'} <= kinds
        # And the counts reached /diagnostics.
        bad_images = sum(kind == 'bad_image' for _, kind, _ in image_cases(rig))
        assert wait_for(lambda: rig.diags and {kv.key: kv.value for kv in
                                               rig.diags[-1].status[0].values}.get('bad_image')
                        == str(bad_images), 10)
    finally:
        harness.close()


def test_a_pose_from_the_future_does_not_stop_output(ros_context, sequence, capfd) -> None:
    """One PoseStamped 3 h ahead used to evict every real pose (defect 2)."""
    harness = start(make_node())
    try:
        rig = Rig(harness, sequence, capfd)
        now = rig.node.get_clock().now().nanoseconds
        rig.t = now - 20 * STEP_NS  # real-time stamps, as a live robot has
        rig.served()
        img, info, pose = rig.frame()
        stamp(pose, now + 3 * 3600 * 10**9)
        rig.player.pose.publish(pose)
        assert wait_for(lambda: rig.count('future_stamp') == 1, 10)
        for _ in range(3):
            rig.served()
        assert rig.count('pose_extrapolation') == 0
    finally:
        harness.close()


def test_a_time_jump_back_recovers_by_itself(ros_context, sequence, capfd) -> None:
    """A bag loop or clock reset: stamps jump back a minute; output resumes (defect 2)."""
    harness = start(make_node())
    try:
        rig = Rig(harness, sequence, capfd)
        rig.t = 1000 * STEP_NS
        rig.served()
        rig.served()
        rig.t -= 300 * STEP_NS  # 60 s back
        rig.served()
        rig.served()
        assert rig.count('time_jump') >= 1
        assert rig.count('out_of_order_stamp') == 0
    finally:
        harness.close()


def test_poses_are_taken_in_while_an_image_callback_is_busy(ros_context, sequence, capfd,
                                                            monkeypatch) -> None:
    """The executor takes poses in while an image conversion is slow (defect 5).

    Images are converted on the intake thread; the executor only queues messages, so poses are
    received (and their delivery delay recorded) at once, and the slow image is then served
    with its pose.
    """
    import mvfm_ros.messages.assemble as assemble

    original = assemble.frame_from_messages

    def slow(*args, **kwargs):
        time.sleep(1.5)  # a conversion stuck on a huge image
        return original(*args, **kwargs)

    monkeypatch.setattr(assemble, 'frame_from_messages', slow)
    harness = start(make_node())
    try:
        rig = Rig(harness, sequence, capfd)
        delays = rig.node.pipeline.stats.pose_delay
        img, info, pose = rig.frame()
        rig.send(img, info, pose)
        time.sleep(0.3)  # the intake thread is now inside the slow conversion
        for _ in range(3):
            _, _, pose = rig.frame()
            rig.player.pose.publish(pose)
        # All poses arrive while the conversion still sleeps.
        assert wait_for(lambda: len(delays) >= 4, 1.0), len(delays)
        assert wait_for(lambda: len(rig.feats) == 1, 30)  # and the image is served
    finally:
        harness.close()
