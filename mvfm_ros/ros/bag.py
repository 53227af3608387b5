"""``mvfm-bag`` (``ros2 run mvfm_ros process_bag``): run the perception pipeline over a bag.

Reads a ROS 2 bag (MCAP or sqlite3) with ``rosbags``, takes images, camera_info and poses (from
``/tf`` + ``/tf_static`` through :class:`~mvfm_ros.ros.tf_tree.TransformTree`, or from a pose
topic), runs the same :class:`~mvfm_ros.pipeline.Pipeline` as the node, and writes a bag with the
node's output topics (optionally with the inputs), readable by ``ros2 bag`` and Foxglove. The
output is written next to its final path and renamed into place only when complete.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import logging
import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from mcap.records import Chunk
from mcap.stream_reader import StreamReader
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from tqdm import tqdm

from mvfm_ros.pipeline.config import PipelineConfig
from mvfm_ros.pipeline.frame import FrameError, WindowResult
from mvfm_ros.pipeline.outputs import CAMERA_INFO, IMAGE, MAP_OUTPUT, topic_name
from mvfm_ros.pipeline.poses import PoseBuffer
from mvfm_ros.ros.assemble import frame_from_messages, nearest_in_time
from mvfm_ros.ros.conversions import (
    depth_to_metres,
    pose_to_matrix,
    stamp_to_ns,
    transform_to_matrix,
)
from mvfm_ros.ros.messages import rosbags_factory, rosbags_typestore
from mvfm_ros.ros.tf_tree import TransformTree

if TYPE_CHECKING:  # PyTorch is imported only when a bag is processed (--help stays fast)
    from mvfm_ros.pipeline.engine import Engine
    from mvfm_ros.pipeline.pipeline import Pipeline

LOG = logging.getLogger('mvfm_ros.bag')
POSE_TYPES = ('geometry_msgs/msg/PoseStamped', 'nav_msgs/msg/Odometry')
TF_TYPE = 'tf2_msgs/msg/TFMessage'


class BagError(RuntimeError):
    """The bag cannot be processed as asked (missing topic, frame, ...)."""


@dataclass
class BagOptions:
    """What to read and write."""

    image_topic: str = '/camera/image'
    camera_info_topic: str = '/camera/camera_info'
    pose_source: str = 'tf'
    pose_topic: str = '/pose'
    world_frame: str = 'map'
    output_namespace: str = '/mvfm'
    include_inputs: bool = False
    storage: str = 'mcap'
    depth_topic: str = ''
    depth_tolerance: float = 0.01
    map_period: float = 1.0
    ply: str = ''
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)


@dataclass
class BagReport:
    """What happened, for the summary line and tests."""

    images: int = 0
    results: int = 0
    skipped: Counter = field(default_factory=Counter)
    stats: dict[str, float] = field(default_factory=dict)
    map_voxels: int = 0

    def skip(self, kind: str, what: str, time_ns: int, reason: object) -> None:
        """Count a skipped message under ``kind``; the first of each kind is logged."""
        if self.skipped[kind] == 0:
            LOG.warning('skipping %s at %.3f s: [%s] %s (further ones counted)', what,
                        time_ns / 1e9, kind, reason)
        self.skipped[kind] += 1


def _connections(reader: AnyReader, topic: str, types: tuple[str, ...]) -> list[Any]:
    found = [c for c in reader.connections if c.topic == topic]
    if not found:
        available = sorted({f'{c.topic} ({c.msgtype})' for c in reader.connections})
        raise BagError(f"topic '{topic}' is not in the bag; topics: {', '.join(available)}")
    wrong = [c.msgtype for c in found if c.msgtype not in types]
    if wrong:
        raise BagError(f"topic '{topic}' has type {wrong[0]}, expected {' or '.join(types)}")
    return found


def _read_poses(reader: AnyReader, options: BagOptions, report: BagReport) -> Any:
    """Return a lookup ``(frame_id, stamp_ns) -> pose`` from TF or the pose topic."""
    gap = options.pipeline.max_pose_gap
    if options.pose_source == 'topic':
        buffer = PoseBuffer(max_gap=gap, max_age=0)
        for conn, time_ns, raw in reader.messages(
                connections=_connections(reader, options.pose_topic, POSE_TYPES)):
            msg = _decode(reader, conn, time_ns, raw, report)
            if msg is None:
                continue
            pose = msg.pose.pose if conn.msgtype.endswith('Odometry') else msg.pose
            with _skipped(report, 'a pose', time_ns):
                buffer.add(stamp_to_ns(msg.header.stamp), pose_to_matrix(pose))
        return lambda frame_id, stamp: buffer.lookup(stamp)
    tree = TransformTree(max_gap=gap)
    tf_conns = [c for c in reader.connections if c.topic in ('/tf', '/tf_static')
                and c.msgtype == TF_TYPE]
    if not tf_conns:
        raise BagError('pose_source tf, but the bag has no /tf or /tf_static; use '
                       '--pose-source topic --pose-topic TOPIC')
    for conn, time_ns, raw in reader.messages(connections=tf_conns):
        msg = _decode(reader, conn, time_ns, raw, report)
        for t in msg.transforms if msg is not None else ():
            with _skipped(report, 'a transform', time_ns):
                tree.add(t.header.frame_id, t.child_frame_id, stamp_to_ns(t.header.stamp),
                         transform_to_matrix(t.transform), static=conn.topic == '/tf_static')
    world = options.world_frame.lstrip('/')
    if world not in tree.frames:
        raise BagError(f"world frame '{world}' is not in the bag's TF tree (frames: "
                       f"{', '.join(tree.frames)}); set --world-frame")
    return lambda frame_id, stamp: tree.lookup(world, frame_id, stamp)


class OutputWriter:
    """Writes the node's outputs (:data:`~mvfm_ros.pipeline.outputs.OUTPUTS`), optionally inputs.

    The package's interfaces are registered, so the window message's definition is embedded.
    """

    def __init__(self, writer: Writer, namespace: str, world_frame: str,
                 identity: dict[str, str]) -> None:
        """Register the package's message types."""
        self.writer = writer
        self.store = rosbags_typestore()
        self.build = rosbags_factory(self.store)
        self.namespace = namespace
        self.world_frame = world_frame
        self.identity = identity
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
        """Write every output of a processed window."""
        for output, topic, camera, msg in self.build.outputs(window, self.identity,
                                                             self.world_frame):
            self._write(topic_name(self.namespace, output, camera, 1, topic), output.msgtype,
                        msg, time_ns)

    def map(self, cloud: Any, stamp_ns: int, time_ns: int) -> None:
        """Write the map as the node publishes it."""
        msg = self.build.point_cloud(self.build.header(stamp_ns, self.world_frame), cloud)
        self._write(topic_name(self.namespace, MAP_OUTPUT, '', 1), MAP_OUTPUT.msgtype, msg,
                    time_ns)


