"""The package as ROS users run it: ``ros2 launch``, ``ros2 lifecycle``, ``ros2 param``, ...

The workspace is built with colcon (as the README's workspace steps do) and sourced from
``install/setup.bash``; ``ros2`` is the real command line (``make ros-tools`` builds it from
../shared/ros-src; a ROS 2 install has it). The node is fed by a player in this process.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ros_helpers import STEP_NS, frame_messages, wait_for  # isort: skip

pytest.importorskip('launch_ros', reason='launch_ros and the ros2 CLI are not installed: '
                    '`make ros-tools` builds them from ../shared/ros-src (or source ROS 2)')

from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from geometry_msgs.msg import PoseStamped  # noqa: E402  # isort: skip

ROOT = Path(__file__).parents[1]
BIN = Path(sys.executable).parent
NAMESPACE = 'launch_test'  # away from the other tests' nodes
NODE = f'/{NAMESPACE}/mvfm_perception'


def ros_shell(workspace: Path, command: str, env: dict | None = None, cwd: Path | None = None,
              **kwargs) -> subprocess.Popen:
    """Run ``command`` in bash as a user's shell would.

    After ``source install/setup.bash`` of a workspace; with ``env`` (a development
    environment) as it is.
    """
    setup = 'source install/setup.bash && ' if env is None else ''
    env = env or {**os.environ, 'PATH': f'{BIN}{os.pathsep}{os.environ["PATH"]}',
                  'AMENT_PREFIX_PATH': str(BIN.parent)}
    return subprocess.Popen(['bash', '-c', setup + command], cwd=cwd or workspace, env=env,
                            text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            **kwargs)


def ros2(workspace: Path, args: str, until: str = '', timeout: float = 60,
         env: dict | None = None, cwd: Path | None = None) -> str:
    """Run a ``ros2`` command until its output holds ``until`` (DDS discovery can lag)."""
    end = time.monotonic() + timeout
    while True:
        run = ros_shell(workspace, f'ros2 {args}', env, cwd, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT)
        out = run.communicate(timeout=120)[0]
        if until in out or time.monotonic() > end:
            assert until in out, f'ros2 {args}: {out}'
            return out
        time.sleep(0.5)


@pytest.fixture(scope='module')
def config(tmp_path_factory) -> Path:
    """Write a parameter file as a user writes one: every image a keyframe."""
    path = tmp_path_factory.mktemp('config') / 'robot.yaml'
    path.write_text('/**:\n  ros__parameters:\n    min_translation: 0.0\n'
                    '    min_rotation_deg: 0.0\n    max_interval: 0.0\n    tf_timeout: 1.0\n')
    return path


class Camera:
    """Publishes frames on the topics the launch arguments remap the node's inputs to."""

    def __init__(self, node: Node, sequence) -> None:
        self.sample, self.images = sequence
        self.image = node.create_publisher(Image, '/cam/image_raw', 10)
        self.info = node.create_publisher(CameraInfo, '/cam/camera_info', 10)
        self.pose = node.create_publisher(PoseStamped, '/cam/pose', 10)
        self.i = 0

    def subscribed(self) -> bool:
        return all(p.get_subscription_count() for p in (self.image, self.info, self.pose))

    def send(self) -> None:
        j = self.i % len(self.images)
        img, info, pose = frame_messages(self.images[j], self.sample.intrinsics[j].numpy(),
                                         self.sample.cam_to_world[j].double().numpy(),
                                         (500 + self.i) * STEP_NS)
        self.info.publish(info)
        self.pose.publish(pose)
        self.image.publish(img)
        self.i += 1


@pytest.fixture
def peer(ros_context):
    import threading

    from rclpy.executors import SingleThreadedExecutor

    node = Node('launch_test_peer')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield node
    executor.shutdown(timeout_sec=5)
    node.destroy_node()


def launch_args(config: Path, autostart: bool) -> str:
    return (f'namespace:={NAMESPACE} config:={config} image:=/cam/image_raw '
            f'camera_info:=/cam/camera_info pose_topic:=/cam/pose pose_source:=topic '
            f'autostart:={str(autostart).lower()}')


