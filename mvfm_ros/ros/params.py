"""Every parameter of the perception node, with its default and meaning, in one table.

Pipeline parameters come from :class:`mvfm_ros.pipeline.config.PipelineConfig` (their defaults
live there); the rest are about ROS wiring. The node declares exactly these, the README's table
and ``config/perception.yaml`` are checked against them by the tests.
"""

from __future__ import annotations

import re
from typing import Any

from mvfm_ros.pipeline.config import PipelineConfig

POSE_SOURCES = ('tf', 'topic')
POSE_TYPES = ('pose', 'odometry')
RELIABILITIES = ('best_effort', 'reliable')

ROS_PARAMETERS: dict[str, tuple[Any, str]] = {
    'cameras': (['camera'], 'camera names; camera C reads C/image and C/camera_info (remap '
                'them); with several cameras outputs go to mvfm/C/...'),
    'pose_source': ('tf', 'tf: look up world_frame <- image frame_id at the image stamp; '
                    'topic: interpolate pose_topic to the image stamp'),
    'pose_topic': ('pose', 'pose of the camera optical frame in world_frame (pose_source: topic)'),
    'pose_type': ('pose', 'message type on pose_topic: pose (PoseStamped) or odometry '
                  '(Odometry)'),
    'world_frame': ('map', 'fixed frame the poses are expressed in'),
    'tf_timeout': (0.5, 'seconds to wait for a pose (TF or topic) covering an image stamp'),
    'prompt_topic': ('/clicked_point', 'PointStamped selecting an object to segment in every '
                     'view (RViz Publish Point)'),
    'output_namespace': ('mvfm', 'prefix of the output topics'),
    'input_reliability': ('auto', 'QoS reliability of the input subscriptions: auto matches '
                          'the publishers (reliable when all offer it, so no frame is lost), '
                          'best_effort or reliable'),
    'input_depth': (5, 'QoS history depth of the input subscriptions'),
    'output_reliability': ('reliable', 'QoS reliability of the output publishers'),
    'output_depth': (5, 'QoS history depth of the output publishers'),
    'diagnostics_period': (1.0, 'seconds between /diagnostics messages'),
    'log_throttle': (5.0, 'seconds between repeats of the same warning'),
    'use_depth': (False, 'subscribe to depth (C/depth in a rig): registered 16UC1 mm or 32FC1 m, '
                  'same stamp as the image; feeds mvfm/map and geometric lifting'),
    'depth_tolerance': (0.01, 'seconds between an image stamp and its depth stamp'),
    'map_period': (1.0, 'seconds between mvfm/map messages (0: never)'),
    'autostart': (False, 'configure and activate on start-up (the launch file sets true)'),
}

PIPELINE_DESCRIPTIONS: dict[str, str] = {
    'window_size': 'views per multi-view window, all cameras together (2 to 32)',
    'min_translation': 'metres of camera motion that make a new keyframe',
    'min_rotation_deg': 'degrees of camera rotation that make a new keyframe',
    'max_interval': 'seconds after which a frame is a keyframe anyway (0: never)',
    'queue_size': 'keyframes waiting for inference (1 to 64); when full the oldest is dropped',
    'input_height': 'model input height (0: the size the model was trained at)',
    'input_width': 'model input width (0: the size the model was trained at)',
    'device': 'auto, cpu, cuda or cuda:N (a GPU that is absent fails configure)',
    'precision': 'auto (bf16 on CUDA, fp32 on CPU), fp32, bf16 or fp16',
    'backbone': 'timm backbone name, used with weights when no checkpoint is given',
    'weights': 'backbone weights file, or hf-cache (empty + empty checkpoint: demo model)',
    'checkpoint': 'adapter checkpoint from mvfm-train (empty + empty weights: demo model)',
    'num_segments': 'k of the joint segmentation (1 to 254)',
    'max_pose_gap': 'seconds between the two poses an image stamp is interpolated between',
    'operators': '2D operators lifted to consistent mvfm/ops/<name>: built-in superpixels, '
                 'normals, an entry point of mvfm_ros.operators or module:function',
    'map_voxel_size': 'voxel edge of mvfm/map in metres (needs use_depth)',
    'map_max_voxels': 'most voxels in mvfm/map; the least recently seen are evicted',
    'map_features': 'feature channels f0..fN per map point (fixed PCA projection; 0: none)',
    'map_label': 'operator whose lifted ids label the map (empty: the first label operator)',
}


def all_parameters() -> dict[str, tuple[Any, str]]:
    """Name -> (default, description) of every node parameter."""
    pipeline = {name: (default, PIPELINE_DESCRIPTIONS[name])
                for name, default in PipelineConfig.defaults().items()}
    return {**pipeline, **ROS_PARAMETERS}


# Numeric bounds of the ROS parameters (inclusive): a zero diagnostics period would spin a core.
BOUNDS: dict[str, tuple[float, float]] = {
    'tf_timeout': (0.0, 30.0),
    'input_depth': (1, 1000),
    'output_depth': (1, 1000),
    'diagnostics_period': (0.05, 3600.0),
    'log_throttle': (0.0, 3600.0),
    'depth_tolerance': (0.0, 1.0),
    'map_period': (0.0, 3600.0),
}
# Parameters that act at once when set on a running node; the others take effect at the next
# configure (deactivate, cleanup, configure, activate), and the node says so when they are set.
LIVE = ('log_throttle',)
NAME = re.compile(r'[A-Za-z][A-Za-z0-9_]*')


def validate(values: dict[str, Any]) -> None:
    """Raise ValueError, with the reason, for parameter values the node cannot run with."""
    if values['pose_source'] not in POSE_SOURCES:
        raise ValueError(f"pose_source must be one of {POSE_SOURCES}, got "
                         f"{values['pose_source']!r}")
    if values['pose_type'] not in POSE_TYPES:
        raise ValueError(f"pose_type must be one of {POSE_TYPES}, got {values['pose_type']!r}")
    for key in ('input_reliability', 'output_reliability'):
        allowed = RELIABILITIES + (('auto',) if key == 'input_reliability' else ())
        if values[key] not in allowed:
            raise ValueError(f'{key} must be one of {allowed}, got {values[key]!r}')
    cameras = list(values['cameras'])
    if not cameras or len(set(cameras)) != len(cameras) or not all(
            NAME.fullmatch(c) for c in cameras):
        raise ValueError(f'cameras must be distinct names (letters, digits, _), got {cameras}')
    for key in ('world_frame', 'pose_topic', 'output_namespace'):
        if not str(values[key]).strip('/'):
            raise ValueError(f'{key} must not be empty')
    for key, (low, high) in BOUNDS.items():
        if not low <= values[key] <= high:
            raise ValueError(f'{key} must be in [{low}, {high}], got {values[key]}')
    PipelineConfig.from_dict(values)  # its own checks


def markdown_table() -> str:
    """Return the README's parameter table (markdown)."""
    lines = ['| parameter | default | meaning |', '|---|---|---|']
    for name, (default, text) in all_parameters().items():
        shown = repr(default) if isinstance(default, str) else str(default).lower() if isinstance(
            default, bool) else str(default)
        lines.append(f'| `{name}` | `{shown}` | {text} |')
    return '\n'.join(lines)
