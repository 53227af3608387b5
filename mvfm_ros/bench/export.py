"""ONNX export of the multi-view model and its check with onnxruntime (``mvfm-export``).

See :mod:`mvfm_ros.bench.export_cli` for the graph's inputs and outputs and the Jetson notes.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mvfm_ros.models.mvfm import MultiViewModel

TOLERANCE = 1e-3  # max |onnx - torch| relative to the largest |torch| feature value


class ExportedModel(nn.Module):
    """Forward of :class:`MultiViewModel` (plus normals) with tensors only, for export."""

    def __init__(self, model: MultiViewModel) -> None:
        """Wrap ``model``."""
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, intrinsics: torch.Tensor,
                cam_to_world: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Return features ``(1, V, C, h, w)`` and, with a normal head, ``(1, V, 3, H, W)``."""
        feats = self.model(images, intrinsics, cam_to_world)
        if self.model.normal_head is None:
            return (feats,)
        return feats, self.model.normals(feats, tuple(images.shape[-2:]))


def example_inputs(views: int, size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    """Deterministic example window: random images, a plausible K, cameras on a line."""
    h, w = size
    g = torch.Generator().manual_seed(0)
    images = torch.rand(1, views, 3, h, w, generator=g)
    k = torch.tensor([[0.8 * w, 0, (w - 1) / 2], [0, 0.8 * w, (h - 1) / 2], [0, 0, 1.0]])
    poses = torch.eye(4).repeat(1, views, 1, 1)
    poses[0, :, 0, 3] = torch.arange(views) * 0.25
    return images, k.expand(1, views, 3, 3).clone(), poses


def export(model: MultiViewModel, path: Path, views: int, size: tuple[int, int],
           opset: int = 18) -> list[str]:
    """Write the ONNX file; returns the output names.

    The position embedding is resampled once here to the export size (timm's
    ``set_input_size``), so the graph holds no resampling (antialiased bicubic has no ONNX op).
    """
    model = copy.deepcopy(model).eval()
    backbone = model.trunk.model
    if hasattr(backbone, 'set_input_size'):
        backbone.set_input_size(img_size=size)
    wrapper = ExportedModel(model)
    inputs = example_inputs(views, size)
    names = ['features'] + (['normals'] if model.normal_head is not None else [])
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(wrapper, inputs, str(path), input_names=['images', 'intrinsics',
                                                                   'cam_to_world'],
                          output_names=names, opset_version=opset, dynamo=False)
    return names


def check(model: MultiViewModel, path: Path, views: int, size: tuple[int, int],
          ) -> dict[str, float]:
    """Run the ONNX file with onnxruntime and compare it with PyTorch on fresh inputs."""
    import onnxruntime

    images, k, poses = example_inputs(views, size)
    images = torch.rand(images.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ExportedModel(model.eval())(images, k, poses)
    session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    got = session.run(None, {'images': images.numpy(), 'intrinsics': k.numpy(),
                             'cam_to_world': poses.numpy()})
    out = {}
    for name, ref, value in zip(('features', 'normals'), expected, got):
        ref = ref.numpy()
        scale = float(np.abs(ref).max())
        out[f'{name}_max_abs_diff'] = float(np.abs(ref - value).max())
        out[f'{name}_relative_diff'] = out[f'{name}_max_abs_diff'] / max(scale, 1e-12)
    return out
