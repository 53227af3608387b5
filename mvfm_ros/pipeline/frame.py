"""What goes into the pipeline (a posed frame) and what comes out (per-view results)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Every kind of bad input or lost frame, with what it means: the one set of problem kinds the
# node, the bag processor and the diagnostics use (each is a counter in /diagnostics).
PROBLEMS: dict[str, str] = {
    'missing_camera_info': 'an image arrived before any camera_info of its camera',
    'unsupported_encoding': 'image encoding other than rgb8, bgr8, rgba8, bgra8, mono8',
    'bad_image': 'image data that does not fit its height, width and step',
    'bad_camera_info': 'camera_info without a valid K',
    'size_mismatch': 'image size differs from the size its camera_info describes',
    'missing_frame_id': 'image header without a frame_id',
    'bad_pose': 'NaN, degenerate or non-rigid pose',
    'pose_frame_mismatch': 'pose expressed in a frame other than world_frame',
    'pose_extrapolation': 'image stamp outside the poses received (never extrapolated)',
    'pose_gap': 'poses around the image stamp further apart than max_pose_gap',
    'pose_lookup_failed': 'no pose covering the image stamp arrived within tf_timeout (late)',
    'tf_frame_unknown': 'the image frame or world_frame was not in TF within tf_timeout',
    'tf_not_connected': 'the image frame and world_frame were not connected in TF within '
                        'tf_timeout',
    'duplicate_stamp': 'image stamp equal to the previous one of its camera',
    'out_of_order_stamp': 'image stamp older than the previous one of its camera',
    'future_stamp': 'image or pose stamped further ahead of the clock than the tolerance',
    'time_jump': 'stamps jumped backwards (bag loop, clock reset): history cleared, recovered',
    'non_unit_quaternion': 'pose quaternion whose norm is not 1 (normalised and used)',
    'bad_prompt': 'prompt point that is not finite, absurdly far, or not in world_frame',
    'qos_incompatible': 'an input publisher whose QoS cannot reach the subscription',
    'parameter_refused': 'run-time parameter change refused (out of range or invalid)',
    'lifecycle_refused': 'lifecycle transition requested that is invalid in the current state',
    'frames_dropped': 'keyframe dropped from a full queue (inference slower than input)',
    'input_rate_low': "a camera's images arriving well below the rate its stamps show (lost "
                      'in transport) for several seconds',
    'inference_errors': 'window whose processing raised',
    'worker_restarted': 'the inference worker had ended or was stuck on one window longer than '
                        'worker_timeout: restarted on a fresh window',
    'undecodable_message': 'bag message whose payload does not decode as its type',
    'operator_errors': 'operator that raised or returned an unusable output (frame served '
                       'without it)',
    'bad_depth': 'depth image with an unsupported encoding, a size unlike its image, or bad data',
    'depth_missing': 'no depth image with the stamp of an image within tf_timeout (served '
                     'without depth; the map skips it)',
    'depth_not_registered': 'depth in another frame than its image (and not depth_frame_id): '
                            'not registered to it (served without depth)',
    'depth_empty': 'depth image without a single valid measurement (served without depth)',
    'depth_implausible': 'depth whose median is outside 0.1-50 m: millimetres in a metres '
                         'image, or metres in a millimetre image (served without depth)',
}


class FrameError(ValueError):
    """A frame the pipeline refuses; ``kind`` (a key of :data:`PROBLEMS`) names its counter."""

    def __init__(self, kind: str, message: str) -> None:
        """Record the kind and the human-readable reason."""
        if kind not in PROBLEMS:
            raise KeyError(f'unknown problem kind {kind!r}; add it to PROBLEMS')
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
        depth: ``(H', W')`` float32 metres registered to ``image`` (same optical frame, same
            aspect ratio; 0 or NaN: no measurement), or None.
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
    depth: np.ndarray | None = None
    epoch: int = 0  # the pipeline's epoch when accepted (a time jump starts a new one)


@dataclass
class ViewResult:
    """Outputs for one view of a processed window.

    Colour pictures are made from them at the output edge (:mod:`mvfm_ros.pipeline.render`),
    only for topics with a consumer.

    Attributes:
        frame: the input frame.
        features: ``(h, w, C)`` float32, one pixel per patch.
        feature_intrinsics: ``(3, 3)`` K of the feature grid.
        model_image: ``(3, H', W')`` float image in [0, 1] as the model saw it.
        normals: ``(H', W', 3)`` float32 unit normals (optical frame) at the model input size,
            or None (no normal head, or nobody wanted them).
        segments: ``(H', W')`` uint8 segment ids consistent across the window (255: the
            prompted object), or None when nobody wanted them.
        window: uids of the frames in the window.
        latency: seconds from arrival of the frame to these results.
        inference: seconds the engine took for this window (model, heads, operators).
        ops: lifted operator outputs by operator name at the model input size: ``(H', W')``
            int32 ids shared across views and windows (-1: unlabelled) or ``(H', W', C)``
            float32 fused maps.
    """

    frame: Frame
    features: np.ndarray
    feature_intrinsics: np.ndarray
    model_image: Any
    normals: np.ndarray | None
    segments: np.ndarray | None
    window: tuple[int, ...]
    latency: float
    inference: float = 0.0
    ops: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class WindowResult:
    """One processed window: every view's features and the results of the returned views.

    Attributes:
        frames: the window's frames, oldest first.
        features: ``(V, h, w, C)`` float32 features of every view, computed together.
        feature_intrinsics: ``(V, 3, 3)`` K of each view's feature grid.
        views: results of the views that were asked for (the new keyframe).
        new_view: index in ``frames`` of the keyframe that made this window.
        window_id: sequence number of the window (set by the pipeline).
        op_kinds: operator name -> kind (``labels``, ``float``, ``normals``).
        wanted: the outputs that had a consumer when the window was computed (None: all).
    """

    frames: list[Frame]
    features: np.ndarray
    feature_intrinsics: np.ndarray
    views: list[ViewResult]
    new_view: int
    window_id: int = 0
    op_kinds: dict[str, str] = field(default_factory=dict)
    wanted: Any = None
