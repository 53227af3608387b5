"""What goes into the pipeline (a posed frame) and what comes out (per-view results)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class FrameError(ValueError):
    """A frame the pipeline refuses; ``kind`` names the counter it is tallied under."""

    def __init__(self, kind: str, message: str) -> None:
        """Record the kind and the human-readable reason."""
        super().__init__(message)
        self.kind = kind


@dataclass
class Frame:
    """One camera image with its calibration and pose.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        intrinsics: ``(3, 3)`` K in pixels of ``image``.
        cam_to_world: ``(4, 4)`` pose of the optical frame in the world frame.
        stamp_ns: acquisition time in nanoseconds.
        camera: camera name (several cameras can share a window).
        header: the source message header, handed back untouched with the results.
        received: ``time.monotonic()`` when the frame arrived (for latency).
        conversion_s: seconds the caller spent turning its message into this frame (node
            overhead).
        submitted: ``time.monotonic()`` when it was handed to the inference thread.
    """

    image: np.ndarray
    intrinsics: np.ndarray
    cam_to_world: np.ndarray
    stamp_ns: int
    camera: str = ''
    header: Any = None
    received: float = field(default_factory=time.monotonic)
    conversion_s: float = 0.0
    submitted: float | None = None
    uid: int = -1  # assigned by the pipeline when the frame becomes a keyframe


@dataclass
class ViewResult:
    """Outputs for one view of a processed window.

    Attributes:
        frame: the input frame.
        features: ``(h, w, C)`` float32, one pixel per patch.
        feature_intrinsics: ``(3, 3)`` K of the feature grid.
        pca: ``(h, w, 3)`` uint8 PCA colours shared by the whole window.
        normals: ``(H', W', 3)`` float32 unit normals (optical frame) at the model input size,
            or None without a normal head.
        normals_color: ``(H', W', 3)`` uint8, or None.
        segments: ``(H', W')`` uint8 segment ids consistent across the window (255: the
            prompted object).
        segments_color: ``(H', W', 3)`` uint8 overlay on the input.
        window: uids of the frames in the window.
        latency: seconds from arrival of the frame to these results.
        inference: seconds the engine took for this window (model, heads, output images).
    """

    frame: Frame
    features: np.ndarray
    feature_intrinsics: np.ndarray
    pca: np.ndarray
    normals: np.ndarray | None
    normals_color: np.ndarray | None
    segments: np.ndarray
    segments_color: np.ndarray
    window: tuple[int, ...]
    latency: float
    inference: float = 0.0
