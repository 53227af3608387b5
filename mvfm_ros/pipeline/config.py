"""Settings of the perception pipeline: the single place their defaults live.

The ROS node declares one parameter per field (same name, same default), the bag processor and
the demo read the same fields, and ``config/perception.yaml`` is checked against them by a test.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

DEVICES = ('auto', 'cpu', 'cuda')
PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')


@dataclass
class PipelineConfig:
    """Window, keyframing, model and inference settings.

    Attributes:
        window_size: views per multi-view window (all cameras together).
        min_translation: metres the camera must move for a new keyframe.
        min_rotation_deg: degrees the camera must turn for a new keyframe.
        max_interval: seconds after which a frame becomes a keyframe anyway (0: never).
        queue_size: keyframes waiting for inference; when full the oldest is dropped.
        input_height: model input height in pixels (0: the size the model was trained at).
        input_width: model input width in pixels (0: the size the model was trained at).
        device: ``auto`` (CUDA if available), ``cpu`` or ``cuda`` (an error if absent).
        precision: ``auto`` (bf16 on CUDA, fp32 on CPU), ``fp32``, ``bf16`` or ``fp16``.
        backbone: timm backbone name, used with ``weights`` when no checkpoint is given.
        weights: backbone weights file, or ``hf-cache`` for the Hugging Face cache.
        checkpoint: adapter checkpoint from ``mvfm-train`` (empty, with empty ``weights``: the
            shipped demo model).
        num_segments: k of the joint segmentation.
        max_pose_gap: seconds between the two poses an image stamp is interpolated between.
    """

    window_size: int = 4
    min_translation: float = 0.15
    min_rotation_deg: float = 10.0
    max_interval: float = 2.0
    queue_size: int = 2
    input_height: int = 0
    input_width: int = 0
    device: str = 'auto'
    precision: str = 'auto'
    backbone: str = ''
    weights: str = ''
    checkpoint: str = ''
    num_segments: int = 8
    max_pose_gap: float = 0.5

    def __post_init__(self) -> None:
        """Reject values that cannot work, with the reason."""
        if self.window_size < 2:
            raise ValueError(f'window_size must be at least 2, got {self.window_size}')
        if self.queue_size < 1:
            raise ValueError(f'queue_size must be at least 1, got {self.queue_size}')
        if self.device not in DEVICES:
            raise ValueError(f'device must be one of {DEVICES}, got {self.device!r}')
        if self.precision not in PRECISIONS:
            raise ValueError(f'precision must be one of {PRECISIONS}, got {self.precision!r}')
        if min(self.min_translation, self.min_rotation_deg, self.max_interval) < 0:
            raise ValueError('keyframe thresholds must not be negative')
        if (self.input_height == 0) != (self.input_width == 0) or min(
                self.input_height, self.input_width) < 0:
            raise ValueError('input_height and input_width must both be 0 or both positive')
        if self.num_segments < 1:
            raise ValueError(f'num_segments must be positive, got {self.num_segments}')

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Field name -> default value."""
        return {f.name: f.default for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> 'PipelineConfig':
        """Build from a mapping that may hold other keys (they are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})
