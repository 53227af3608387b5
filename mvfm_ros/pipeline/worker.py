"""Run the pipeline in a worker thread behind a bounded, drop-oldest queue.

Callers (ROS callbacks) only ever do :meth:`AsyncPipeline.submit`, which checks the frame, picks
keyframes and enqueues; it never waits for the model. When keyframes arrive faster than the
model runs, the oldest waiting keyframe is dropped and counted, so latency stays bounded by
queue size times inference time.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

from mvfm_ros.pipeline.frame import Frame, WindowResult
from mvfm_ros.pipeline.pipeline import Pipeline

LOG = logging.getLogger('mvfm_ros.pipeline')


class AsyncPipeline:
    """A worker thread that processes keyframes from a bounded queue.

    Args:
        pipeline: the pipeline (its ``settings.queue_size`` bounds the queue).
        on_results: called in the worker thread with each processed window.
        on_error: called in the worker thread when processing a window raises (anything,
            ``SystemExit`` included: the worker goes on).
    """

    def __init__(self, pipeline: Pipeline, on_results: Callable[[WindowResult], None],
                 on_error: Callable[[Exception], None] | None = None) -> None:
        """Create the queue; call :meth:`start` to run."""
        self.pipeline = pipeline
        self.on_results = on_results
        self.on_error = on_error or (lambda err: LOG.exception('window failed', exc_info=err))
        self._queue: collections.deque[Frame] = collections.deque()
        self._cond = threading.Condition()
        self._stop = False
        self._busy = False
        self._busy_since = 0.0
        self._generation = 0  # a restarted worker's predecessor publishes nothing more
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop = False
        self._thread = threading.Thread(target=self._run, args=(self._generation,),
                                        name='mvfm-inference', daemon=True)
        self._thread.start()

    def check(self, stuck_after: float) -> str:
        """Return ``ok``, ``dead`` (the thread ended) or ``stuck`` (one window for too long)."""
        with self._cond:
            if self._stop or self._thread is None:
                return 'ok'
            if not self._thread.is_alive():
                return 'dead'
            if self._busy and time.monotonic() - self._busy_since > stuck_after:
                return 'stuck'
        return 'ok'

    def restart(self) -> None:
        """Start a fresh worker thread; a stuck one is left behind and its results dropped.

        The new thread works on a fresh window (the pipeline starts over), so it never shares
        window state with the thread it replaces.
        """
        with self._cond:
            self._generation += 1
            self._busy = False
            self._thread = None
        self.pipeline.reset_window()
        self.start()

    def submit(self, frame: Frame) -> bool:
        """Check and enqueue a frame; True if it was a keyframe. Never blocks on inference.

        Raises:
            mvfm_ros.pipeline.frame.FrameError: invalid frame (already counted).
        """
        frame.submitted = time.monotonic()
        if not self.pipeline.accept(frame):
            return False
        with self._cond:
            if len(self._queue) >= self.pipeline.settings.queue_size:
                self._queue.popleft()
                self.pipeline.stats.count('frames_dropped')
            self._queue.append(frame)
            self._cond.notify()
        return True

    def pending(self) -> int:
        """Keyframes waiting plus the one being processed."""
        with self._cond:
            return len(self._queue) + int(self._busy)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until the queue is empty and nothing is running; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the worker after the window in progress; waiting keyframes are discarded."""
        with self._cond:
            self._stop = True
            self._queue.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                LOG.warning('inference thread did not stop within %.1f s', timeout)
            self._thread = None

    def _record_overhead(self, window: WindowResult) -> None:
        """Node overhead of each result: its conversion, queueing, checks and publishing."""
        done = time.monotonic()
        for result in window.views:
            frame = result.frame
            if frame.submitted is not None:
                self.pipeline.stats.record_overhead(
                    frame.conversion_s + done - frame.submitted - result.inference)

    def _run(self, generation: int) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._stop
                                    or generation != self._generation)
                if self._stop or generation != self._generation:
                    return
                frame = self._queue.popleft()
                self._busy, self._busy_since = True, time.monotonic()
            try:
                window = self.pipeline.process(frame)
                if generation == self._generation:
                    self.on_results(window)
                    self._record_overhead(window)
            except BaseException as err:  # nothing a window does may end the worker
                self.pipeline.stats.count('inference_errors')
                self.on_error(err)
            finally:
                with self._cond:
                    if generation == self._generation:
                        self._busy = False
                    self._cond.notify_all()
