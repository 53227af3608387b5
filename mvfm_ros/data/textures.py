"""Real photographs used as textures: the images scikit-image ships (no download needed)."""

from __future__ import annotations

import functools

import numpy as np
import torch

# Bundled with scikit-image (``skimage.data``); others in that module are fetched on demand.
TEXTURE_NAMES = ('astronaut', 'brick', 'camera', 'chelsea', 'coffee', 'coins', 'grass',
                 'gravel', 'horse', 'rocket', 'moon', 'page', 'text', 'immunohistochemistry',
                 'hubble_deep_field', 'retina', 'cell', 'colorwheel', 'clock')


def _to_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.float32)
    elif image.dtype.kind in 'ui':
        image = image.astype(np.float32) / np.iinfo(image.dtype).max
    image = image.astype(np.float32)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


@functools.lru_cache(maxsize=1)
def texture_bank(size: int = 256) -> torch.Tensor:
    """Return the bundled photographs as ``(T, 3, size, size)`` float textures in [0, 1]."""
    import skimage.data
    from skimage.transform import resize

    textures = []
    for name in TEXTURE_NAMES:
        rgb = _to_rgb(getattr(skimage.data, name)())
        side = min(rgb.shape[:2])  # centre square crop, then resize
        top, left = (rgb.shape[0] - side) // 2, (rgb.shape[1] - side) // 2
        square = rgb[top:top + side, left:left + side]
        textures.append(resize(square, (size, size), anti_aliasing=True).astype(np.float32))
    return torch.from_numpy(np.stack(textures)).permute(0, 3, 1, 2).contiguous()
