"""The demo's player: the node as a separate process, fed a bag over ROS 2, outputs collected.

:class:`Session` starts ``perception_node`` with its inputs wired to the played topics, and a
local rclpy node that publishes like a camera driver and subscribes to every output like a
downstream planner; :func:`play` publishes a bag's camera, camera_info, depth and pose topics at
the recorded rate. ``mvfm-demo`` and the soak benchmark drive the node with it.
"""

from __future__ import annotations

import collections
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mvfm_ros.messages.conversions import image_to_rgb, pose_to_matrix, stamp_to_ns
from mvfm_ros.pipeline.outputs import output_topics
from mvfm_ros.pipeline.settings import node_yaml, ros_arguments
from mvfm_ros.resources import data_places


def find_demo_bag() -> Path:
    """Return the demo bag folder, or raise FileNotFoundError naming where it looked."""
    places = data_places('demo/bag')
    for place in places:
        if (place / 'metadata.yaml').is_file():
            return place
    raise FileNotFoundError('the demo bag was not found in ' + ', '.join(map(str, places))
                            + '; pass --bag FOLDER (a bag with /camera/image, '
                            '/camera/camera_info and /pose)')
PLAYED = {'/camera/image': 'sensor_msgs/msg/Image',
          '/camera/camera_info': 'sensor_msgs/msg/CameraInfo',
          '/camera/depth': 'sensor_msgs/msg/Image',
          '/pose': 'geometry_msgs/msg/PoseStamped'}
# Operators the demo lifts (the built-ins: per-view superpixels and the normal head's normals).
OPERATORS = ['superpixels', 'normals']
# The node's inputs remapped to the played topics, and the demo's settings.
REMAPS = {'image': '/camera/image', 'camera_info': '/camera/camera_info',
          'depth': '/camera/depth', 'pose': '/pose'}
SETTINGS = {'use_depth': True, 'map_period': 0.5, 'operators': OPERATORS,
            'pose_source': 'topic'}


def launch_available() -> bool:
    """Whether ``ros2 launch mvfm_ros perception.launch.py`` can run here.

    It needs the ros2 command line with launch_ros (a ROS 2 install, or ``make ros-tools``)
    and the package in an ament prefix (colcon, or ``make interfaces`` in a checkout).
    """
    ros2 = shutil.which('ros2', path=f'{Path(sys.executable).parent}{os.pathsep}'
                                     f"{os.environ.get('PATH', '')}")
    prefixes = [sys.prefix, *os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep)]
    installed = any((Path(p) / 'share' / 'mvfm_ros' / 'launch' / 'perception.launch.py')
                    .is_file() for p in prefixes if p)
    return bool(ros2) and installed and importlib.util.find_spec('launch_ros') is not None


def node_command(settings: dict, folder: Path,
                 sim_time: bool = False) -> tuple[list[str], dict[str, str]]:
    """Return the command and environment that start the node as users do.

    ``ros2 launch mvfm_ros perception.launch.py`` with a parameter file where the launch tools
    are present (it drives the node through configure and activate); else the console script
    ``perception_node`` with ``-p autostart:=true``. ``sim_time``: the node's clock is the
    player's ``/clock`` (bag playback), as ``use_sim_time:=true`` sets it.
    """
    env = dict(os.environ)
    if launch_available():
        config = folder / 'node_params.yaml'
        config.write_text(node_yaml(settings))
        env['AMENT_PREFIX_PATH'] = os.pathsep.join(
            p for p in (sys.prefix, env.get('AMENT_PREFIX_PATH', '')) if p)
        env['PATH'] = f'{Path(sys.executable).parent}{os.pathsep}{env.get("PATH", "")}'
        return (['ros2', 'launch', 'mvfm_ros', 'perception.launch.py', f'config:={config}',
                 *(f'{("pose_topic" if k == "pose" else k)}:={v}' for k, v in REMAPS.items()),
                 f'use_sim_time:={str(sim_time).lower()}'], env)
    exe = Path(sys.executable).with_name('perception_node')
    remaps = [arg for name, topic in REMAPS.items() for arg in ('-r', f'{name}:={topic}')]
    return ([str(exe), '--ros-args', *remaps, *ros_arguments({**settings, 'autostart': True}),
             '-p', f'use_sim_time:={str(sim_time).lower()}'], env)


