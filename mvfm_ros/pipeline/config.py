"""Settings of the perception pipeline: the single place their defaults live.

The ROS node declares one parameter per field (same name, same default), the bag processor and
the demo read the same fields, and ``config/perception.yaml`` is checked against them by a test.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

DEVICES = ('auto', 'cpu', 'cuda')
PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')
# Bounds where a value would hurt: a huge window multiplies inference time and memory, segment
# ids must stay below the prompt id 255 of the mono8 segmentation image.
MAX_WINDOW = 32
MAX_QUEUE = 64
MAX_SEGMENTS = 254
MIN_INPUT, MAX_INPUT = 16, 4096
MAX_VOXELS = 50_000_000
MAX_MAP_FEATURES = 64


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
        operators: 2D operators lifted to consistent outputs (entry point names or
            ``module:function``; ``superpixels`` and ``normals`` are built in).
        map_voxel_size: edge of the world-frame map's voxels in metres (frames with depth).
        map_max_voxels: most voxels the map keeps; the least recently seen are evicted.
        map_features: feature channels per map voxel (a fixed PCA projection; 0: none).
        map_label: operator whose lifted ids label the map (empty: the first label operator).
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
    operators: list[str] = field(default_factory=list)
    map_voxel_size: float = 0.05
    map_max_voxels: int = 200_000
    map_features: int = 8
    map_label: str = ''

    def __post_init__(self) -> None:
        """Reject values that cannot work, with the reason."""
        if not 2 <= self.window_size <= MAX_WINDOW:
            raise ValueError(f'window_size must be in [2, {MAX_WINDOW}], got {self.window_size}')
        if not 1 <= self.queue_size <= MAX_QUEUE:
            raise ValueError(f'queue_size must be in [1, {MAX_QUEUE}], got {self.queue_size}')
        if self.device not in DEVICES and not re.fullmatch(r'cuda:\d+', str(self.device)):
            raise ValueError(f'device must be one of {DEVICES} or cuda:N, got {self.device!r}')
        if self.precision not in PRECISIONS:
            raise ValueError(f'precision must be one of {PRECISIONS}, got {self.precision!r}')
        if min(self.min_translation, self.min_rotation_deg, self.max_interval) < 0:
            raise ValueError('keyframe thresholds must not be negative')
        if (self.input_height == 0) != (self.input_width == 0) or min(
                self.input_height, self.input_width) < 0:
            raise ValueError('input_height and input_width must both be 0 or both positive')
        if self.input_height and not (MIN_INPUT <= min(self.input_height, self.input_width)
                                      and max(self.input_height, self.input_width) <= MAX_INPUT):
            raise ValueError(f'input_height and input_width must be in [{MIN_INPUT}, '
                             f'{MAX_INPUT}] pixels, got {self.input_height}x{self.input_width}')
        if not 1 <= self.num_segments <= MAX_SEGMENTS:
            raise ValueError(f'num_segments must be in [1, {MAX_SEGMENTS}] (255 is the prompted '
                             f'object in the mono8 segmentation), got {self.num_segments}')
        if not 0.001 <= self.map_voxel_size <= 10:
            raise ValueError(f'map_voxel_size must be in [0.001, 10] metres, got '
                             f'{self.map_voxel_size}')
        if not 1 <= self.map_max_voxels <= MAX_VOXELS:
            raise ValueError(f'map_max_voxels must be in [1, {MAX_VOXELS}], got '
                             f'{self.map_max_voxels}')
        if not 0 <= self.map_features <= MAX_MAP_FEATURES:
            raise ValueError(f'map_features must be in [0, {MAX_MAP_FEATURES}], got '
                             f'{self.map_features}')
        self.operators = [str(o) for o in self.operators if str(o).strip()]
        if self.map_label and self.map_label not in [o.split(':')[-1] for o in self.operators]:
            raise ValueError(f'map_label {self.map_label!r} is not one of the operators '
                             f'{self.operators}')
        if not 0 < self.max_pose_gap <= 60:
            raise ValueError(f'max_pose_gap must be in (0, 60] seconds, got {self.max_pose_gap}')

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Field name -> default value."""
        return {f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default
                for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> 'PipelineConfig':
        """Build from a mapping that may hold other keys (they are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})
