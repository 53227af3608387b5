"""mvfm_ros: multi-view consistent vision foundation models for ROS 2 robots.

The public API is imported lazily, so ``import mvfm_ros`` stays cheap for tools (launch files,
``--help``) that never touch PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = '0.1.0'

_LAZY = {
    'build_model': 'mvfm_ros.models',
    'load_model': 'mvfm_ros.models',
    'MultiViewModel': 'mvfm_ros.models',
    'MVFMConfig': 'mvfm_ros.models',
}

__all__ = sorted(_LAZY) + ['__version__']


def __getattr__(name: str) -> Any:
    """Import public names on first use (PEP 562)."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mvfm_ros' has no attribute '{name}'")
