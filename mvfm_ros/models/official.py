"""The paper's released models, converted to this package's checkpoints.

The public code (github leosegre/Multi-View-Foundation-Models, MIT) saves ``model.state_dict()``
of its ``DINO3D`` module: the official DINOv2 hub ViT wrapped by ``peft`` LoRA (r 32, alpha 32
on the qkv projections: ``vit.base_model.model.blocks.N.attn.qkv.{base_layer,lora_A.default,
lora_B.default}``), the Plücker patch embedding (``plucker_embed.proj``) and one spatial adapter
after every block (``spatial_adapters.N``; adapters 1..11 are one shared module, saved once per
index). This module maps such a state dict onto :class:`~mvfm_ros.models.mvfm.MultiViewModel`
built with the options that express that architecture (``adapter_style: official``, registers
joined and updated, raw last-block tokens as features, ``pose_conditioning: official``) and
refuses any tensor it would leave unused or use twice. The backbone weights are the ones in the
checkpoint (as the official code loaded them from torch hub), converted to timm's names by
timm's own filter and stored in the converted file, fingerprinted as usual.

Camera conventions of the official code, converted rather than assumed: its dataset gives
world-to-camera poses and COLMAP intrinsics (pixel centres at half-integers); the package takes
camera-to-world poses (OpenCV optical frame, the same axes as COLMAP's) and ROS/OpenCV
intrinsics (pixel centres at integers), which give the same rays. Its rays use view 0's
intrinsics for every view (one camera); the package uses each view's own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mvfm_ros.models.factory import build_model
from mvfm_ros.models.mvfm import MultiViewModel

PREFIX = 'vit.base_model.model.'
# Released families this package expresses: official name -> (timm backbone, model options).
FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    'dinov2_reg': ('vit_small_patch14_reg4_dinov2', dict(ray_dim=128)),
    'dinov2_reg_no_plucker': ('vit_small_patch14_reg4_dinov2', dict(ray_dim=0)),
}
COMMON = dict(adapter_style='official', adapter_blocks=None, share_adapters=True,
              adapter_heads=8, adapter_mlp_ratio=4.0, include_registers=True,
              update_registers=True, output_norm=False, lora_rank=32, lora_alpha=32.0,
              pose_conditioning='official')
IMAGE_SIZE = 518  # the released models' training size (37 x 37 patches)
ADAPTER_PARTS = {'norm.weight': 'norm.weight', 'norm.bias': 'norm.bias',
                 'spatial_attn.qkv.weight': 'attn.qkv.weight',
                 'spatial_attn.qkv.bias': 'attn.qkv.bias',
                 'spatial_attn.proj.weight': 'attn.proj.weight',
                 'spatial_attn.proj.bias': 'attn.proj.bias', 'ffn.fc1.weight': 'mlp.fc1.weight',
                 'ffn.fc1.bias': 'mlp.fc1.bias', 'ffn.fc2.weight': 'mlp.fc2.weight',
                 'ffn.fc2.bias': 'mlp.fc2.bias', 'zero_conv.weight': 'proj_out.weight',
                 'zero_conv.bias': 'proj_out.bias'}


class OfficialCheckpointError(ValueError):
    """An official checkpoint this package cannot convert, with the reason."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Return the state dict of an official checkpoint file, or of the one file in a folder.

    ``.pth``/``.pt``/``.bin`` files are read with ``torch.load(weights_only=True)``, which never
    runs code from the file; a ``{'model': ...}`` training checkpoint gives its model part.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.suffix in ('.pth', '.pt', '.bin', '.safetensors'))
        if len(files) != 1:
            raise OfficialCheckpointError(f"'{path}' holds {[p.name for p in files]}: name the "
                                          'checkpoint file')
        path = files[0]
    if not path.is_file():
        raise FileNotFoundError(f"official checkpoint '{path}' does not exist")
    if path.suffix == '.safetensors':
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location='cpu', weights_only=True)
    return state.get('model', state) if isinstance(state, dict) else state


def detect_family(state: dict[str, torch.Tensor]) -> str:
    """Which released family a state dict is (by its tensors, not its file name)."""
    if PREFIX + 'register_tokens' not in state or PREFIX + 'cls_token' not in state:
        raise OfficialCheckpointError('not a DINOv2-with-registers checkpoint of the official '
                                      'code (no vit.base_model.model.register_tokens): only the '
                                      f'families {sorted(FAMILIES)} are converted; the released '
                                      'DINOv3, CLIP and SAM models are not (yet)')
    width = state[PREFIX + 'cls_token'].shape[-1]
    if width != 384:
        raise OfficialCheckpointError(f'backbone width {width}: only ViT-S/14 (384) released '
                                      'models are converted')
    first = state.get('spatial_adapters.0.norm.weight')
    if first is None:
        raise OfficialCheckpointError('no spatial_adapters.0: not a checkpoint of the official '
                                      'multi-view model')
    # The first adapter reads the tokens and the ray embedding concatenated; without rays the
    # official code still builds (and saves) a ray embedding it never calls.
    return 'dinov2_reg' if first.shape[0] > width else 'dinov2_reg_no_plucker'


