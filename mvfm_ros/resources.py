"""Where the package's data files are: this checkout, or an installed ``share/mvfm_ros``.

``pip install .`` puts them under ``<sys.prefix>/share/mvfm_ros``; ``colcon build`` under
``<install prefix>/share/mvfm_ros``, a prefix listed in ``AMENT_PREFIX_PATH`` once sourced.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]


def data_places(relative: str) -> list[Path]:
    """Candidate locations of ``relative`` (e.g. ``msg``), the checkout first."""
    prefixes = [sys.prefix] + [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(
        os.pathsep) if p]
    return [CHECKOUT / relative] + [Path(p) / 'share' / 'mvfm_ros' / relative for p in prefixes]