def stop(process: subprocess.Popen, workspace: Path) -> int:
    """Ctrl-C the launch; returns its exit status (the node must be gone too)."""
    process.send_signal(signal.SIGINT)
    try:
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        ros_shell(workspace, 'ros2 daemon stop', stdout=subprocess.DEVNULL,
                  stderr=subprocess.DEVNULL).wait(timeout=60)
    return code


def serve(camera: Camera, features: list, count: int) -> None:
    """Send frames, each after the previous one's features came (no drops by design)."""
    for _ in range(count):
        before = len(features)
        camera.send()
        assert wait_for(lambda before=before: len(features) > before, 60), \
            'no features for a keyframe'


def test_ros2_launch_configures_activates_serves_every_keyframe_and_ends_on_ctrl_c(
        colcon_workspace, config, peer, sequence, tmp_path) -> None:
    log = open(tmp_path / 'launch.log', 'w')
    launch = ros_shell(colcon_workspace, 'exec ros2 launch mvfm_ros perception.launch.py '
                       + launch_args(config, True), stdout=log, stderr=subprocess.STDOUT)
    try:
        features = []
        peer.create_subscription(Image, f'/{NAMESPACE}/mvfm/features', features.append, 20)
        camera = Camera(peer, sequence)
        assert wait_for(camera.subscribed, 120), (tmp_path / 'launch.log').read_text()
        serve(camera, features, 4)
        stamps = [(m.header.stamp.sec, m.header.stamp.nanosec) for m in features]
        assert stamps == [divmod((500 + i) * STEP_NS, 10**9) for i in range(4)]
    finally:
        code = stop(launch, colcon_workspace)
        log.close()
    text = (tmp_path / 'launch.log').read_text()
    assert code == 0, text[-3000:]
    assert 'process has finished cleanly' in text, text[-3000:]


def test_a_lifecycle_manager_drives_the_launched_node_with_ros2_lifecycle_and_param(
        colcon_workspace, config, peer, sequence, tmp_path) -> None:
    log = open(tmp_path / 'launch.log', 'w')
    launch = ros_shell(colcon_workspace, 'exec ros2 launch mvfm_ros perception.launch.py '
                       + launch_args(config, False), stdout=log, stderr=subprocess.STDOUT)
    workspace = colcon_workspace
    try:
        features = []
        peer.create_subscription(Image, f'/{NAMESPACE}/mvfm/features', features.append, 20)
        ros2(workspace, f'lifecycle get {NODE}', until='unconfigured')
        ros2(workspace, f'param set {NODE} window_size 3', until='Set parameter successful')
        ros2(workspace, f'param get {NODE} window_size', until='Integer value is: 3')
        refused = ros2(workspace, f'param set {NODE} operators "[\'os:system\']"',
                       until='Setting parameter failed')
        assert 'read-only' in refused
        ros2(workspace, f'lifecycle set {NODE} configure', until='Transitioning successful')
        ros2(workspace, f'lifecycle set {NODE} activate', until='Transitioning successful')
        camera = Camera(peer, sequence)
        assert wait_for(camera.subscribed, 60)
        serve(camera, features, 3)
        ros2(workspace, f'lifecycle set {NODE} deactivate', until='Transitioning successful')
        assert wait_for(lambda: not camera.image.get_subscription_count(), 30)
        ros2(workspace, f'lifecycle get {NODE}', until='inactive')
        ros2(workspace, f'lifecycle set {NODE} cleanup', until='Transitioning successful')
        ros2(workspace, f'lifecycle get {NODE}', until='unconfigured')
    finally:
        code = stop(launch, colcon_workspace)
        log.close()
    text = (tmp_path / 'launch.log').read_text()
    assert code == 0, text[-3000:]
    assert 'window 3' in text  # set before configure, read by it
    assert '[parameter_refused] operators is fixed when the process is launched' in text


