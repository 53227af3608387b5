"""The sliding-window perception pipeline (no ROS imports): frames in, per-view outputs out.

Names are imported on first use (PEP 562), so the settings and the output table
(``mvfm_ros.pipeline.settings``, ``mvfm_ros.pipeline.outputs``) load without PyTorch: the
console scripts answer ``--help`` at once.
"""

from __future__ import annotations

from mvfm_ros._lazy import lazy_getattr

_LAZY = {
    'AsyncPipeline': 'worker',
    'Engine': 'engine',
    'Frame': 'frame',
    'FrameError': 'frame',
    'Pipeline': 'pipeline',
    'PROBLEMS': 'frame',
    'PipelineStats': 'stats',
    'PoseBuffer': 'poses',
    'PoseLookupError': 'poses',
    'Settings': 'settings',
    'SettingsError': 'settings',
    'ViewResult': 'frame',
    'Wanted': 'outputs',
    'Window': 'window',
    'WindowResult': 'frame',
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr('mvfm_ros.pipeline', _LAZY)
