"""What the node says about itself: problem log lines and counts, and ``/diagnostics``.

Every problem kind (:data:`~mvfm_ros.pipeline.frame.PROBLEMS`) gets a throttled log line
``[kind] reason`` and a counter; ``/diagnostics`` reports the counters, rates, latencies,
device and memory, and rises to WARN or ERROR when new problems appeared since the last report.
"""

from __future__ import annotations

import collections
import resource
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from mvfm_ros.pipeline.frame import PROBLEMS

ERRORS = ('inference_errors', 'worker_restarted')  # kinds that make the status an error


class Health:
    """Problem counts and log lines of a node, and its diagnostics status.

    Args:
        node: the node (its logger, and its ``pipeline``, ``worker``, ``inputs`` while
            configured).
        name: the status name.
    """

    def __init__(self, node: Any, name: str) -> None:
        """Nothing counted yet."""
        self.node = node
        self.name = name
        self.counts: collections.Counter[str] = collections.Counter()  # while unconfigured
        self.last_problem: dict[str, str] = {}
        self.throttle = 5.0
        self.extra: dict[str, str] = {}  # further values (e.g. live consistency figures)
        self._last_log: dict[str, float] = {}
        self._reported: dict[str, int] = {}

    def problem(self, kind: str, message: str, counted: bool = False) -> None:
        """Count a problem (unless the pipeline already did) and log it, throttled."""
        if not counted:
            pipeline = self.node.pipeline
            if pipeline is not None:
                pipeline.stats.count(kind)
            else:
                self.counts[kind] += 1
        self.last_problem[kind] = message
        now = time.monotonic()
        if now - self._last_log.get(kind, -1e9) >= self.throttle:
            self._last_log[kind] = now
            self.node.get_logger().warning(f'[{kind}] {message}')

    def watch(self) -> None:
        """Check the inputs' rates and the inference worker (the diagnostics timer)."""
        if self.node.intake is not None:
            self.node.intake.check_rate()
        self.watch_worker()

    def watch_worker(self) -> None:
        """Restart an inference worker whose thread ended or that is stuck; say so."""
        worker, settings = self.node.worker, self.node.settings
        if worker is None or settings is None:
            return
        state = worker.check(settings.worker_timeout)
        if state != 'ok':
            self.problem('worker_restarted', f'inference worker {state} (its thread ended, or '
                         f'a window took more than worker_timeout {settings.worker_timeout:g} '
                         's): restarted on a fresh window')
            worker.restart()

    def status(self) -> DiagnosticStatus:
        """Return the current diagnostics status (also published on /diagnostics)."""
        node = self.node
        pipeline = node.pipeline
        snap = pipeline.stats.snapshot() if pipeline is not None else {}
        problems = {k: int(snap.get(k, 0)) + self.counts[k] for k in PROBLEMS}
        new = {k: v - self._reported.get(k, 0) for k, v in problems.items()
               if v > self._reported.get(k, 0)}
        self._reported = problems
        level, message = DiagnosticStatus.OK, 'ok'
        if new:
            worst = DiagnosticStatus.ERROR if any(k in new for k in ERRORS) \
                else DiagnosticStatus.WARN
            level = max(level, worst)
            message = 'since last report: ' + ', '.join(f'{k} +{v}' for k, v in new.items())
        if pipeline is not None:
            snap.update(map_voxels=len(pipeline.map), map_evicted=pipeline.map.evicted,
                        map_mb=pipeline.map.nbytes / 2**20)
            live = pipeline.consistency.summary()
            snap.update(live)
            if live.get('consistency_checks', 0) >= 3 and live['consistency_ratio'] >= 1.0:
                level = max(level, DiagnosticStatus.WARN)
                message = (f"multi-view features no more consistent than the backbone's here "
                           f"(location error {live['consistency_multiview']:.3f} vs "
                           f"{live['consistency_base']:.3f}): the model may not fit the scene"
                           + ('' if message == 'ok' else f'; {message}'))
        device = str(node.engine.device) if node.engine is not None else 'none'
        values = {**{k: f'{v:.4g}' if isinstance(v, float) else str(v) for k, v in snap.items()},
                  **{k: str(v) for k, v in problems.items()}, 'device': device,
                  'queue': str(node.worker.pending() if node.worker else 0),
                  'inputs': node.inputs.describe() if node.inputs is not None else '',
                  **self.extra}
        values.update({f'last_{k}': v for k, v in self.last_problem.items()})
        values.update(memory(device))
        return DiagnosticStatus(level=level, name=self.name, message=message,
                                hardware_id=device,
                                values=[KeyValue(key=k, value=v) for k, v in values.items()])

    def message(self, stamp: Any) -> DiagnosticArray:
        """Return a /diagnostics message with the current status."""
        msg = DiagnosticArray()
        msg.header.stamp = stamp
        msg.status = [self.status()]
        return msg


def memory(device: str) -> dict[str, str]:
    """Peak resident memory of the process and, on CUDA, the allocator's figures (MiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {'process_max_rss_mb': f'{rss:.0f}'}
    if device.startswith('cuda'):
        import torch

        out['cuda_allocated_mb'] = f'{torch.cuda.memory_allocated() / 2**20:.0f}'
        out['cuda_reserved_mb'] = f'{torch.cuda.memory_reserved() / 2**20:.0f}'
    return out
