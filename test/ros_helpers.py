"""Helpers for tests that run the real node over rclpy + Fast DDS on loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy', reason='rclpy (ROS 2 Jazzy wheels) not installed')

from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from mvfm_ros.geometry.interpolation import matrix_to_quat  # noqa: E402
from mvfm_ros.messages.conversions import image_fields  # noqa: E402

SIZE = (96, 128)
STEP_NS = 200_000_000


class ConsoleLog:
    """The node's log lines as printed on the console (pytest's ``capfd``).

    /rosout is not used: lines logged from several callback threads at once were seen missing
    there while present on the console.
    """

    def __init__(self, capfd) -> None:
        """Start collecting (output before this is dropped)."""
        self.capfd = capfd
        self.text = ''
        capfd.readouterr()

    def lines(self) -> list[str]:
        """Every line printed so far."""
        out = self.capfd.readouterr()
        self.text += out.out + out.err
        return self.text.splitlines()

    def has(self, fragment: str) -> bool:
        """Whether a printed line contains ``fragment``."""
        return any(fragment in line for line in self.lines())


def wait_for(condition: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(step)
    return condition()


class Harness:
    """The perception node plus a test node (player and planner-like subscriber), spinning."""

    def __init__(self, node: Node) -> None:
        """Spin ``node`` and a helper node in a background executor."""
        self.node = node
        self.peer = Node('mvfm_test_peer')
        # One thread, as the console script spins the node.
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(node)
        self.executor.add_node(self.peer)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        self.received: dict[str, list] = {}

    def subscribe(self, msg_type: type, topic: str, depth: int = 50) -> list:
        """Collect messages on ``topic`` into a list."""
        store = self.received.setdefault(topic, [])
        self.peer.create_subscription(msg_type, topic, store.append, depth)
        return store

    def publisher(self, msg_type: type, topic: str, depth: int = 50):
        """Create a publisher on the helper node."""
        return self.peer.create_publisher(msg_type, topic, depth)

    def close(self) -> None:
        """Stop spinning and destroy both nodes."""
        self.executor.shutdown(timeout_sec=5)
        self.thread.join(timeout=5)
        if hasattr(self.node, 'close'):
            self.node.close()
        self.node.destroy_node()
        self.peer.destroy_node()


def params(**values) -> list[Parameter]:
    """Parameter overrides from keyword arguments."""
    return [Parameter(k, value=v) for k, v in values.items()]


def stamp(msg, ns: int) -> None:
    """Set ``msg.header.stamp`` from integer nanoseconds."""
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(ns, 1_000_000_000)


def frame_messages(image: np.ndarray, k: np.ndarray, pose: np.ndarray, ns: int,
                   frame_id: str = 'camera_optical', world: str = 'map',
                   encoding: str = 'rgb8') -> tuple[Image, CameraInfo, PoseStamped]:
    """Image, CameraInfo and PoseStamped messages of one generated frame."""
    img = Image(**image_fields(image, encoding))
    img.header.frame_id = frame_id
    stamp(img, ns)
    info = CameraInfo()
    info.header = img.header
    info.height, info.width = image.shape[:2]
    info.k = [float(v) for v in np.asarray(k, dtype=np.float64).reshape(-1)]
    pose_msg = PoseStamped()
    pose_msg.header.frame_id = world
    stamp(pose_msg, ns)
    q = matrix_to_quat(pose[:3, :3])
    p = pose_msg.pose
    p.position.x, p.position.y, p.position.z = (float(v) for v in pose[:3, 3])
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = (float(v) for v in q)
    return img, info, pose_msg


def make_node(**overrides):
    """Build a perception node with test-friendly defaults (topic poses, reliable QoS)."""
    values = dict(pose_source='topic', input_reliability='reliable', diagnostics_period=0.2,
                  min_translation=0.0, min_rotation_deg=0.0, max_interval=0.0,
                  log_throttle=0.0, tf_timeout=1.0)
    values.update(overrides)
    from mvfm_ros.ros.node import PerceptionNode

    return PerceptionNode(parameter_overrides=params(**values))


def start(node) -> Harness:
    """Configure, activate and spin the node next to a helper node."""
    from rclpy.lifecycle import TransitionCallbackReturn

    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    return Harness(node)


class Player:
    """Publishes images, camera_info and poses like a camera driver and a localiser."""

    def __init__(self, harness: Harness) -> None:
        """Create the publishers and wait until the node subscribes."""
        self.image = harness.publisher(Image, 'image')
        self.info = harness.publisher(CameraInfo, 'camera_info')
        self.pose = harness.publisher(PoseStamped, 'pose')
        assert wait_for(lambda: all(p.get_subscription_count() > 0
                                    for p in (self.image, self.info, self.pose)), 10)

    def send(self, image, k, pose, ns, *, info_first=True, pose_msg=True, **kwargs) -> Image:
        """Publish one frame (camera_info and pose before the image unless told otherwise)."""
        img, info, pose_m = frame_messages(image, k, pose, ns, **kwargs)
        if info_first:
            self.info.publish(info)
        if pose_msg:
            self.pose.publish(pose_m)
        self.image.publish(img)
        return img
