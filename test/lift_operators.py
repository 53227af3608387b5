"""Operators for the tests, imported by ``module:function`` like a user's would be."""

from __future__ import annotations

import numpy as np


def raises(image: np.ndarray) -> np.ndarray:
    """Fail always (an operator with a bug)."""
    raise RuntimeError('broken operator')


def wrong_shape(image: np.ndarray) -> np.ndarray:
    """Return an output that does not cover the image."""
    return np.zeros((3, 3), np.int64)


def brightness(image: np.ndarray) -> np.ndarray:
    """Return the mean intensity per pixel (a float operator)."""
    return image.astype(np.float32).mean(-1)
