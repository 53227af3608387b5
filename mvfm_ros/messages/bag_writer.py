"""Writing the node's outputs into a bag, with the package's message definitions embedded."""

from __future__ import annotations

from typing import Any

from rosbags.rosbag2 import Writer

from mvfm_ros.messages.factory import rosbags_factory, rosbags_typestore
from mvfm_ros.pipeline.frame import WindowResult
from mvfm_ros.pipeline.outputs import MAP_OUTPUT, Wanted, topic_name


class OutputWriter:
    """Writes the node's outputs (:data:`~mvfm_ros.pipeline.outputs.OUTPUTS`), optionally inputs.

    Args:
        writer: an open rosbags writer.
        namespace: output namespace (absolute, ``/mvfm``).
        cameras: how many cameras (a rig's per-view outputs are namespaced per camera).
        world_frame: frame of the window and map messages.
        identity: the model's identity fields of the window message.
        wanted: the output topics to write (default: all).
    """

    def __init__(self, writer: Writer, namespace: str, cameras: int, world_frame: str,
                 identity: dict[str, str], wanted: Wanted | None = None) -> None:
        """Register the package's message types."""
        self.writer = writer
        self.store = rosbags_typestore()
        self.build = rosbags_factory(self.store)
        self.namespace = namespace
        self.cameras = cameras
        self.world_frame = world_frame
        self.identity = identity
        self.wanted = wanted or Wanted.everything()
        self.connections: dict[str, Any] = {}
        self.inputs: dict[int, Any] = {}

    def _write(self, topic: str, msgtype: str, msg: Any, time_ns: int) -> None:
        if topic not in self.connections:
            self.connections[topic] = self.writer.add_connection(topic, msgtype,
                                                                 typestore=self.store)
        self.writer.write(self.connections[topic], time_ns,
                          self.store.serialize_cdr(msg, msgtype))

    def copy_input(self, conn: Any, time_ns: int, raw: bytes) -> None:
        """Copy an input message unchanged."""
        if conn.id not in self.inputs:
            self.inputs[conn.id] = self.writer.add_connection(
                conn.topic, conn.msgtype, msgdef=conn.msgdef.data, rihs01=conn.digest)
        self.writer.write(self.inputs[conn.id], time_ns, raw)

    def window(self, window: WindowResult, time_ns: int) -> None:
        """Write every wanted output of a processed window."""
        for output, topic, camera, msg in self.build.outputs(window, self.identity,
                                                             self.world_frame, window.wanted):
            self._write(topic_name(self.namespace, output, camera, self.cameras, topic),
                        output.msgtype, msg, time_ns)

    def map(self, cloud: Any, stamp_ns: int, time_ns: int) -> None:
        """Write the map as the node publishes it."""
        if MAP_OUTPUT.topic not in self.wanted:
            return
        msg = self.build.point_cloud(self.build.header(stamp_ns, self.world_frame), cloud)
        self._write(topic_name(self.namespace, MAP_OUTPUT, '', 1), MAP_OUTPUT.msgtype, msg,
                    time_ns)
