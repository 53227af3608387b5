"""The perception pipeline shared by the ROS node, the bag processor and the demo.

``accept`` is cheap (checks and keyframe selection) and runs where frames arrive; ``process``
runs the model on the sliding window and may take long, so the node calls it from a worker
(:class:`mvfm_ros.pipeline.worker.AsyncPipeline`) and the bag processor calls it inline.
"""

from __future__ import annotations

import collections
import logging
import statistics
import threading
import time

import numpy as np
import torch

from mvfm_ros.geometry.camera import scale_intrinsics
from mvfm_ros.geometry.pose import check_poses
from mvfm_ros.lift.voxel_map import VoxelMap, depth_points
from mvfm_ros.pipeline.config import PipelineConfig
from mvfm_ros.pipeline.engine import Engine
from mvfm_ros.pipeline.frame import Frame, FrameError, ViewResult, WindowResult
from mvfm_ros.pipeline.keyframes import KeyframeSelector

LOG = logging.getLogger('mvfm_ros.pipeline')


def percentiles(values: list[float]) -> dict[str, float]:
    """Median, 90th percentile (nearest rank) and maximum; empty for no values."""
    if not values:
        return {}
    values = sorted(values)
    return {'p50': statistics.median(values),
            'p90': values[min(len(values) - 1, int(0.9 * len(values)))], 'max': values[-1]}


# Counters whose recent rate is reported (events per second over the last RECENT_S seconds).
POSE_FAILURES = ('pose_lookup_failed', 'pose_extrapolation', 'pose_gap')
RECENT = ('frames_received', 'windows_processed', *POSE_FAILURES)
RECENT_S = 10.0
# A stamp this far behind its camera's previous one is a time jump (bag loop, clock reset), not
# a reordering: the pipeline starts afresh instead of refusing every later frame.
TIME_JUMP_NS = 3_000_000_000


class PipelineStats:
    """Thread-safe counters and recent latencies, for diagnostics and summaries."""

    def __init__(self, history: int = 500) -> None:
        """Start at zero."""
        self._lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()
        self._recent: dict[str, collections.deque[float]] = {
            key: collections.deque(maxlen=4096) for key in RECENT}
        self.latencies: collections.deque[float] = collections.deque(maxlen=history)
        self.inference: collections.deque[float] = collections.deque(maxlen=history)
        self.overhead: collections.deque[float] = collections.deque(maxlen=history)
        self.pose_delay: collections.deque[float] = collections.deque(maxlen=history)
        self.map_update: collections.deque[float] = collections.deque(maxlen=history)
        self.started = time.monotonic()

    def count(self, key: str, amount: int = 1) -> None:
        """Add to a counter."""
        with self._lock:
            self.counts[key] += amount
            if key in self._recent:
                self._recent[key].extend([time.monotonic()] * amount)

    def record(self, latency: float, inference: float) -> None:
        """Remember one window's latency (arrival to results) and model time."""
        with self._lock:
            self.latencies.append(latency)
            self.inference.append(inference)

    def record_overhead(self, seconds: float) -> None:
        """Remember one result's node overhead: conversion, queueing and publishing."""
        with self._lock:
            self.overhead.append(seconds)

    def record_map_update(self, seconds: float) -> None:
        """Remember how long one keyframe's map update took."""
        with self._lock:
            self.map_update.append(seconds)

    def record_pose_delay(self, seconds: float) -> None:
        """Remember how long after its stamp a pose arrived (clock now minus stamp)."""
        with self._lock:
            self.pose_delay.append(seconds)

    def snapshot(self) -> dict[str, float]:
        """Counters, rates and latency percentiles as a flat dict."""
        with self._lock:
            out: dict[str, float] = dict(self.counts)
            latencies = list(self.latencies)
            inference = list(self.inference)
            overhead = list(self.overhead)
            pose_delay = list(self.pose_delay)
            map_update = list(self.map_update)
        now = time.monotonic()
        elapsed = max(now - self.started, 1e-9)
        out['input_rate_hz'] = out.get('frames_received', 0) / elapsed
        out['output_rate_hz'] = out.get('windows_processed', 0) / elapsed
        # Recent rates: a gap in the input shows at once, not diluted by the time since start.
        span = min(RECENT_S, elapsed)
        with self._lock:
            recent = {k: sum(1 for t in q if now - t <= span) for k, q in self._recent.items()}
        out['input_rate_recent_hz'] = recent['frames_received'] / span
        out['output_rate_recent_hz'] = recent['windows_processed'] / span
        failures = sum(recent[k] for k in POSE_FAILURES)
        out['pose_failure_rate_recent'] = failures / max(recent['frames_received'], 1)
        for name, values in (('latency', latencies), ('inference', inference),
                             ('overhead', overhead), ('pose_delay', pose_delay),
                             ('map_update', map_update)):
            out.update({f'{name}_{k}_s': v for k, v in percentiles(values).items()})
        if overhead and inference:
            out['overhead_fraction'] = statistics.median(overhead) / statistics.median(inference)
        return out


