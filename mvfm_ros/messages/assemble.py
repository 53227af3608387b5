"""Messages in, checked and posed frames out: one frame assembly for the node and for bags.

:class:`FrameAssembler` takes images, camera_info, poses and depth as they arrive, per camera,
and hands out frames with the pose of their own stamp and the depth registered to them. An
image waits for its pose and depth until a deadline in message time: ``tf_timeout`` after its
stamp or its arrival, whichever is later, on the driver's clock (the node's ROS clock, a bag's
recorded time). So a bag and a live node fed the same messages make the same decisions; the
checks and problem kinds are the same in both. Frames of one camera come out in the order
their images arrived. Works on message fields only (rclpy and ``rosbags`` messages alike) and
imports no ROS.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mvfm_ros.messages.conversions import (
    ConversionError,
    camera_info_matrix,
    check_depth,
    check_not_future,
    depth_to_metres,
    image_to_rgb,
    stamp_to_ns,
)
from mvfm_ros.messages.poses import PoseNotYet, PoseSource, TopicPoseSource
from mvfm_ros.pipeline.frame import Frame, FrameError
from mvfm_ros.pipeline.settings import Settings

MAX_PENDING = 64  # images waiting for their pose or depth, all cameras together
DEPTH_KEEP = 30  # depth images kept per camera to pair with images by stamp


def frame_from_messages(camera: str, image: Any, info: Any | None,
                        received: float | None = None, now_ns: int = 0) -> Frame:
    """Check and convert one image with its camera's latest camera_info.

    The frame's pose is the identity until its pose source answers for its stamp.

    Args:
        camera: camera name.
        image: sensor_msgs/Image.
        info: the camera's latest sensor_msgs/CameraInfo, or None if none arrived yet.
        received: ``time.monotonic()`` of arrival (default: now).
        now_ns: the receiver's clock (0: unknown): an image stamped far ahead of it is refused,
            so one bad stamp cannot make every later image "out of order".

    Raises:
        ConversionError: ``missing_camera_info``, ``missing_frame_id``, ``future_stamp``,
            ``unsupported_encoding``, ``bad_image``, ``bad_camera_info`` or ``size_mismatch``.
    """
    received = time.monotonic() if received is None else received
    if info is None:
        raise ConversionError('missing_camera_info', 'no camera_info received yet for camera '
                              f'{camera!r}; image skipped')
    if not str(image.header.frame_id).strip('/'):
        raise ConversionError('missing_frame_id', 'image header has an empty frame_id: its '
                              'pose and the outputs would name no frame')
    check_not_future(stamp_to_ns(image.header.stamp), now_ns, 'image')
    rgb = image_to_rgb(image)
    k = camera_info_matrix(info, rgb.shape[:2])
    frame = Frame(rgb, k, np.eye(4), stamp_to_ns(image.header.stamp), camera, image.header,
                  received=received)
    frame.conversion_s = time.monotonic() - received
    return frame


def nearest_in_time(stamped: Iterable[tuple[int, Any]], stamp_ns: int,
                    tolerance_ns: int) -> Any | None:
    """Return the message of ``(stamp_ns, message)`` pairs nearest to ``stamp_ns``.

    None when none is within ``tolerance_ns``.
    """
    best = min(stamped, key=lambda item: abs(item[0] - stamp_ns), default=None)
    if best is None or abs(best[0] - stamp_ns) > tolerance_ns:
        return None
    return best[1]


@dataclass
class _Waiting:
    frame: Frame
    frame_id: str
    deadline_ns: int
    posed: bool = False


class FrameAssembler:
    """Pairs each camera's images with camera_info, their pose and their depth.

    Args:
        settings: ``cameras``, ``tf_timeout``, ``use_depth``, ``depth_tolerance``,
            ``world_frame``, ``pose_source`` and ``max_pose_gap`` are used.
        report: called with ``(kind, message, lost)`` for every problem (``lost``: the image
            is not served; else it is served without what failed, e.g. its depth).
        tf: the TF pose source (``pose_source: tf``), shared by all cameras.
    """

    def __init__(self, settings: Settings, report: Callable[[str, str, bool], None],
                 tf: PoseSource | None = None) -> None:
        """Per-camera state, empty."""
        self.settings = settings
        self.report = report
        self.timeout_ns = int(settings.tf_timeout * 1e9)
        self.tolerance_ns = int(settings.depth_tolerance * 1e9)
        cameras = settings.cameras
        if settings.pose_source == 'tf':
            if tf is None:
                raise ValueError('pose_source tf needs a TF pose source')
            self.sources: dict[str, PoseSource] = {c: tf for c in cameras}
        else:
            self.sources = {c: TopicPoseSource(settings.world_frame, settings.max_pose_gap)
                            for c in cameras}
        self.infos: dict[str, Any] = {}
        self.depths = {c: collections.deque(maxlen=DEPTH_KEEP) for c in cameras}
        self.waiting: dict[str, collections.deque[_Waiting]] = {
            c: collections.deque() for c in cameras}
        self.newest_ns = 0  # newest stamp of any input: the clock when the driver has none

    # ----------------------------------------------------------------------------- inputs
    def camera_info(self, camera: str, msg: Any) -> None:
        """Take the camera's latest camera_info."""
        self.infos[camera] = msg

    def pose(self, camera: str, msg: Any, now_ns: int = 0) -> None:
        """Take a PoseStamped or Odometry message of the camera (``pose_source: topic``)."""
        source = self.sources[camera]
        try:
            notes = source.add(msg, now_ns)
        except FrameError as err:
            self.report(err.kind, f'camera {camera}: {err}', False)
            return
        self._saw(stamp_to_ns(msg.header.stamp))
        for kind, message in notes:
            self.report(kind, f'camera {camera}: {message}', False)

    def depth(self, camera: str, msg: Any) -> None:
        """Keep a depth image of the camera (``use_depth``) to pair with its image."""
        stamp = stamp_to_ns(msg.header.stamp)
        self._saw(stamp)
        self.depths[camera].append((stamp, msg))

    def image(self, camera: str, msg: Any, now_ns: int = 0,
              received: float | None = None) -> None:
        """Take an image of the camera: converted, then waiting for its pose (and depth)."""
        try:
            frame = frame_from_messages(camera, msg, self.infos.get(camera), received, now_ns)
        except FrameError as err:
            self.report(err.kind, f'camera {camera}: {err}', True)
            return
        self._saw(frame.stamp_ns)
        if self.pending() >= MAX_PENDING:
            oldest = min((q[0] for q in self.waiting.values() if q),
                         key=lambda w: w.deadline_ns)
            self.waiting[oldest.frame.camera].popleft()
            self.report('pose_lookup_failed', f'camera {oldest.frame.camera}: too many images '
                        'waiting for poses; oldest dropped', True)
        start = max(frame.stamp_ns, self._clock(now_ns))
        self.waiting[camera].append(_Waiting(frame, msg.header.frame_id,
                                             start + self.timeout_ns))

    def _saw(self, stamp_ns: int) -> None:
        self.newest_ns = max(self.newest_ns, stamp_ns)

    def _clock(self, now_ns: int) -> int:
        """Return the driver's clock, or the newest stamp seen where it has none (sim time)."""
        return now_ns if now_ns > 0 else self.newest_ns

    # ---------------------------------------------------------------------------- outputs
    def pending(self) -> int:
        """Images waiting for a pose or depth."""
        return sum(len(q) for q in self.waiting.values())

    def poll(self, now_ns: int = 0) -> list[Frame]:
        """Frames whose pose (and depth) arrived or whose deadline passed, in arrival order."""
        now = self._clock(now_ns)
        ready = []
        for queue in self.waiting.values():
            while queue:
                done, frame = self._resolve(queue[0], now)
                if not done:
                    break
                queue.popleft()
                if frame is not None:
                    ready.append(frame)
        return ready

    def flush(self) -> list[Frame]:
        """Resolve every waiting image now, as if its deadline had passed (end of a bag)."""
        ready = []
        for queue in self.waiting.values():
            while queue:
                _, frame = self._resolve(queue.popleft(), None)
                if frame is not None:
                    ready.append(frame)
        return ready

    def _resolve(self, item: _Waiting, now: int | None) -> tuple[bool, Frame | None]:
        """Try to complete one waiting image: (finished, frame or None if it is lost).

        ``now`` None: the deadline has passed (flush).
        """
        frame = item.frame
        late = now is None or now >= item.deadline_ns
        if not item.posed:
            try:
                frame.cam_to_world = self.sources[frame.camera].lookup(item.frame_id,
                                                                       frame.stamp_ns)
                item.posed = True
            except PoseNotYet as err:
                if not late:
                    return False, None
                self.report(err.kind, f'camera {frame.camera}: no pose within tf_timeout '
                            f'{self.settings.tf_timeout} s: {err}', True)
                return True, None
            except FrameError as err:
                self.report(err.kind, f'camera {frame.camera}: {err}', True)
                return True, None
        if self.settings.use_depth:
            found = nearest_in_time(self.depths[frame.camera], frame.stamp_ns,
                                    self.tolerance_ns)
            if found is None:
                if not late:
                    return False, None
                self.report('depth_missing', f'camera {frame.camera}: no depth within '
                            f'{self.settings.depth_tolerance} s of the image stamp after '
                            f'tf_timeout {self.settings.tf_timeout} s; frame served without '
                            'depth', False)
                return True, frame
            try:
                depth = depth_to_metres(found, frame.image.shape[:2])
                check_depth(depth, found, item.frame_id, self.settings.depth_frame_id)
                frame.depth = depth
            except FrameError as err:
                self.report(err.kind, f'camera {frame.camera}: {err}; frame served without '
                            'depth', False)
        return True, frame