def test_the_readme_workspace_steps_run_as_written(colcon_workspace, tmp_path) -> None:
    """The README's workspace block, line by line in one shell, up to ``ros2 launch``.

    ``git clone`` clones this checkout; ``rosdep`` (a ROS install's package manager) and
    ``rviz2`` (a display) are the two lines that need what a test machine has not: they are
    named here, not run.
    """
    readme = (ROOT / 'README.md').read_text()
    block = readme.split('## Installing into a ROS 2 workspace', 1)[1].split('```bash\n')[1]
    block = block.split('```')[0]
    lines = [line for line in block.splitlines() if line.strip()]
    assert any(line.startswith('colcon build') for line in lines)
    script = ['set -em', f'export PATH={BIN}:$PATH AMENT_PREFIX_PATH={BIN.parent}',
              f'export CMAKE_PREFIX_PATH={BIN.parent}']
    skipped = []
    for line in lines:
        words = shlex.split(line.replace('<this repository>', str(ROOT)))
        if words[0] in ('rosdep', 'rviz2') or 'rosdep' in words:
            skipped.append(words[0] if words[0] != 'cd' else 'rosdep')
            line = line.split('&&')[0] if words[0] == 'cd' else ''
        line = line.replace('~/ros2_ws', str(tmp_path / 'ros2_ws'))
        line = line.replace('<this repository>', str(ROOT))
        if line.startswith('colcon build'):  # this interpreter, as the venv's ROS has it
            build, _, rest = line.partition('&&')
            line = (f'{build.strip()} --cmake-args -DPython3_EXECUTABLE={sys.executable} '
                    f'-DBUILD_TESTING=OFF' + (f' && {rest.strip()}' if rest else ''))
        if line.startswith('ros2 launch'):  # until active, then Ctrl-C
            line = (f'{line} > launch.log 2>&1 & pid=$!\n'
                    'for i in $(seq 900); do grep -q "active: waiting" launch.log && break; '
                    'sleep 0.2; done\nkill -INT $pid; wait $pid')
        if line.startswith('pip install'):
            line = line.replace('pip install', f'{sys.executable} -m pip install --quiet')
        if line:
            script.append(line)
    assert sorted(set(skipped)) == ['rosdep', 'rviz2']
    (tmp_path / 'ros2_ws' / 'src').mkdir(parents=True)
    run = subprocess.run(['bash', '-c', '\n'.join(script)], cwd=tmp_path, text=True,
                         capture_output=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    log = (tmp_path / 'ros2_ws' / 'launch.log').read_text()
    assert 'active: waiting for images on /camera/color/image_raw' in log, log[-3000:]
    assert 'process has finished cleanly' in log, log[-3000:]


def test_the_readme_ros2_commands_run_against_the_node_as_written(peer, tmp_path) -> None:
    """The README's lifecycle block: the node of its first line, then each ros2 line."""
    readme = (ROOT / 'README.md').read_text()
    block = readme.split('Driven by hand through its lifecycle', 1)[1].split('```bash\n')[1]
    lines = [line for line in block.split('```')[0].splitlines() if line.strip()]
    assert lines[0].startswith('perception_node') and len(lines) >= 6
    env = {**os.environ, 'PATH': f'{BIN}{os.pathsep}{os.environ["PATH"]}',
           'AMENT_PREFIX_PATH': str(BIN.parent)}
    log = open(tmp_path / 'node.log', 'w')
    node = subprocess.Popen(shlex.split(lines[0]), cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    expected = {'lifecycle': 'Transitioning successful', 'param': 'Set parameter successful',
                'service': 'success=True'}
    try:
        for line in lines[1:]:
            words = shlex.split(line)
            assert words[0] == 'ros2', line
            ros2(BIN.parent, ' '.join(shlex.quote(w) for w in words[1:]),
                 until=expected[words[1]], env=env)
        blocks = [c.split('```')[0] for c in readme.split('```bash\n')[1:]]
        line = next(c for b in blocks for c in b.splitlines() if c.startswith('ros2 run'))
        out = shlex.split(line)[5]
        subprocess.run(['rm', '-rf', str(ROOT / out)], check=True)
        ros2(BIN.parent, ' '.join(shlex.split(line)[1:]), until='outputs written', env=env,
             cwd=ROOT)
    finally:
        node.send_signal(signal.SIGINT)
        code = node.wait(timeout=30)
        log.close()
    assert code == 0, (tmp_path / 'node.log').read_text()[-2000:]
