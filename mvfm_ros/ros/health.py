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
        self.level_floor = DiagnosticStatus.OK  # a sticky level while a condition holds
        self.floor_message = ''
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

    def status(self) -> DiagnosticStatus:
        """Return the current diagnostics status (also published on /diagnostics)."""
        node = self.node
        pipeline = node.pipeline
        snap = pipeline.stats.snapshot() if pipeline is not None else {}
        problems = {k: int(snap.get(k, 0)) + self.counts[k] for k in PROBLEMS}
        new = {k: v - self._reported.get(k, 0) for k, v in problems.items()
               if v > self._reported.get(k, 0)}
        self._reported = problems
        level, message = self.level_floor, self.floor_message or 'ok'
        if new:
            worst = DiagnosticStatus.ERROR if any(k in new for k in ERRORS) \
                else DiagnosticStatus.WARN
            level = max(level, worst)
            message = 'since last report: ' + ', '.join(f'{k} +{v}' for k, v in new.items())
        if pipeline is not None:
            snap.update(map_voxels=len(pipeline.map), map_evicted=pipeline.map.evicted,
                        map_mb=pipeline.map.nbytes / 2**20)
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
