"""The built-in operators: a classical superpixel segmenter and the model's own normal head."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def superpixels(image: np.ndarray) -> np.ndarray:
    """Felzenszwalb-Huttenlocher superpixels of an ``(H, W, 3)`` uint8 image, ``(H, W)`` ids.

    Ids are arbitrary per image (the hard case for consistency): the same surface gets unrelated
    ids in two views. The minimum size scales with the image (about 1/300 of it).
    """
    from skimage.segmentation import felzenszwalb

    height, width = image.shape[:2]
    return felzenszwalb(image, scale=100, sigma=0.8, min_size=max(height * width // 300, 4))


superpixels.kind = 'labels'


class ModelNormals:
    """Surface normals of one image from the model's normal head on its frozen backbone features.

    A single-view operator (no other view takes part), the per-frame normals the lifting makes
    consistent. Costs one backbone pass per keyframe.
    """

    kind = 'normals'

    def __init__(self, model: Any, device: torch.device) -> None:
        """Keep the model (it must have a normal head)."""
        if model.normal_head is None:
            raise ValueError("operator 'normals' needs a model with a normal head; this "
                             'checkpoint has none')
        self.model = model
        self.device = device

    @classmethod
    def from_engine(cls, engine: Any) -> 'ModelNormals':
        """Build on the engine's model."""
        if engine is None:
            raise ValueError("operator 'normals' needs the inference engine's model")
        return cls(engine.model, engine.device)

    @torch.inference_mode()
    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Return ``(H, W, 3)`` float32 unit normals in the optical frame."""
        height, width = image.shape[:2]
        tensor = torch.from_numpy(np.ascontiguousarray(image)).to(self.device)
        tensor = tensor.permute(2, 0, 1)[None, None].float() / 255.0
        feats = self.model.base_features(tensor)
        normals = self.model.normals(feats, (height, width))[0, 0]
        return normals.permute(1, 2, 0).float().cpu().numpy()
