"""Safetensors checkpoints: trainable weights, the model configuration, and a backbone fingerprint.

Layout: tensors ``trainable/<name>`` (adapters, ray embedding, LoRA, heads) and, when the
backbone cannot be rebuilt from elsewhere (random init, project-trained demo backbones),
``backbone/<timm name>``. The metadata holds the JSON config and a SHA-256 fingerprint of the
frozen backbone weights, so adapters are never silently attached to weights they were not trained
on.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mvfm_ros.models.config import MVFMConfig

FORMAT = 'mvfm_ros.checkpoint'
FORMAT_VERSION = '1'


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model or backbone it is being loaded into."""


def backbone_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, shapes, dtypes and bytes of a backbone state dict."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f'{name}|{tuple(tensor.shape)}|{tensor.dtype}|'.encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b'')
    return digest.hexdigest()


def write_safetensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike,
                      metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file atomically: a temporary file renamed into place.

    A reader never sees a half-written file, and an interrupted write leaves the old one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + '.tmp')
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp),
              metadata=metadata)
    os.replace(tmp, path)


def save_checkpoint(model: Any, path: str | os.PathLike,
                    include_backbone: bool | None = None,
                    training: dict[str, str] | None = None) -> None:
    """Write ``model``'s checkpoint atomically (a temporary file renamed into place).

    ``training`` adds metadata about the run (``step``, ``steps``, ``final``).
    """
    path = Path(path)
    backbone = model.backbone_state_dict()
    if include_backbone is None:
        include_backbone = model.weights_source == 'random'
    tensors = {f'trainable/{k}': v.detach().cpu().contiguous()
               for k, v in model.trainable_state_dict().items()}
    if include_backbone:
        tensors.update({f'backbone/{k}': v.detach().cpu().contiguous()
                        for k, v in backbone.items()})
    metadata = {
        'format': FORMAT,
        'format_version': FORMAT_VERSION,
        'config': model.config.to_json(),
        'backbone_fingerprint': backbone_fingerprint(backbone),
        'weights_source': model.weights_source,
        'includes_backbone': json.dumps(bool(include_backbone)),
        **{f'training_{k}': str(v) for k, v in (training or {}).items()},
    }
    write_safetensors(tensors, path, metadata)


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Return (metadata, tensors) of a checkpoint, checking its format."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    try:
        with safe_open(str(path), framework='pt') as handle:
            metadata = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise CheckpointMismatchError(
            f"'{path}' is not a readable safetensors file: {err}") from err
    if metadata.get('format') != FORMAT:
        raise CheckpointMismatchError(
            f"'{path}' is not an mvfm_ros checkpoint (metadata format={metadata.get('format')!r})")
    if metadata.get('format_version') != FORMAT_VERSION:
        raise CheckpointMismatchError(
            f"'{path}' has checkpoint format version {metadata.get('format_version')}; this "
            f'mvfm_ros reads version {FORMAT_VERSION}')
    return metadata, tensors


def _section(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def check_fits(model: Any, metadata: dict[str, str], path: str | os.PathLike,
               ) -> None:
    """Raise CheckpointMismatchError unless the checkpoint was made for ``model``'s backbone."""
    saved = MVFMConfig.from_json(metadata['config'])
    mine = model.config
    if saved.backbone.split('.')[0] != mine.backbone.split('.')[0] or (
            saved.backbone_kwargs != mine.backbone_kwargs):
        raise CheckpointMismatchError(
            f"checkpoint '{path}' was trained for backbone '{saved.backbone}' "
            f'{saved.backbone_kwargs or ""}, but this model uses backbone \'{mine.backbone}\' '
            f'{mine.backbone_kwargs or ""}; build the model with the checkpoint\'s backbone '
            '(mvfm_ros.load_model does this) or train adapters for this backbone')
    differing = {name: (getattr(saved, name), getattr(mine, name))
                 for name in sorted(MVFMConfig.option_names())
                 if getattr(saved, name) != getattr(mine, name)}
    if differing:
        raise CheckpointMismatchError(
            f"checkpoint '{path}' has a different adapter layout than this model "
            f'(option: (checkpoint, model) = {differing}); use mvfm_ros.load_model, which '
            'rebuilds the model from the checkpoint configuration')
    fingerprint = backbone_fingerprint(model.backbone_state_dict())
    if metadata['backbone_fingerprint'] != fingerprint:
        raise CheckpointMismatchError(
            f"checkpoint '{path}' was trained on other weights of '{saved.backbone}' "
            f"(trained from {metadata.get('weights_source')}, fingerprint "
            f"{metadata['backbone_fingerprint'][:12]}; these weights from "
            f'{model.weights_source} have {fingerprint[:12]}); adapters only work with the '
            'backbone weights they were trained on')


def load_trainable(model: Any, path: str | os.PathLike) -> None:
    """Load a checkpoint's trainable weights into ``model`` after checking that they fit."""
    metadata, tensors = read_checkpoint(path)
    check_fits(model, metadata, path)
    trainable = _section(tensors, 'trainable/')
    expected = model.trainable_state_dict()
    missing = sorted(set(expected) - set(trainable))
    unexpected = sorted(set(trainable) - set(expected))
    wrong = sorted(k for k in set(expected) & set(trainable)
                   if expected[k].shape != trainable[k].shape)
    if missing or unexpected or wrong:
        raise CheckpointMismatchError(
            f"checkpoint '{path}' has a different adapter layout than this model "
            f'(missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {wrong[:5]}); '
            f'checkpoint config: {metadata["config"]}')
    model.load_state_dict(trainable, strict=False)
