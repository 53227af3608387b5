"""Reliability and safety, round 3: nothing a peer sets runs code, nothing silent, nothing lost.

Each case here was reproduced against the previous version of the node or the tools.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_ADAPTER
from rosbags.typesys import Stores, get_typestore

from ros_helpers import (  # isort: skip
    STEP_NS, ConsoleLog, Player, make_node, start, wait_for)

from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState  # noqa: E402
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from mvfm_ros import build_model  # noqa: E402
from mvfm_ros.lift.operators import Operator, OperatorError  # noqa: E402
from mvfm_ros.messages.assemble import FrameAssembler  # noqa: E402
from mvfm_ros.messages.factory import rosbags_factory  # noqa: E402
from mvfm_ros.pipeline import AsyncPipeline, Engine, Frame, Pipeline, Settings  # noqa: E402
from mvfm_ros.pipeline.settings import SettingsError  # noqa: E402

ROOT = Path(__file__).parents[1]
BIN = Path(sys.executable).parent


# -------------------------------------------------------------------- no code from the network
@pytest.fixture
def marker(tmp_path, monkeypatch) -> Path:
    """Put a module on the Python path that leaves a file when it is imported."""
    flag = tmp_path / 'imported'
    (tmp_path / 'marker_op.py').write_text(
        f'open({str(flag)!r}, "w").write("imported")\n'
        'def run(image):\n    return image[..., 0].astype("int64")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    return flag


def _string_array(values: list[str]) -> ParameterValue:
    return ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY, string_array_value=values)


def _call(harness, client, request):
    future = client.call_async(request)
    assert wait_for(future.done, 20)
    return future.result()


def test_a_peer_setting_operators_and_driving_the_lifecycle_imports_nothing(
        ros_context, sequence, marker, capfd) -> None:
    sample, images = sequence
    harness = start(make_node())
    log = ConsoleLog(capfd)
    try:
        name = harness.node.get_fully_qualified_name()
        params = harness.peer.create_client(SetParameters, f'{name}/set_parameters')
        lifecycle = harness.peer.create_client(ChangeState, f'{name}/change_state')
        assert params.wait_for_service(10) and lifecycle.wait_for_service(10)
        for param in ('operators', 'allow_module_operators'):
            value = (_string_array(['marker_op:run']) if param == 'operators' else
                     ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=True))
            result = _call(harness, params, SetParameters.Request(
                parameters=[Parameter(name=param, value=value)])).results[0]
            assert not result.successful and 'read-only' in result.reason, result.reason
        assert harness.node.pipeline.stats.counts['parameter_refused'] == 2
        assert log.has('[parameter_refused] operators is fixed when the process is launched')
        for transition in (Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_CLEANUP,
                           Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
            request = ChangeState.Request()
            request.transition.id = transition
            assert _call(harness, lifecycle, request).success
        assert not marker.exists() and 'marker_op' not in sys.modules
        assert harness.node.engine.lifting.operators == []
        feats = harness.subscribe(Image, '/mvfm/features')
        player = Player(harness)
        player.send(images[0], sample.intrinsics[0].numpy(),
                    sample.cam_to_world[0].double().numpy(), 5 * STEP_NS)
        assert wait_for(lambda: len(feats) == 1, 30)  # and it keeps serving
    finally:
        harness.close()


def test_module_operators_run_only_when_the_launch_configuration_allows_them(
        ros_context, marker, capfd) -> None:
    log = ConsoleLog(capfd)
    node = make_node(operators=['marker_op:run'])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert log.has('allow_module_operators') and not marker.exists()
    finally:
        node.destroy_node()
    node = make_node(operators=['marker_op:run'], allow_module_operators=True)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert marker.exists()  # launched so: the code runs
    finally:
        node.close()
        node.destroy_node()


# ---------------------------------------------------------------- operators cannot hurt the node
def _image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize('exit_kind', [SystemExit, KeyboardInterrupt])
def test_an_operator_that_exits_is_an_operator_error(exit_kind) -> None:
    def bad(image):
        raise exit_kind(3)

    with pytest.raises(OperatorError, match='raised'):
        Operator('bad', bad)(_image())


def test_operators_get_a_copy_a_budget_and_checked_ids() -> None:
    image = _image()
    original = image.copy()

    def scribble(img):
        img[:] = 0
        return img[..., 0].astype(np.int64)

    Operator('scribble', scribble)(image)
    assert np.array_equal(image, original)  # the next operator sees the real image
    release = threading.Event()
    slow = Operator('slow', lambda img: release.wait(10) and img[..., 0].astype(np.int64),
                    budget_s=0.2)
    with pytest.raises(OperatorError, match='budget'):
        slow(image)
    with pytest.raises(OperatorError, match='still busy'):
        slow(image)
    release.set()
    assert wait_for(lambda: slow._running.done(), 10)
    assert slow(image).shape == (24, 32)  # back once it returned
    huge = np.full((24, 32), 2**63 + 5, dtype=np.uint64)
    with pytest.raises(OperatorError, match='beyond int64'):
        Operator('huge', lambda img: huge)(image)
    big = np.zeros((80, 64, 3), np.uint8)  # 5120 pixels, one id each
    with pytest.raises(OperatorError, match='distinct ids'):
        Operator('pixels', lambda img: np.arange(80 * 64).reshape(80, 64))(big)


@pytest.fixture(scope='module')
def tiny_engine():
    model = build_model('vit_small_patch16_224', pretrained=False,
                        backbone_kwargs=dict(patch_size=8, embed_dim=32, depth=2, num_heads=2),
                        **TINY_ADAPTER)
    return Engine(model, 'cpu', input_size=(24, 32), num_segments=3)


def _frames(count: int) -> list[Frame]:
    k = np.array([[30.0, 0, 15.5], [0, 30.0, 11.5], [0, 0, 1.0]])
    out = []
    for i in range(count):
        pose = np.eye(4)
        pose[0, 3] = 0.2 * i
        out.append(Frame(_image(), k, pose, (i + 1) * 10**8, 'cam'))
    return out


def test_a_window_that_exits_or_hangs_does_not_stop_the_worker(tiny_engine) -> None:
    settings = Settings(min_translation=0, min_rotation_deg=0, max_interval=0, queue_size=8)
    pipeline = Pipeline(tiny_engine, settings)
    original, hang = pipeline.process, threading.Event()

    def process(frame):
        if frame.uid == 0:
            raise SystemExit(1)  # e.g. an operator's sys.exit leaking through a plug-in
        if frame.uid == 2:
            hang.wait(30)  # stuck on one window
        return original(frame)

    pipeline.process = process
    got, errors = [], []
    worker = AsyncPipeline(pipeline, got.append, errors.append)
    worker.start()
    try:
        frames = _frames(4)
        worker.submit(frames[0])
        worker.submit(frames[1])
        assert wait_for(lambda: len(got) == 1, 30)
        assert isinstance(errors[0], SystemExit) and worker.check(1.0) == 'ok'
        worker.submit(frames[2])
        assert wait_for(lambda: worker.check(0.2) == 'stuck', 10)
        worker.restart()
        worker.submit(frames[3])
        assert wait_for(lambda: len(got) == 2, 30)
        assert got[-1].frames[-1] is frames[3] and len(got[-1].frames) == 1  # a fresh window
        hang.set()
        time.sleep(0.2)  # let the abandoned thread finish: its window must not be published
        assert len(got) == 2 and pipeline.stats.counts['inference_errors'] == 1
    finally:
        hang.set()
        worker.stop()


# ------------------------------------------------------------------- depth checked as registered
BUILD = rosbags_factory(get_typestore(Stores.ROS2_JAZZY))
K = np.array([[30.0, 0, 15.5], [0, 30.0, 11.5], [0, 0, 1.0]])


def _assemble(depth: np.ndarray, encoding: str, frame: str = 'cam_optical',
              depth_frame_id: str = '') -> tuple[Frame, list]:
    reported = []
    settings = Settings(pose_source='topic', use_depth=True, depth_frame_id=depth_frame_id)
    assembler = FrameAssembler(settings, lambda *args: reported.append(args))
    header = BUILD.header(10**8, 'cam_optical')
    assembler.camera_info('camera', BUILD.camera_info(header, K, 24, 32))
    pose = BUILD.types['geometry_msgs/msg/PoseStamped'](header=BUILD.header(10**8, 'map'),
                                                        pose=BUILD.pose(np.eye(4)))
    assembler.pose('camera', pose)
    assembler.depth('camera', BUILD.image(BUILD.header(10**8, frame), depth, encoding))
    assembler.image('camera', BUILD.image(header, _image(), 'rgb8'), now_ns=10**8)
    [out] = assembler.poll(10**8)
    return out, reported


@pytest.mark.parametrize('case,depth,encoding,frame,kind', [
    ('another frame', np.full((24, 32), 1500, np.uint16), '16UC1', 'other_optical',
     'depth_not_registered'),
    ('empty frame id', np.full((24, 32), 1500, np.uint16), '16UC1', '', 'depth_not_registered'),
    ('millimetres as 32FC1', np.full((24, 32), 1500.0, np.float32), '32FC1', 'cam_optical',
     'depth_implausible'),
    ('metres as 16UC1', np.full((24, 32), 2, np.uint16), '16UC1', 'cam_optical',
     'depth_implausible'),
    ('all zero', np.zeros((24, 32), np.uint16), '16UC1', 'cam_optical', 'depth_empty'),
    ('all NaN', np.full((24, 32), np.nan, np.float32), '32FC1', 'cam_optical', 'depth_empty'),
])
def test_depth_that_is_not_registered_or_plausible_is_refused_and_counted(
        case, depth, encoding, frame, kind) -> None:
    served, reported = _assemble(depth, encoding, frame)
    assert served.depth is None, case  # served, without depth
    assert [(r[0], r[2]) for r in reported] == [(kind, False)], case


def test_depth_registered_under_another_name_is_accepted_when_declared() -> None:
    depth = np.full((24, 32), 1500, np.uint16)
    served, reported = _assemble(depth, '16UC1', 'depth_optical', depth_frame_id='depth_optical')
    assert not reported and np.allclose(served.depth, 1.5)


# --------------------------------------------------------------------------- bags never destroy
@pytest.fixture(scope='module')
def small_bag(tmp_path_factory):
    from mvfm_ros.demo.make_bag import write_demo_bag

    return write_demo_bag(tmp_path_factory.mktemp('bag') / 'in', frames=4, size=(48, 64),
                          speed=1.0)


def _bag(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / 'mvfm-bag'), *args], capture_output=True, text=True,
                          timeout=300)


def test_the_bag_tool_never_destroys_or_half_writes(small_bag, tmp_path) -> None:
    metadata = (small_bag / 'metadata.yaml').read_bytes()
    existing = tmp_path / 'map.ply'
    existing.write_text('keep me')
    cases = [
        (['--depth-topic', '/camera/depth', '--ply', str(small_bag / 'metadata.yaml')],
         'exists; pass --overwrite'),
        (['--depth-topic', '/camera/depth', '--ply', str(existing)], 'exists; pass --overwrite'),
        (['--depth-topic', '/camera/depth', '--ply', str(tmp_path / 'missing' / 'map.ply')],
         'does not exist'),
        (['--ply', str(tmp_path / 'new.ply')], 'give --depth-topic'),
        (['--depth-tolerance', '-1'], 'depth_tolerance must be in'),
        (['--depth-topic', '/camera/image'], 'is the image or camera_info topic'),
    ]
    for args, message in cases:
        run = _bag(str(small_bag), str(tmp_path / 'out'), *args)
        assert run.returncode == 2 and message in run.stderr, (args, run.stderr)
        assert 'Traceback' not in run.stderr
        assert not (tmp_path / 'out').exists() and not list(tmp_path.glob('.out*'))
    assert (small_bag / 'metadata.yaml').read_bytes() == metadata
    assert existing.read_text() == 'keep me'
    run = _bag(str(small_bag), str(tmp_path / 'out'), '--depth-topic', '/camera/depth', '--ply',
               str(existing), '--overwrite')
    assert run.returncode == 0, run.stderr
    assert existing.read_bytes().startswith(b'ply')


def test_an_empty_bag_says_so(tmp_path) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    with Writer(tmp_path / 'empty', version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        for topic, kind in (('/camera/image', 'sensor_msgs/msg/Image'),
                            ('/camera/camera_info', 'sensor_msgs/msg/CameraInfo'),
                            ('/tf', 'tf2_msgs/msg/TFMessage')):
            writer.add_connection(topic, kind, typestore=store)
    run = _bag(str(tmp_path / 'empty'), str(tmp_path / 'out'))
    assert run.returncode == 2 and 'no message on the image topic' in run.stderr, run.stderr


# --------------------------------------------------------- settings that cannot mean anything
def test_map_settings_the_model_cannot_serve_are_refused(tiny_engine) -> None:
    with pytest.raises(SettingsError, match='map_features 33 is more than the model has'):
        Pipeline(tiny_engine, Settings(map_features=33))
    with pytest.raises(SettingsError, match='at least 0.1 s'):
        Settings(map_period=0.001)
    from mvfm_ros.lift.lifting import Lifting

    engine = Engine(tiny_engine.model, 'cpu', input_size=(24, 32))
    engine.lifting = Lifting([Operator('heat', lambda img: img[..., 0].astype(np.float32),
                                       'float')])
    with pytest.raises(SettingsError, match='names a float operator'):
        Pipeline(engine, Settings(operators=['heat'], map_label='heat'))


def _node(*params: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / 'perception_node'), '--ros-args', '-p',
                           'autostart:=true', '-p', 'pose_source:=topic', *params],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, 'ROS_DOMAIN_ID': '71'})


@pytest.mark.parametrize('param,message', [
    ('window_size:=four', 'window_size must be int'),
    ('use_depth:=1', 'use_depth must be bool'),
    ('map_period:=0.001', 'map_period must be 0'),
])
def test_a_wrong_parameter_is_the_packages_message_not_a_traceback(param, message) -> None:
    run = _node('-p', param)
    out = run.stdout + run.stderr
    assert run.returncode == 1 and message in out and 'Traceback' not in out, out[-2000:]


def test_an_integer_for_a_double_parameter_is_taken_as_ros_users_type_it() -> None:
    """``map_voxel_size:=1`` and ``tf_timeout:=1``: the node starts (then Ctrl-C)."""
    process = subprocess.Popen(
        [str(BIN / 'perception_node'), '--ros-args', '-p', 'autostart:=true', '-p',
         'pose_source:=topic', '-p', 'map_voxel_size:=1', '-p', 'tf_timeout:=1'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, 'ROS_DOMAIN_ID': '72'})
    lines = []
    for line in process.stdout:
        lines.append(line)
        if 'active: waiting for images' in line or 'Traceback' in line:
            break
    process.send_signal(signal.SIGINT)
    out = ''.join(lines) + process.communicate(timeout=30)[0]
    assert process.returncode == 0 and 'active: waiting' in out, out[-2000:]


# -------------------------------------------------------------------- signals, failing transitions
def _lifecycle_client(name: str):
    from rclpy.node import Node

    node = Node('signal_test_manager')
    return node, node.create_client(ChangeState, f'{name}/change_state')


def _transition(node, client, transition: int) -> bool:
    import rclpy

    request = ChangeState.Request()
    request.transition.id = transition
    future = client.call_async(request)
    end = time.monotonic() + 60
    while not future.done() and time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    return future.done() and future.result().success


STATES = {
    'unconfigured': [],
    'inactive': [Transition.TRANSITION_CONFIGURE],
    'active': [Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE],
    'after a failed configure': [Transition.TRANSITION_CONFIGURE],
}


@pytest.mark.parametrize('state', list(STATES))
@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_signals_end_the_node_promptly_in_every_state(ros_context, state, sig) -> None:
    # A name of its own: another test's node (or one still leaving the graph) must not answer
    # the lifecycle calls meant for this process.
    name = f'mvfm_signal_{uuid.uuid4().hex[:12]}'
    args = [str(BIN / 'perception_node'), '--ros-args', '-r', f'__node:={name}',
            '-p', 'pose_source:=topic']
    if state == 'after a failed configure':
        args += ['-p', 'checkpoint:=/nonexistent.safetensors']
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    node, client = _lifecycle_client(f'/{name}')
    try:
        assert client.wait_for_service(60)
        for transition in STATES[state]:
            expected = state != 'after a failed configure'
            assert _transition(node, client, transition) == expected
        start = time.monotonic()
        process.send_signal(sig)
        out = process.communicate(timeout=20)[0]
        assert process.returncode == 0 and time.monotonic() - start < 10, out[-2000:]
        assert 'Traceback' not in out
    finally:
        if process.poll() is None:
            process.kill()
        node.destroy_node()


def test_a_transition_that_fails_says_why_whatever_raised(ros_context, capfd,
                                                         monkeypatch) -> None:
    from mvfm_ros.ros.node import PerceptionNode

    def boom(self, *args, **kwargs):
        raise RuntimeError('Could not load the type support library for '
                           'mvfm_ros/msg/FeatureWindow')

    monkeypatch.setattr(PerceptionNode, 'create_lifecycle_publisher', boom)
    log = ConsoleLog(capfd)
    node = make_node()
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert wait_for(lambda: log.has('configure failed: Could not load the type support'),
                        5), log.lines()[-5:]
        assert log.has('make interfaces') and log.has('source install/setup.bash')
        assert node.engine is None and node.pipeline is None  # nothing half-made left
    finally:
        node.destroy_node()