def convert(state: dict[str, torch.Tensor], family: str | None = None) -> MultiViewModel:
    """Build the package's model holding exactly the official checkpoint's weights.

    Raises:
        OfficialCheckpointError: a tensor left unused, used twice, of another shape, or shared
            adapters that differ.
    """
    family = family or detect_family(state)
    if family not in FAMILIES:
        raise OfficialCheckpointError(f'family {family!r} is not one of {sorted(FAMILIES)}')
    backbone_name, options = FAMILIES[family]
    model = build_model(backbone_name, pretrained=False, img_size=IMAGE_SIZE,
                        **COMMON, **options)
    used: dict[str, str] = {}

    def take(key: str, target: str) -> torch.Tensor:
        if key not in state:
            raise OfficialCheckpointError(f'the checkpoint has no {key} (for {target})')
        if key in used:
            raise OfficialCheckpointError(f'{key} mapped twice: to {used[key]} and {target}')
        used[key] = target
        return state[key]

    backbone, trainable = {}, {}
    for key in [k for k in state if k.startswith(PREFIX)]:
        name = key[len(PREFIX):]
        found = re.fullmatch(r'(blocks\.\d+\.attn\.qkv)\.(base_layer|lora_A\.default|'
                             r'lora_B\.default)\.(weight|bias)', name)
        if found and found.group(2) != 'base_layer':
            part = 'lora_a' if found.group(2).startswith('lora_A') else 'lora_b'
            trainable[f'trunk.model.{found.group(1)}.{part}'] = take(key, part)
        else:
            backbone[name.replace('.base_layer.', '.')] = take(key, 'backbone')
    for part in ('weight', 'bias'):
        key = f'plucker_embed.proj.{part}'
        if model.ray_embed is not None:
            trainable[f'ray_embed.proj.{part}'] = take(key, 'ray_embed')
        elif key in state:
            take(key, 'nothing: saved but never called by the official no-Plücker model')
    trainable.update(_adapters(state, model.trunk.depth, take))
    unused = sorted(set(state) - set(used))
    if unused:
        raise OfficialCheckpointError(f'{len(unused)} tensors of the checkpoint are not mapped: '
                                      f'{unused[:5]}')
    _load(model, backbone, trainable)
    model.weights_source = 'random'  # the backbone is stored with the adapters
    model.config.input_size = (IMAGE_SIZE, IMAGE_SIZE)
    return model


def _adapters(state: dict[str, torch.Tensor], depth: int,
              take: Callable[[str, str], torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the spatial adapters: 0 on its own, 1..depth-1 onto the one shared module."""
    trainable: dict[str, torch.Tensor] = {}
    adapters = sorted({int(k.split('.')[1]) for k in state if k.startswith('spatial_adapters.')})
    if adapters != list(range(depth)):
        raise OfficialCheckpointError(f'spatial adapters {adapters}: expected one after each '
                                      f'of the {depth} blocks')
    for index in adapters:
        ours = min(index, 1)  # adapters 1..L-1 are one shared module
        for theirs, mine in ADAPTER_PARTS.items():
            value = take(f'spatial_adapters.{index}.{theirs}', f'adapters.{ours}.{mine}')
            if theirs == 'zero_conv.weight':
                value = value[..., 0]  # Conv1d kernel 1 == Linear
            target = f'adapters.{ours}.{mine}'
            if target in trainable and not torch.equal(trainable[target], value):
                raise OfficialCheckpointError(f'spatial adapter {index} differs from adapter 1: '
                                              'the shared adapters of the official model are '
                                              'one module')
            trainable[target] = value
    return trainable


def _load(model: MultiViewModel, backbone: dict[str, torch.Tensor],
          trainable: dict[str, torch.Tensor]) -> None:
    """Load the backbone through timm's filter for official DINOv2, then the rest (strict)."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    model.load_backbone_state_dict(checkpoint_filter_fn(backbone, model.trunk.model))
    expected = model.trainable_state_dict()
    wrong = {k: (tuple(v.shape), tuple(expected[k].shape)) for k, v in trainable.items()
             if k in expected and v.shape != expected[k].shape}
    missing, extra = sorted(set(expected) - set(trainable)), sorted(set(trainable) - set(expected))
    if wrong or missing or extra:
        raise OfficialCheckpointError(f'the converted weights do not fit the model: wrong '
                                      f'shapes {wrong}, missing {missing[:5]}, extra {extra[:5]}')
    model.load_state_dict(trainable, strict=False)