class Pipeline:
    """Frames in, per-view results of each new keyframe's window out.

    Args:
        engine: the inference engine.
        config: window and keyframe settings.
    """

    def __init__(self, engine: Engine, config: PipelineConfig) -> None:
        """Start with an empty window."""
        self.engine = engine
        self.config = config
        self.selector = KeyframeSelector(config.min_translation, config.min_rotation_deg,
                                         config.max_interval)
        self.window: collections.deque[Frame] = collections.deque(maxlen=config.window_size)
        self.stats = PipelineStats()
        # Called with (kind, message) for events worth a log line that refuse nothing.
        self.on_event = lambda kind, message: LOG.warning('[%s] %s', kind, message)
        self._last_stamp: dict[str, int] = {}
        self._next_uid = 0
        # The world-frame map of keyframes with depth; read by other threads (publishing).
        self.map = VoxelMap(config.map_voxel_size, config.map_max_voxels, config.map_features)
        self.map_lock = threading.Lock()

    # -------------------------------------------------------------------------------- checks
    def check(self, frame: Frame) -> None:
        """Raise :class:`FrameError` for a frame that must not reach the model."""
        image = frame.image
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise FrameError('bad_image', f'image must be (H, W, 3) uint8 RGB, got '
                             f'{image.shape} {image.dtype}')
        k = np.asarray(frame.intrinsics, dtype=np.float64)
        if k.shape != (3, 3) or not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
            raise FrameError('bad_camera_info', f'camera {frame.camera!r}: intrinsics are not a '
                             f'valid K (fx, fy > 0, finite): {k.tolist()}')
        try:
            check_poses(torch.as_tensor(np.asarray(frame.cam_to_world, dtype=np.float64)))
        except ValueError as err:
            raise FrameError('bad_pose', f'camera {frame.camera!r}: {err}') from err
        last = self._last_stamp.get(frame.camera)
        if last is not None and frame.stamp_ns <= last:
            kind = 'duplicate_stamp' if frame.stamp_ns == last else 'out_of_order_stamp'
            raise FrameError(kind, f'camera {frame.camera!r}: stamp {frame.stamp_ns / 1e9:.6f} s '
                             f'is not after the previous frame ({last / 1e9:.6f} s)')

    def accept(self, frame: Frame) -> bool:
        """Check a frame and decide whether it is a keyframe (cheap; never runs the model).

        Raises:
            FrameError: the frame is invalid (counted under its kind).
        """
        self.stats.count('frames_received')
        last = self._last_stamp.get(frame.camera)
        if last is not None and last - frame.stamp_ns > TIME_JUMP_NS:
            self.reset()
            self.stats.count('time_jump')
            self.on_event('time_jump', f'camera {frame.camera!r}: stamp jumped back '
                          f'{(last - frame.stamp_ns) / 1e9:.1f} s (bag loop or clock reset): '
                          'window and keyframe history cleared')
        try:
            self.check(frame)
        except FrameError as err:
            self.stats.count(err.kind)
            raise
        self._last_stamp[frame.camera] = frame.stamp_ns
        if not self.selector.is_keyframe(frame.camera, frame.stamp_ns, frame.cam_to_world):
            self.stats.count('frames_skipped')
            return False
        frame.uid = self._next_uid
        self._next_uid += 1
        self.stats.count('keyframes')
        return True

    def process(self, frame: Frame) -> WindowResult:
        """Add an accepted keyframe to the window and run the model on the window.

        Returns the window with full results for this frame. The first keyframe makes a
        one-view window: a planner gets outputs from the first keyframe on.
        """
        self.window.append(frame)
        start = time.monotonic()
        window = self.engine.run(list(self.window), outputs=[len(self.window) - 1])
        done = time.monotonic()
        for result in window.views:
            result.latency = done - result.frame.received
            result.inference = done - start
            self.stats.record(result.latency, result.inference)
        window.window_id = self.stats.counts['windows_processed']
        self.stats.count('windows_processed')
        for kind, message in self.engine.problems:
            self.stats.count(kind)
            self.on_event(kind, message)
        for result in window.views:
            if result.frame.depth is not None:
                self.update_map(result)
        return window

    def map_label(self, result: ViewResult) -> np.ndarray | None:
        """Return the ids that label the map (``map_label``, else the first label output)."""
        names = [self.config.map_label] if self.config.map_label else list(result.ops)
        for name in names:
            value = result.ops.get(name)
            if value is not None and value.ndim == 2:
                return value
        return None

    def update_map(self, result: ViewResult) -> None:
        """Fuse one keyframe with depth into the map: colour, lifted ids, projected features."""
        start = time.perf_counter()
        frame = result.frame
        depth = frame.depth
        k = scale_intrinsics(torch.as_tensor(frame.intrinsics, dtype=torch.float64),
                             depth.shape[1] / frame.image.shape[1],
                             depth.shape[0] / frame.image.shape[0]).numpy()
        pose = np.asarray(frame.cam_to_world)
        points, pixels = depth_points(depth, k, pose, self.map.voxel_size)
        rows, cols = pixels[:, 0], pixels[:, 1]

        def at(array: np.ndarray) -> np.ndarray:  # nearest sample of an image of any size
            r = np.minimum((rows + 0.5) * array.shape[0] / depth.shape[0], array.shape[0] - 1)
            c = np.minimum((cols + 0.5) * array.shape[1] / depth.shape[1], array.shape[1] - 1)
            return array[r.astype(np.int64), c.astype(np.int64)]

        labels = self.map_label(result)
        with self.map_lock:
            # Project the feature grid once (h x w patches), then sample it per point.
            features = self.map.project(result.features) if self.map.feature_dim else None
            self.map.integrate(points, at(frame.image), None if labels is None else at(labels),
                               None if features is None else at(features), pose[:3, 3])
        self.stats.record_map_update(time.perf_counter() - start)

    def map_cloud(self) -> np.ndarray:
        """Return the map as a structured point array (thread-safe)."""
        with self.map_lock:
            return self.map.cloud()

    def reset_map(self) -> int:
        """Empty the map (lifted ids keep counting); returns the number of voxels removed."""
        with self.map_lock:
            removed = len(self.map)
            self.map.clear()
        return removed

    def add(self, frame: Frame) -> WindowResult | None:
        """Accept and process in one call (offline use); None for a frame that is no keyframe."""
        return self.process(frame) if self.accept(frame) else None

    def set_prompt(self, point_world: np.ndarray | None) -> None:
        """Select the object at a world point in every view (None clears the prompt)."""
        if point_world is not None:
            point_world = np.asarray(point_world, dtype=np.float64).reshape(3)
            if not np.all(np.isfinite(point_world)):
                raise FrameError('bad_prompt', 'prompt point has NaN/inf coordinates')
        self.engine.prompt = point_world

    def reset(self) -> None:
        """Empty the window and forget keyframe history (e.g. after deactivation)."""
        self.window.clear()
        self.selector.reset()
        self._last_stamp.clear()
        self.engine.lifting.reset()
