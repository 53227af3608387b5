"""Lazy package attributes (PEP 562), so imports stay free of PyTorch until it is needed.

``import mvfm_ros`` and the console scripts' ``--help`` load no PyTorch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_getattr(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """Return a module ``__getattr__`` importing ``name`` from ``package.<names[name]>``."""
    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(f'{package}.{names[name]}'), name)
        raise AttributeError(f"module '{package}' has no attribute '{name}'")
    return __getattr__
