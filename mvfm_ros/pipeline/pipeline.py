"""The perception pipeline shared by the ROS node, the bag processor and the demo.

Two sides, each touched by one thread. ``accept`` is cheap (checks and keyframe selection) and
runs where frames arrive (the node's intake thread); ``process`` runs the model on the sliding
window and may take long, so the node calls it from a worker
(:class:`mvfm_ros.pipeline.worker.AsyncPipeline`) and the bag processor calls it inline. The
window and everything keyed by its keyframes (:class:`~.window.Window`) belong to the
``process`` side alone: a time jump seen by ``accept`` starts a new *epoch*, which the first
keyframe of that epoch carries to ``process``, where the window starts over. So no thread
changes state another is reading, and no keyframe of the old window reaches the next output,
even when keyframes in between are dropped from a full queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np
import torch

from mvfm_ros.geometry.camera import scale_intrinsics
from mvfm_ros.geometry.pose import check_poses
from mvfm_ros.lift.voxel_map import VoxelMap, depth_points
from mvfm_ros.pipeline.consistency import ConsistencyCheck
from mvfm_ros.pipeline.engine import Engine
from mvfm_ros.pipeline.frame import Frame, FrameError, ViewResult, WindowResult
from mvfm_ros.pipeline.keyframes import KeyframeSelector
from mvfm_ros.pipeline.outputs import Wanted
from mvfm_ros.pipeline.settings import Settings, SettingsError
from mvfm_ros.pipeline.stats import TIME_JUMP_NS, PipelineStats
from mvfm_ros.pipeline.window import Window

LOG = logging.getLogger('mvfm_ros.pipeline')


class Pipeline:
    """Frames in, per-view results of each new keyframe's window out.

    Args:
        engine: the inference engine.
        settings: window, keyframe and map settings.
        wanted: asked before each window: which outputs have a consumer (default: all).

    Raises:
        SettingsError: map settings the model or the operators cannot serve.
    """

    def __init__(self, engine: Engine, settings: Settings,
                 wanted: Callable[[], Wanted] | None = None) -> None:
        """Start with an empty window."""
        self.engine = engine
        self.settings = settings
        self.wanted = wanted or Wanted.everything
        check_map_settings(settings, engine)
        self.selector = KeyframeSelector(settings.min_translation, settings.min_rotation_deg,
                                         settings.max_interval)
        self.window = Window(settings.window_size, settings.window_anchor)
        self.stats = PipelineStats()
        # Called with (kind, message) for events worth a log line that refuse nothing.
        self.on_event = lambda kind, message: LOG.warning('[%s] %s', kind, message)
        self._last_stamp: dict[str, int] = {}
        self._next_uid = 0
        self._epoch = 0
        self._prompt: tuple[np.ndarray | None] = (None,)  # set by any thread, read by process
        # The world-frame map of keyframes with depth; read by other threads (publishing).
        self.map = VoxelMap(settings.map_voxel_size, settings.map_max_voxels,
                            settings.map_features)
        self.map_lock = threading.Lock()
        self.consistency = ConsistencyCheck(engine.model, settings.consistency_every)

    # ---------------------------------------------------------------------- the accept side
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
            self._start_over()
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
        frame.epoch = self._epoch
        self._next_uid += 1
        self.stats.count('keyframes')
        return True

    def _start_over(self) -> None:
        """Forget the keyframe history here; the window follows at the next epoch's keyframe."""
        self.selector.reset()
        self._last_stamp.clear()
        self._epoch += 1

    def set_prompt(self, point_world: np.ndarray | None) -> None:
        """Select the object at a world point in every view from the next window on.

        None clears the prompt; any thread may call this.
        """
        if point_world is not None:
            point_world = np.asarray(point_world, dtype=np.float64).reshape(3)
            if not np.all(np.isfinite(point_world)):
                raise FrameError('bad_prompt', 'prompt point has NaN/inf coordinates')
        self._prompt = (point_world,)

    @property
    def prompt(self) -> np.ndarray | None:
        """The world point the next windows segment, or None."""
        return self._prompt[0]

    # --------------------------------------------------------------------- the process side
    def process(self, frame: Frame) -> WindowResult:
        """Add an accepted keyframe to the window and run the model on the window.

        Returns the window with full results for this frame. The first keyframe makes a
        one-view window: a planner gets outputs from the first keyframe on.
        """
        window = self.window
        if frame.epoch != window.epoch:
            window.reset(frame.epoch)
        window.prompt = self._prompt[0]
        window.push(frame)
        wanted = self.wanted()
        if frame.depth is not None:
            wanted = Wanted(wanted.topics, lift=True)  # the map's labels
        start = time.monotonic()
        result = self.engine.run(window, outputs=[len(window.keyframes) - 1], wanted=wanted)
        done = time.monotonic()
        for view in result.views:
            view.latency = done - view.frame.received
            view.inference = done - start
            self.stats.record(view.latency, view.inference)
        result.wanted = wanted
        result.window_id = self.stats.counts['windows_processed']
        self.stats.count('windows_processed')
        for kind, message in self.engine.problems:
            self.stats.count(kind)
            self.on_event(kind, message)
        for view in result.views:
            if view.frame.depth is not None:
                self.update_map(view)
                self.consistency.observe(view, window.keyframes[-1].prepared,
                                         {f.uid for f in window.frames})
        return result

    def add(self, frame: Frame) -> WindowResult | None:
        """Accept and process in one call (offline use); None for a frame that is no keyframe."""
        return self.process(frame) if self.accept(frame) else None

    def reset(self) -> None:
        """Start over on both sides (only while no worker runs, e.g. after deactivation)."""
        self._start_over()
        self.window.reset(self._epoch)

    def reset_window(self) -> None:
        """Give the process side a fresh window (a restarted worker must not share state).

        The keyframes already accepted keep their epoch: the fresh window takes them as a new
        start.
        """
        self.window = Window(self.settings.window_size, self.settings.window_anchor, epoch=-1)

    # -------------------------------------------------------------------------------- the map
    def map_label(self, result: ViewResult) -> np.ndarray | None:
        """Return the ids that label the map (``map_label``, else the first label output)."""
        names = [self.settings.map_label] if self.settings.map_label else list(result.ops)
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


def check_map_settings(settings: Settings, engine: Engine) -> None:
    """Refuse map settings that cannot mean anything with this model and these operators."""
    channels = engine.model.feature_dim
    if settings.map_features > channels:
        raise SettingsError(f'map_features {settings.map_features} is more than the model has '
                            f'feature channels ({channels})')
    if settings.map_label:
        kinds = {op.name: op.kind for op in engine.lifting.operators}
        kind = kinds.get(settings.map_label.split(':')[-1])
        if kind not in (None, 'labels'):
            raise SettingsError(f'map_label {settings.map_label!r} names a {kind} operator; '
                                'the map is labelled by ids (a label operator)')
