"""The node's intake thread: executor callbacks only queue messages, this thread assembles them.

Every input message (image, camera_info, depth, pose) is put on one queue by its subscription
callback and the executor returns at once, so a pose is never stuck behind an image's
conversion. The intake thread takes them in arrival order into the shared
:class:`~mvfm_ros.messages.assemble.FrameAssembler` (the node's clock is its clock), and hands
each completed frame to the inference worker, which checks it and keeps the keyframes.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any

from mvfm_ros.messages.assemble import FrameAssembler
from mvfm_ros.messages.conversions import stamp_to_ns
from mvfm_ros.messages.poses import PoseSource
from mvfm_ros.messages.rate import InputRate
from mvfm_ros.pipeline.frame import FrameError
from mvfm_ros.pipeline.settings import Settings
from mvfm_ros.pipeline.worker import AsyncPipeline

MAX_QUEUED = 256  # raw messages waiting for the intake thread before the oldest images go
POLL_S = 0.05  # how often images waiting for a pose re-check their deadline


class Intake:
    """Queue of raw input messages and the thread that turns them into frames.

    Args:
        settings: the node's settings.
        worker: where completed frames go (``submit`` checks them and keeps keyframes).
        clock_ns: the node's clock in nanoseconds (ROS time: sim time follows ``/clock``).
        problem: ``(kind, message, counted)`` for a log line and (unless ``counted``) a count.
        tf: the TF pose source (``pose_source: tf``).
    """

    def __init__(self, settings: Settings, worker: AsyncPipeline, clock_ns: Callable[[], int],
                 problem: Callable[..., None], tf: PoseSource | None = None) -> None:
        """Create the assembler; :meth:`start` runs the thread."""
        self.worker = worker
        self.stats = worker.pipeline.stats
        self.clock_ns = clock_ns
        self.problem = problem
        self.assembler = FrameAssembler(settings, self._report, tf)
        self.rate = InputRate()
        self._events: collections.deque[tuple[str, str, Any, float]] = collections.deque()
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None

    def put(self, kind: str, camera: str, msg: Any) -> None:
        """Queue one message (called on the executor thread; never blocks on work)."""
        arrived = time.monotonic()
        with self._cond:
            self._events.append((kind, camera, msg, arrived))
            if kind == 'image':
                self.rate.add(camera, stamp_to_ns(msg.header.stamp), arrived)
            self._cond.notify()

    def check_rate(self) -> None:
        """Say when a camera's images are lost before the node (stamps show the gaps)."""
        with self._cond:
            lost = self.rate.check(time.monotonic())
        for _, message in lost:
            self.problem('input_rate_low', message)

    def start(self) -> None:
        """Start the intake thread."""
        self._stop = False
        self._thread = threading.Thread(target=self._run, name='mvfm-intake', daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread; queued and waiting messages are discarded."""
        with self._cond:
            self._stop = True
            self._events.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def alive(self) -> bool:
        """Whether the intake thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def _report(self, kind: str, message: str, lost: bool) -> None:
        if lost:
            self.stats.count('frames_received')
        self.problem(kind, message)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._events or self._stop,
                                    timeout=POLL_S if self.assembler.pending() else 0.5)
                if self._stop:
                    return
                events = list(self._events)
                self._events.clear()
            self.handle(events)

    def handle(self, events: list[tuple[str, str, Any, float]]) -> None:
        """Take queued messages in order, then submit every frame they completed."""
        images = [e for e in events if e[0] == 'image']
        if len(images) > MAX_QUEUED:  # far behind: keep the newest images, count the rest
            dropped = {id(e) for e in images[:-MAX_QUEUED]}
            for _, camera, _, _ in images[:-MAX_QUEUED]:
                self._report('frames_dropped', f'camera {camera}: image intake behind; '
                             'oldest raw images dropped', True)
            events = [e for e in events if id(e) not in dropped]
        for kind, camera, msg, arrived in events:
            self._take(kind, camera, msg, arrived)
        for frame in self.assembler.poll(self.clock_ns()):
            try:
                self.worker.submit(frame)
            except FrameError as err:  # counted by the pipeline already
                self.problem(err.kind, f'camera {frame.camera}: {err}', True)

    def _take(self, kind: str, camera: str, msg: Any, arrived: float) -> None:
        if kind == 'image':
            self.assembler.image(camera, msg, self.clock_ns(), arrived)
        elif kind == 'camera_info':
            self.assembler.camera_info(camera, msg)
        elif kind == 'depth':
            self.assembler.depth(camera, msg)
        else:
            self.assembler.pose(camera, msg, self.clock_ns())
