"""The sliding-window perception pipeline (no ROS imports): frames in, per-view outputs out.

Names are imported on first use (PEP 562), so the settings and the output table
(``mvfm_ros.pipeline.config``, ``mvfm_ros.pipeline.outputs``) load without PyTorch: the
console scripts answer ``--help`` at once.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    'AsyncPipeline': 'worker',
    'Engine': 'engine',
    'Frame': 'frame',
    'FrameError': 'frame',
    'Pipeline': 'pipeline',
    'PipelineConfig': 'config',
    'PROBLEMS': 'frame',
    'PipelineStats': 'pipeline',
    'PoseBuffer': 'poses',
    'PoseLookupError': 'poses',
    'ViewResult': 'frame',
    'WindowResult': 'frame',
    'demo_model_path': 'engine',
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    """Import public names on first use."""
    if name in _LAZY:
        return getattr(importlib.import_module(f'mvfm_ros.pipeline.{_LAZY[name]}'), name)
    raise AttributeError(f"module 'mvfm_ros.pipeline' has no attribute '{name}'")