class Session:
    """The node process, a player/collector node, and what was seen."""

    def __init__(self, settings: dict, log_path: Path, keep_outputs: bool = True,
                 sim_time: bool = False) -> None:
        """Start the node process and the local rclpy node.

        ``settings`` are added to :data:`SETTINGS`; the node's inputs are remapped to the
        played topics (:func:`node_command`). With ``keep_outputs`` False (long runs) outputs
        are only counted. With ``sim_time`` the player publishes ``/clock`` (the bag's time)
        and the node runs on it, as with ``ros2 bag play --clock``.
        """
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseStamped
        from rclpy.node import Node
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image

        from mvfm_ros.ros.publishing import rclpy_factory

        self.rclpy = rclpy
        rclpy.init()
        self.node = Node('mvfm_demo_player')
        # The player's publishers exist before the node starts, as a camera driver's would, so
        # the node matches their reliable QoS when it activates (input_reliability: auto).
        self.classes = {'sensor_msgs/msg/Image': Image, 'sensor_msgs/msg/CameraInfo': CameraInfo,
                        'geometry_msgs/msg/PoseStamped': PoseStamped}
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs = {topic: self.node.create_publisher(self.classes[kind], topic, qos)
                     for topic, kind in PLAYED.items()}
        self.log = open(log_path, 'w')
        command, env = node_command({**SETTINGS, **settings}, log_path.parent, sim_time)
        self.clock = None  # (bag ns, wall s, rate): the playback clock once playing
        self.clock_pub = None
        if sim_time:
            from rosgraph_msgs.msg import Clock

            self.clock_pub = self.node.create_publisher(Clock, '/clock', 10)
        self.command = command
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT,
                                        text=True, env=env)
        # Every output of the node's table, keyed by the stamp of the (new) keyframe.
        self.topics = output_topics(OPERATORS)
        self.outputs: dict[str, dict[int, object]] = {topic: {} for topic in self.topics}
        self.keep_outputs = keep_outputs
        self.counts: collections.Counter[str] = collections.Counter()
        self.last_output = time.monotonic()
        self.arrival: dict[int, float] = {}
        self.sent: dict[int, float] = {}
        self.images: dict[int, np.ndarray] = {}
        self.infos: dict[int, object] = {}
        self.poses: dict[int, np.ndarray] = {}
        self.diagnostics: dict[str, str] = {}
        types = rclpy_factory().types
        for topic, output in self.topics.items():
            self.node.create_subscription(types[output.msgtype], f'/mvfm/{topic}',
                                          lambda m, t=topic: self._output(t, m), 50)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._diag, 10)

    def _output(self, topic: str, msg) -> None:
        self.counts[topic] += 1
        if topic == 'features':
            self.last_output = time.monotonic()
        if not self.keep_outputs:
            return
        key = stamp_to_ns(msg.header.stamp)
        self.outputs[topic][key] = msg
        if topic == 'features':
            self.arrival[key] = time.monotonic()

    def _diag(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith('mvfm_perception'):
                self.diagnostics = {kv.key: kv.value for kv in status.values}

    def spin(self, seconds: float) -> None:
        """Process callbacks for about ``seconds`` (and keep the playback clock going)."""
        end = time.monotonic() + seconds
        while True:
            left = max(0.0, min(0.01, end - time.monotonic()))
            self.rclpy.spin_once(self.node, timeout_sec=left)
            self._tick_clock()
            if time.monotonic() >= end:
                return

    def _tick_clock(self) -> None:
        """Publish ``/clock``: the bag's time, running on after the last message."""
        if self.clock_pub is None or self.clock is None:
            return
        from rosgraph_msgs.msg import Clock

        bag_ns, wall, rate = self.clock
        now = bag_ns + int((time.monotonic() - wall) * rate * 1e9)
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = divmod(now, 1_000_000_000)
        self.clock_pub.publish(msg)

    def wait(self, condition, timeout: float) -> bool:
        """Spin until ``condition()`` holds or ``timeout`` passes; False on timeout."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if condition():
                return True
            if self.process.poll() is not None:
                raise RuntimeError(f'perception_node exited with {self.process.returncode}; '
                                   f'see {self.log.name}')
            self.spin(0.05)
        return condition()

    def close(self) -> int:
        """Stop the node with SIGINT (as Ctrl-C would) and shut rclpy down."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.node.destroy_node()
        self.rclpy.try_shutdown()
        self.log.close()
        return self.process.returncode


def play(session: Session, bag: Path, rate: float) -> tuple[dict[int, np.ndarray], int]:
    """Publish the bag's camera and pose topics at the recorded rate; returns depth by stamp."""
    from rclpy.serialization import deserialize_message
    from rosbags.highlevel import AnyReader

    classes, pubs = session.classes, session.pubs
    print('waiting for the node to load the model and subscribe ...', flush=True)
    if not session.wait(lambda: all(p.get_subscription_count() for p in pubs.values()), 180):
        raise RuntimeError('perception_node did not subscribe within 180 s')
    depth: dict[int, np.ndarray] = {}
    images = 0
    with AnyReader([bag]) as reader:
        conns = [c for c in reader.connections if c.topic in PLAYED]
        start_wall, start_bag = time.monotonic(), None
        for conn, stamp, raw in reader.messages(connections=conns):
            if start_bag is None:
                start_bag = stamp
                session.clock = (start_bag, start_wall, rate)
            due = start_wall + (stamp - start_bag) / 1e9 / rate
            session.spin(max(0.0, due - time.monotonic()))  # keep the recorded timing
            msg = deserialize_message(bytes(raw), classes[conn.msgtype])
            key = stamp_to_ns(msg.header.stamp)
            if conn.topic == '/camera/depth':
                depth[key] = np.frombuffer(bytes(msg.data), dtype='<u2').reshape(
                    msg.height, msg.width) / 1000.0
            elif conn.topic == '/camera/image':
                session.sent[key] = time.monotonic()
                session.images[key] = image_to_rgb(msg)
                images += 1
            elif conn.topic == '/camera/camera_info':
                session.infos[key] = msg
            else:
                session.poses[key] = pose_to_matrix(msg.pose)
            pubs[conn.topic].publish(msg)
    return depth, images
