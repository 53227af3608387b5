"""Run the perception pipeline over a bag: the node's frame assembly and pipeline, offline.

Reads a ROS 2 bag (MCAP or sqlite3) with ``rosbags`` in recorded order, feeds images,
camera_info, depth and poses (``/tf`` + ``/tf_static`` into a transform tree, or a pose topic)
to the same :class:`~mvfm_ros.messages.assemble.FrameAssembler` and
:class:`~mvfm_ros.pipeline.Pipeline` as the node, with the bag's recorded time as the clock,
and writes a bag with the node's output topics (optionally the inputs), readable by
``ros2 bag`` and Foxglove. Nothing is left half-written: the bag (and the PLY map) are written
in a hidden staging folder and moved into place when complete; an existing file is never
overwritten unless asked.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from tqdm import tqdm

from mvfm_ros.messages.assemble import FrameAssembler
from mvfm_ros.messages.bag_checks import (
    BagError,
    BagReport,
    ProcessingError,
    absolute,
    check_paths,
    connections,
    read_errors,
    warn_without_checksums,
)
from mvfm_ros.messages.bag_writer import OutputWriter
from mvfm_ros.messages.conversions import stamp_to_ns, transform_to_matrix
from mvfm_ros.messages.poses import TreePoseSource
from mvfm_ros.messages.tf_tree import TransformTree
from mvfm_ros.pipeline.frame import FrameError, WindowResult
from mvfm_ros.pipeline.outputs import CAMERA_INFO, IMAGE, Wanted
from mvfm_ros.pipeline.settings import Settings

if TYPE_CHECKING:  # PyTorch is imported only when a bag is processed (--help stays fast)
    from mvfm_ros.pipeline.engine import Engine
    from mvfm_ros.pipeline.pipeline import Pipeline

LOG = logging.getLogger('mvfm_ros.bag')
POSE_TYPES = ('geometry_msgs/msg/PoseStamped', 'nav_msgs/msg/Odometry')
TF_TYPE = 'tf2_msgs/msg/TFMessage'


@dataclass
class BagOptions:
    """What to read and write; the pipeline and wiring settings are the node's.

    ``image_topic``, ``camera_info_topic`` and ``depth_topic`` may hold ``{camera}``, filled
    with each name of ``settings.cameras``; an empty ``depth_topic`` reads no depth.
    """

    settings: Settings = field(default_factory=Settings)
    image_topic: str = '/{camera}/image'
    camera_info_topic: str = '/{camera}/camera_info'
    depth_topic: str = ''
    include_inputs: bool = False
    storage: str = 'mcap'
    ply: str = ''
    overwrite: bool = False
    outputs: list[str] | None = None  # output topics to write (None: all)

    def topics(self, camera: str) -> dict[str, str]:
        """Input kind -> topic of one camera (the pose topic as the node names it)."""
        rig = len(self.settings.cameras) > 1
        pose = self.settings.pose_topic
        found = {'image': self.image_topic, 'camera_info': self.camera_info_topic,
                 'pose': f'{camera}/{pose}' if rig and not pose.startswith('/') else pose}
        if self.depth_topic:
            found['depth'] = self.depth_topic
        return {kind: absolute(topic.format(camera=camera)) for kind, topic in found.items()}


def process_bag(source: Path, output: Path, options: BagOptions,
                engine: Engine | None = None, progress: bool = True) -> BagReport:
    """Run the pipeline over ``source`` and write ``output`` (and ``options.ply``).

    Raises:
        BagError: missing topics, nothing to output, or an output that exists.
        FileNotFoundError: the input bag does not exist.
    """
    source, output = Path(source), Path(output)
    check_paths(source, output, options)
    report = BagReport()
    # Written inside a hidden folder and moved into place when complete; the bag keeps its
    # final name inside (rosbags names the data file after the bag folder).
    staging = output.with_name(f'.{output.name}.partial')
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    partial = staging / output.name
    storage = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}[options.storage]
    try:
        warn_without_checksums(source)
        with read_errors(source, report), AnyReader([source]) as reader:
            loop = _BagLoop(reader, options, report)
            from mvfm_ros.pipeline.engine import Engine  # PyTorch: only once the bag is fine
            from mvfm_ros.pipeline.pipeline import Pipeline

            if engine is None:  # loaded once the bag is known to hold what is needed
                engine, description = Engine.from_settings(options.settings)
                LOG.info('model: %s', description)
            pipeline = Pipeline(engine, loop.settings, loop.wanted.__call__)
            with Writer(partial, version=9, storage_plugin=storage) as writer:
                out = OutputWriter(writer, absolute(options.settings.output_namespace),
                                   len(options.settings.cameras), options.settings.world_frame,
                                   engine.identity, loop.wanted())
                loop.run(pipeline, out, progress)
        loop.explain_if_empty()
        if options.ply:
            from mvfm_ros.lift.voxel_map import write_ply

            write_ply(str(staging / 'map.ply'), pipeline.map_cloud())
        partial.rename(output)
        if options.ply:
            shutil.move(staging / 'map.ply', options.ply)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report.stats = pipeline.stats.snapshot()
    report.map_voxels = len(pipeline.map)
    return report


class _BagLoop:
    """Messages in recorded order through the frame assembly and the pipeline."""

    def __init__(self, reader: AnyReader, options: BagOptions, report: BagReport) -> None:
        """Find every input topic (a missing one is a :class:`BagError`)."""
        self.reader, self.options, self.report = reader, options, report
        self.settings = options.settings.replace(use_depth=bool(options.depth_topic))
        self.route: dict[str, tuple[str, str]] = {}  # topic -> (camera, kind)
        self.inputs: list[Any] = []
        wanted = {'image': (IMAGE,), 'camera_info': (CAMERA_INFO,), 'depth': (IMAGE,),
                  'pose': POSE_TYPES}
        for camera in self.settings.cameras:
            for kind, topic in options.topics(camera).items():
                if kind == 'pose' and self.settings.pose_source != 'topic':
                    continue
                self.inputs += connections(reader, topic, wanted[kind])
                self.route[topic] = (camera, kind)
        self.tree = None
        if self.settings.pose_source == 'tf':
            tf = [c for c in reader.connections if c.topic in ('/tf', '/tf_static')
                  and c.msgtype == TF_TYPE]
            if not tf:
                raise BagError('pose_source tf, but the bag has no /tf or /tf_static; use '
                               '--pose-source topic --pose-topic TOPIC')
            self.inputs += tf
            self.tree = TransformTree()
        self.input_ids = {c.id for c in self.inputs}
        self.wanted = Wanted.everything if options.outputs is None else (
            lambda: Wanted(frozenset(options.outputs)))
        self.log_time: dict[tuple[str, int], int] = {}  # (camera, stamp) -> recorded time
        self.last_map: int | None = None

    def problem(self, kind: str, message: str, lost: bool) -> None:
        """Count a problem of the frame assembly as the node counts it; log the first one."""
        if lost:
            self.pipeline.stats.count('frames_received')
        self.pipeline.stats.count(kind)
        self.report.skip(kind, 'an input', self.now, message)

    def run(self, pipeline: Pipeline, out: OutputWriter, progress: bool) -> None:
        """Process every message; the map is written at the end too."""
        self.pipeline, self.out, self.now = pipeline, out, 0
        source = TreePoseSource(self.tree, self.settings.world_frame) if self.tree else None
        assembler = FrameAssembler(self.settings, self.problem, source)
        connections = list(self.reader.connections) if self.options.include_inputs \
            else self.inputs
        images = sum(c.msgcount for c in self.inputs if self.route.get(c.topic, ('', ''))[1]
                     == 'image')
        bar = tqdm(total=images, desc='bag', unit='img', disable=not progress)
        for conn, time_ns, raw in self.reader.messages(connections=connections):
            self.now = time_ns
            if self.options.include_inputs:
                out.copy_input(conn, time_ns, raw)
            if conn.id not in self.input_ids:
                continue
            msg = self._decode(conn, time_ns, raw)
            if msg is None:
                continue
            if conn.topic in ('/tf', '/tf_static'):
                self._add_transforms(msg, conn.topic == '/tf_static', time_ns)
            else:
                camera, kind = self.route[conn.topic]
                if kind == 'image':
                    bar.update(1)
                    self.report.images += 1
                    self.log_time[(camera, stamp_to_ns(msg.header.stamp))] = time_ns
                    assembler.image(camera, msg, time_ns)
                elif kind == 'camera_info':
                    assembler.camera_info(camera, msg)
                elif kind == 'depth':
                    assembler.depth(camera, msg)
                else:
                    assembler.pose(camera, msg, time_ns)
            for frame in assembler.poll(time_ns):
                self._process(frame)
        for frame in assembler.flush():
            self._process(frame)
        bar.close()
        if self.options.depth_topic and self.last_map is not None:
            out.map(pipeline.map_cloud(), self.last_map, self.now)

    def _add_transforms(self, msg: Any, static: bool, time_ns: int) -> None:
        for t in msg.transforms:
            try:
                self.tree.add(t.header.frame_id, t.child_frame_id, stamp_to_ns(t.header.stamp),
                              transform_to_matrix(t.transform), static=static)
            except FrameError as err:
                self.report.skip(err.kind, 'a transform', time_ns, err)

    def _process(self, frame: Any) -> None:
        """Run the pipeline on an assembled frame; write its outputs and the map when due."""
        written = self.log_time.pop((frame.camera, frame.stamp_ns), self.now)
        try:
            window: WindowResult | None = self.pipeline.add(frame)
        except FrameError as err:
            self.report.skip(err.kind, 'an image', frame.stamp_ns, err)
            return
        except Exception as err:  # a model or operator failure: say where, not "bad bag"
            raise ProcessingError(f'processing the image of camera {frame.camera!r} at '
                                  f'{frame.stamp_ns / 1e9:.3f} s failed: {err!r}') from err
        if window is not None:
            self.out.window(window, written)
            self.report.results += len(window.views)
        period = self.settings.map_period
        if self.options.depth_topic and period > 0 and (
                self.last_map is None or frame.stamp_ns - self.last_map >= period * 1e9):
            self.out.map(self.pipeline.map_cloud(), frame.stamp_ns, written)
            self.last_map = frame.stamp_ns

    def _decode(self, conn: Any, time_ns: int, raw: bytes) -> Any:
        """Deserialize one message; a payload that does not decode is skipped and counted."""
        try:
            return self.reader.deserialize(raw, conn.msgtype)
        except Exception as err:  # the CDR decoder raises various errors for garbage
            self.report.skip('undecodable_message', f"a message on '{conn.topic}'", time_ns,
                             f'does not decode as {conn.msgtype}: {err}')
            return None

    def explain_if_empty(self) -> None:
        """Raise a :class:`BagError` saying why, when the bag gave no output at all."""
        if self.report.results:
            return
        if not self.report.images:
            topics = sorted(t for t, (_, kind) in self.route.items() if kind == 'image')
            raise BagError(f'no outputs: the bag has no message on the image topic(s) {topics}')
        why = dict(self.report.skipped)
        hint = ''
        world = self.settings.world_frame.lstrip('/')
        if self.tree is not None and world not in self.tree.frames:
            hint = (f"; world frame '{world}' is not in the bag's TF tree (frames: "
                    f"{', '.join(self.tree.frames) or 'none'}): set --world-frame")
        raise BagError(f'no outputs: {self.report.images} images, problems {why}{hint} (see '
                       'the warnings above)')