def process_bag(source: Path, output: Path, options: BagOptions,
                engine: Engine | None = None, progress: bool = True) -> BagReport:
    """Run the pipeline over ``source`` and write ``output``.

    Raises:
        BagError: missing topics, frames or transforms, or an existing output.
        FileNotFoundError: the input bag does not exist.
    """
    source, output = Path(source), Path(output)
    if not source.exists():
        raise FileNotFoundError(f"input bag '{source}' does not exist")
    if output.exists():
        raise BagError(f"output '{output}' exists; remove it or choose another path")
    report = BagReport()
    # Written inside a hidden folder and moved into place when complete; the bag keeps its
    # final name inside (rosbags names the data file after the bag folder).
    staging = output.with_name(f'.{output.name}.partial')
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    partial = staging / output.name
    storage = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}[options.storage]
    try:
        _warn_without_checksums(source)
        with _read_errors(source, report), AnyReader([source]) as reader:
            images = _connections(reader, options.image_topic, (IMAGE,))
            infos = _connections(reader, options.camera_info_topic, (CAMERA_INFO,))
            lookup = _read_poses(reader, options, report)
            from mvfm_ros.pipeline.engine import Engine  # PyTorch: only once the bag is fine
            from mvfm_ros.pipeline.pipeline import Pipeline

            if engine is None:  # loaded once the bag is known to hold what is needed
                engine, description = Engine.from_config(options.pipeline)
                LOG.info('model: %s', description)
            pipeline = Pipeline(engine, options.pipeline)
            inputs = images + infos
            if options.depth_topic:
                inputs += _connections(reader, options.depth_topic, (IMAGE,))
            if options.include_inputs:
                inputs = list(reader.connections)
            total = sum(c.msgcount for c in images)
            with Writer(partial, version=9, storage_plugin=storage) as writer:
                out = OutputWriter(writer, options.output_namespace, options.world_frame,
                                   engine.identity)
                bar = tqdm(total=total, desc='bag', unit='img', disable=not progress)
                _BagLoop(reader, options, out, pipeline, lookup, report, bar).run(inputs)
                bar.close()
        if report.results == 0:
            raise BagError(f'no outputs: {report.images} images, skipped {dict(report.skipped)} '
                           '(see the warnings above)')
        partial.rename(output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report.stats = pipeline.stats.snapshot()
    report.map_voxels = len(pipeline.map)
    if options.ply:
        from mvfm_ros.lift.voxel_map import write_ply

        write_ply(options.ply, pipeline.map_cloud())
    return report


class _BagLoop:
    """The message loop of :func:`process_bag`: inputs in bag order, outputs and maps out."""

    def __init__(self, reader: AnyReader, options: BagOptions, out: OutputWriter,
                 pipeline: Pipeline, lookup: Any, report: BagReport, bar: Any) -> None:
        """Keep what the loop needs."""
        self.reader, self.options, self.out = reader, options, out
        self.pipeline, self.lookup, self.report, self.bar = pipeline, lookup, report, bar
        self.depths = DepthPairing(options.depth_tolerance)
        self.last_map: int | None = None
        self.last_time = 0

    def run(self, inputs: list[Any]) -> None:
        """Process every message of ``inputs``; the map is written at the end too."""
        options = self.options
        latest_info = None
        for conn, time_ns, raw in self.reader.messages(connections=inputs):
            self.last_time = time_ns
            if options.include_inputs:
                self.out.copy_input(conn, time_ns, raw)
            if conn.topic == options.camera_info_topic:
                latest_info = self._decode(conn, time_ns, raw) or latest_info
            elif conn.topic == options.depth_topic:
                msg = self._decode(conn, time_ns, raw)
                if msg is not None:
                    self._run(self.depths.add_depth(msg))
            elif conn.topic == options.image_topic:
                self.bar.update(1)
                self.report.images += 1
                msg = self._decode(conn, time_ns, raw)
                if msg is None:
                    continue
                item = (msg, latest_info, time_ns)
                self._run(self.depths.add_image(item, self.report) if options.depth_topic
                          else [(item, None)])
        self._run(self.depths.flush(self.report))
        if options.depth_topic and self.last_map is not None:
            self.out.map(self.pipeline.map_cloud(), self.last_map, self.last_time)

    def _decode(self, conn: Any, time_ns: int, raw: bytes) -> Any:
        return _decode(self.reader, conn, time_ns, raw, self.report)

    def _run(self, ready: list[tuple[tuple[Any, Any, int], Any]]) -> None:
        period = self.options.map_period
        for (msg, info, time_ns), depth in ready:
            window = _process_image(msg, info, self.lookup, self.pipeline, self.report, depth)
            if window is not None:
                self.out.window(window, time_ns)
                self.report.results += len(window.views)
            stamp = stamp_to_ns(msg.header.stamp)
            if self.options.depth_topic and period > 0 and (
                    self.last_map is None or stamp - self.last_map >= period * 1e9):
                self.out.map(self.pipeline.map_cloud(), stamp, time_ns)
                self.last_map = stamp


class DepthPairing:
    """Pairs images with the depth image of their stamp, in whichever order a bag holds them.

    An image waits for its depth until the next image arrives (RGB-D drivers stamp both alike
    and record them together); then it is processed without depth and counted.
    """

    def __init__(self, tolerance_s: float) -> None:
        """Nothing waiting."""
        self.tolerance = int(tolerance_s * 1e9)
        self.depths: collections.deque = collections.deque(maxlen=30)  # (stamp, msg)
        self.waiting: list[tuple[Any, Any, int]] = []  # (image, camera_info, time)

    def _match(self, item: tuple[Any, Any, int]) -> Any:
        return nearest_in_time(self.depths, stamp_to_ns(item[0].header.stamp), self.tolerance)

    def add_depth(self, msg: Any) -> list[tuple[tuple[Any, Any, int], Any]]:
        """Store a depth image; returns the waiting images it completes."""
        self.depths.append((stamp_to_ns(msg.header.stamp), msg))
        ready = [(item, self._match(item)) for item in self.waiting]
        done = [(item, depth) for item, depth in ready if depth is not None]
        self.waiting = [item for item, depth in ready if depth is None]
        return done

    def add_image(self, item: tuple[Any, Any, int],
                  report: BagReport) -> list[tuple[tuple[Any, Any, int], Any]]:
        """Queue an image; returns it at once with its depth, and any earlier image without."""
        out = self.flush(report)
        depth = self._match(item)
        if depth is not None:
            return out + [(item, depth)]
        self.waiting.append(item)
        return out

    def flush(self, report: BagReport) -> list[tuple[tuple[Any, Any, int], Any]]:
        """Give up on the waiting images: processed without depth, each counted."""
        out = []
        for item in self.waiting:
            report.skipped['depth_missing'] += 1
            LOG.warning('[depth_missing] image at %.3f s has no depth within the tolerance; '
                        'processed without depth', stamp_to_ns(item[0].header.stamp) / 1e9)
            out.append((item, None))
        self.waiting = []
        return out


@contextlib.contextmanager
def _read_errors(source: Path, report: BagReport) -> Iterator[None]:
    """Turn a reader failure (truncated or corrupt container) into a clear BagError."""
    try:
        yield
    except (BagError, FrameError, KeyboardInterrupt):
        raise
    except Exception as err:  # rosbags raises many types for a damaged file
        raise BagError(f"cannot read bag '{source}' after {report.images} images: "
                       f'{type(err).__name__}: {err} (truncated or corrupted?)') from err


def _warn_without_checksums(source: Path) -> None:
    """Say so when an MCAP bag carries no checksums (rosbags verifies chunk CRCs it has)."""
    files = [source] if source.is_file() else sorted(source.glob('*.mcap'))
    for path in files:
        if path.suffix != '.mcap':
            continue
        with open(path, 'rb') as handle:
            try:
                records = StreamReader(handle, skip_magic=False).records
                crcs = [r.uncompressed_crc for r in records if isinstance(r, Chunk)]
            except Exception:  # a damaged file: the reader says what is wrong
                return
        if not any(crcs):
            LOG.warning("bag '%s' has no chunk checksums: a corrupted payload is only caught "
                        'if it fails to decode or is refused as bad input', path.name)


@contextlib.contextmanager
def _skipped(report: BagReport, what: str, time_ns: int) -> Iterator[None]:
    """Skip and count a message the checks refuse (bad image, NaN pose, ...)."""
    try:
        yield
    except FrameError as err:
        report.skip(err.kind, what, time_ns, err)


def _decode(reader: AnyReader, conn: Any, time_ns: int, raw: bytes, report: BagReport) -> Any:
    """Deserialize one message; a payload that does not decode is skipped and counted."""
    try:
        return reader.deserialize(raw, conn.msgtype)
    except Exception as err:  # the CDR decoder raises various errors for garbage
        report.skip('undecodable_message', f"a message on '{conn.topic}'", time_ns,
                    f'does not decode as {conn.msgtype}: {err}')
        return None


def _process_image(msg: Any, info: Any, lookup: Any, pipeline: Pipeline,
                   report: BagReport, depth: Any = None) -> WindowResult | None:
    """Assemble a frame as the node does, pose from the bag, and run the pipeline on it."""
    stamp = stamp_to_ns(msg.header.stamp)
    with _skipped(report, 'an image', stamp):
        frame = frame_from_messages('camera', msg, info)
        if depth is not None:
            try:
                frame.depth = depth_to_metres(depth, frame.image.shape[:2])
            except FrameError as err:
                report.skip(err.kind, 'a depth image', stamp, err)
        try:
            frame.cam_to_world = lookup(msg.header.frame_id, stamp)
        except FrameError:
            raise
        except LookupError as err:  # a frame missing from the TF tree: nothing will fit
            raise BagError(str(err)) from err
        return pipeline.add(frame)
    return None


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line interface."""
    parser = argparse.ArgumentParser(prog='mvfm-bag', description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('input', help='input bag (folder with metadata.yaml, MCAP or sqlite3)')
    parser.add_argument('output', help='output bag folder (must not exist)')
    defaults = BagOptions()
    parser.add_argument('--image-topic', default=defaults.image_topic,
                        help='sensor_msgs/Image topic of the camera')
    parser.add_argument('--camera-info-topic', default=defaults.camera_info_topic,
                        help='sensor_msgs/CameraInfo topic of the camera')
    parser.add_argument('--pose-source', choices=('tf', 'topic'), default=defaults.pose_source,
                        help='tf: /tf + /tf_static at each image stamp; topic: --pose-topic')
    parser.add_argument('--pose-topic', default=defaults.pose_topic,
                        help='PoseStamped or Odometry of the camera optical frame')
    parser.add_argument('--world-frame', default=defaults.world_frame,
                        help='fixed frame of the poses and of the window messages')
    parser.add_argument('--output-namespace', default=defaults.output_namespace,
                        help='prefix of the output topics')
    parser.add_argument('--include-inputs', action='store_true',
                        help='copy every input topic to the output bag')
    parser.add_argument('--storage', choices=('mcap', 'sqlite3'), default=defaults.storage,
                        help='storage format of the output bag')
    parser.add_argument('--depth-topic', default=defaults.depth_topic,
                        help='registered depth (16UC1 mm or 32FC1 m) of the camera: builds the '
                        'map (mvfm/map) and lifts operators geometrically; empty: none')
    parser.add_argument('--depth-tolerance', type=float, default=defaults.depth_tolerance,
                        help='seconds between an image stamp and its depth stamp')
    parser.add_argument('--map-period', type=float, default=defaults.map_period,
                        help='seconds of image stamps between map messages (0: only the last)')
    parser.add_argument('--ply', default=defaults.ply,
                        help='also write the final map as a PLY file at this path')
    parser.add_argument('--config', help='node parameter file (perception.yaml): pipeline '
                        'settings are read from it')
    parser.add_argument('--param', action='append', default=[], metavar='NAME=VALUE',
                        help='pipeline setting, e.g. --param window_size=6 (repeatable)')
    return parser


def options_from_args(args: argparse.Namespace) -> BagOptions:
    """Turn parsed arguments into :class:`BagOptions`."""
    values: dict[str, Any] = {}
    if args.config:
        data = yaml.safe_load(Path(args.config).read_text()) or {}
        for node_params in data.values():
            values.update((node_params or {}).get('ros__parameters', {}))
    known = set(PipelineConfig.defaults())  # node-only keys of a --config file are ignored
    for item in args.param:
        name, sep, value = item.partition('=')
        if not sep:
            raise SystemExit(f"mvfm-bag: --param needs NAME=VALUE, got '{item}'")
        if name not in known:
            raise SystemExit(f"mvfm-bag: unknown pipeline setting '{name}'; known: "
                             f'{sorted(known)}')
        values[name] = yaml.safe_load(value)
    return BagOptions(image_topic=args.image_topic, camera_info_topic=args.camera_info_topic,
                      pose_source=args.pose_source, pose_topic=args.pose_topic,
                      world_frame=args.world_frame, output_namespace=args.output_namespace,
                      include_inputs=args.include_inputs, storage=args.storage,
                      depth_topic=args.depth_topic, depth_tolerance=args.depth_tolerance,
                      map_period=args.map_period, ply=args.ply,
                      pipeline=PipelineConfig.from_dict(values))


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    args = build_parser().parse_args(argv)
    try:
        options = options_from_args(args)
        report = process_bag(Path(args.input), Path(args.output), options)
    except (BagError, FileNotFoundError, ValueError, RuntimeError) as err:
        print(f'mvfm-bag: error: {err}', file=sys.stderr)
        return 2
    stats = report.stats
    print(f'{report.images} images, {int(stats.get("keyframes", 0))} keyframes, '
          f'{report.results} outputs written to {args.output}; skipped: '
          f'{dict(report.skipped) or "none"}; model time per window p50 '
          f'{stats.get("inference_p50_s", float("nan")) * 1000:.1f} ms'
          + (f'; map: {report.map_voxels} voxels' if args.depth_topic else ''))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
