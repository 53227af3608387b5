"""Counters and recent rates of the pipeline, for ``/diagnostics`` and summaries."""

from __future__ import annotations

import collections
import statistics
import threading
import time


def percentiles(values: list[float]) -> dict[str, float]:
    """Median, 90th percentile (nearest rank) and maximum; empty for no values."""
    if not values:
        return {}
    values = sorted(values)
    return {'p50': statistics.median(values),
            'p90': values[min(len(values) - 1, int(0.9 * len(values)))], 'max': values[-1]}


# Counters whose recent rate is reported (events per second over the last RECENT_S seconds).
POSE_FAILURES = ('pose_lookup_failed', 'pose_extrapolation', 'pose_gap', 'tf_frame_unknown',
                 'tf_not_connected')
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
