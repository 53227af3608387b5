"""The node's output publishers: one per row of the output table, per camera in a rig.

Before each window the pipeline asks :meth:`Publishers.wanted` which outputs have a
subscriber; the engine computes, and the output edge renders, only those (as image_proc skips
work nobody subscribed to). Messages carry the source image's header.
"""

from __future__ import annotations

from typing import Any

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from mvfm_ros.messages.factory import MessageFactory
from mvfm_ros.pipeline.frame import WindowResult
from mvfm_ros.pipeline.outputs import MAP_OUTPUT, OUTPUTS, Wanted, topic_name
from mvfm_ros.pipeline.settings import Settings


def output_qos(settings: Settings) -> QoSProfile:
    """QoS of the output publishers (``output_reliability``, ``output_depth``)."""
    reliability = (ReliabilityPolicy.RELIABLE if settings.output_reliability == 'reliable'
                   else ReliabilityPolicy.BEST_EFFORT)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=settings.output_depth,
                      reliability=reliability)


class Publishers:
    """Lifecycle publishers of every output topic.

    Args:
        node: the lifecycle node.
        settings: namespace, cameras, QoS.
        operators: the operators' names (one ``ops/<name>`` topic each).
        factory: the rclpy message factory.
    """

    def __init__(self, node: Any, settings: Settings, operators: list[str],
                 factory: MessageFactory) -> None:
        """Create the publishers."""
        self.node = node
        self.settings = settings
        self.factory = factory
        self.cameras = len(settings.cameras)
        qos = output_qos(settings)
        self.pubs: dict[str, Any] = {}  # full topic -> publisher
        self.by_name: dict[str, list[Any]] = {}  # topic under the namespace -> publishers
        for output in OUTPUTS:
            kind = factory.types[output.msgtype]
            for camera in settings.cameras if output.per_view else ['']:
                for name in output.topics(operators):
                    full = self.full(output, camera, name)
                    self.pubs[full] = node.create_lifecycle_publisher(kind, full, qos)
                    self.by_name.setdefault(name, []).append(self.pubs[full])

    def full(self, output: Any, camera: str, name: str | None = None) -> str:
        """Full topic of an output (namespaced per camera in a rig)."""
        return topic_name(self.settings.output_namespace, output, camera, self.cameras, name)

    def wanted(self) -> Wanted:
        """Return the outputs with at least one subscriber (any camera of a rig)."""
        return Wanted(frozenset(name for name, pubs in self.by_name.items()
                                if any(p.get_subscription_count() for p in pubs)))

    def publish(self, window: WindowResult, identity: dict[str, str]) -> None:
        """Publish the outputs of a window that were wanted when it was computed (worker)."""
        for output, name, camera, msg in self.factory.outputs(
                window, identity, self.settings.world_frame, window.wanted):
            pub = self.pubs.get(self.full(output, camera, name))
            if pub is not None:
                pub.publish(msg)

    def publish_map(self, cloud: Any, stamp_ns: int) -> None:
        """Publish the world-frame map."""
        pub = self.pubs[self.full(MAP_OUTPUT, '')]
        if pub.get_subscription_count():
            header = self.factory.header(stamp_ns, self.settings.world_frame)
            pub.publish(self.factory.point_cloud(header, cloud))

    def destroy(self) -> None:
        """Destroy every publisher."""
        for pub in self.pubs.values():
            self.node.destroy_lifecycle_publisher(pub)
        self.pubs, self.by_name = {}, {}


def rclpy_factory() -> MessageFactory:
    """Return a factory over the rclpy message classes.

    Raises:
        RuntimeError: the package's interfaces (``mvfm_ros.msg``) are not built, with the step
            that builds them.
    """
    from builtin_interfaces.msg import Time
    from geometry_msgs.msg import Point, Pose, Quaternion
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField, RegionOfInterest
    from std_msgs.msg import Header

    try:
        from mvfm_ros.msg import FeatureView, FeatureWindow
    except ImportError as err:
        raise RuntimeError(
            f'the mvfm_ros interfaces (mvfm_ros.msg) are not built ({err}): build the package '
            'with colcon (README: Installing into a ROS 2 workspace) or run `make interfaces` '
            'in a development checkout') from err

    classes = (Time, Header, Point, Pose, Quaternion, CameraInfo, Image, RegionOfInterest,
               PointCloud2, PointField, FeatureView, FeatureWindow)
    types = {f'{c.__module__.split(".")[0]}/msg/{c.__name__}': c for c in classes}
    return MessageFactory(types, payload_as_bytes=True)
