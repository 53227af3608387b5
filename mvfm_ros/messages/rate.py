"""Images lost before the node: received far fewer than the camera's stamps say it sends.

A camera stamps its images at its own rate; when the transport drops some (a slow reader, full
socket buffers), the stamps of those that arrive show the gaps. Per camera, the stamps of the
last minute give the camera's period (a low percentile of the intervals: robust to the gaps
themselves); when the images received in the last :data:`WINDOW_S` seconds stay below
:data:`SHARE` of what that period implies for :data:`PATIENCE` checks in a row, it is said.
"""

from __future__ import annotations

import collections

import numpy as np

WINDOW_S = 5.0  # seconds of arrivals a check looks at
HISTORY_S = 60.0  # seconds of stamps the camera's period is taken from
SHARE = 0.8  # fewer than this share of the expected images is a loss
PATIENCE = 3  # consecutive low checks before saying so


class InputRate:
    """Per camera: arrival times and stamps of the images received."""

    def __init__(self) -> None:
        """Nothing received yet."""
        self.seen: dict[str, collections.deque[tuple[float, int]]] = {}
        self.low: collections.Counter[str] = collections.Counter()

    def add(self, camera: str, stamp_ns: int, arrival_s: float) -> None:
        """Note one image of ``camera`` (its stamp, its arrival on a monotonic clock)."""
        seen = self.seen.setdefault(camera, collections.deque())
        seen.append((arrival_s, stamp_ns))
        while seen and arrival_s - seen[0][0] > HISTORY_S:
            seen.popleft()

    def check(self, now_s: float) -> list[tuple[str, str]]:
        """Return ``(camera, message)`` for each camera that has been losing images."""
        out = []
        for camera, seen in self.seen.items():
            stamps = np.array([s for _, s in seen], dtype=np.int64)
            intervals = np.diff(np.sort(stamps))
            intervals = intervals[intervals > 0]
            recent = [s for t, s in seen if now_s - t <= WINDOW_S]
            if len(intervals) < 10 or len(recent) < 2:
                self.low[camera] = 0
                continue
            period = float(np.percentile(intervals, 10)) / 1e9
            expected = (max(recent) - min(recent)) / 1e9 / period + 1
            if len(recent) >= SHARE * expected:
                self.low[camera] = 0
                continue
            self.low[camera] += 1
            if self.low[camera] == PATIENCE:
                out.append((camera, f'camera {camera}: received {len(recent)} images in the last '
                            f'{WINDOW_S:g} s of a camera stamping them at {1 / period:.3g} Hz '
                            f'(about {expected:.0f} expected): images are lost before the node '
                            '(transport or publisher); see README, Troubleshooting'))
        return out
