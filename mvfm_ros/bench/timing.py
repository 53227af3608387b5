"""Timing with warm-up, device synchronisation and robust statistics."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device) -> None:
    """Wait for queued device work (CUDA launches are asynchronous)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, repeats: int = 10,
              warmup: int = 2) -> dict[str, float]:
    """Run ``fn`` ``warmup`` times, then time ``repeats`` runs.

    Returns:
        median, min, max and interquartile range in milliseconds, and the repeat count.
    """
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    q1, _, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0],) * 3
    return {'median_ms': statistics.median(times), 'min_ms': times[0], 'max_ms': times[-1],
            'iqr_ms': q3 - q1, 'repeats': repeats}
