"""Checkpoints: round trips, and refusal of checkpoints that do not fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from conftest import TINY_ADAPTER, TINY_BACKBONES, intrinsics_for, perturb_trainable, random_rig
from safetensors import safe_open
from safetensors.torch import save_file

from mvfm_ros import build_model, load_model
from mvfm_ros.models import CheckpointMismatchError

NAME, KWARGS, SIZE = TINY_BACKBONES['dinov2_reg']


def _inputs(generator: torch.Generator):
    return (torch.rand(1, 2, 3, *SIZE, generator=generator), intrinsics_for(*SIZE, 2),
            random_rig(2, generator).float())


def _tiny(pretrained=False, seed: int = 0, **options):
    torch.manual_seed(seed)
    return build_model(NAME, pretrained=pretrained, img_size=SIZE[0], backbone_kwargs=KWARGS,
                       **{**TINY_ADAPTER, **options})


def _timm_weights(tmp_path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    net = timm.create_model(NAME, pretrained=False, num_classes=0, img_size=SIZE[0], **KWARGS)
    path = tmp_path / f'backbone{seed}.safetensors'
    save_file(net.state_dict(), str(path))
    return path


def test_round_trip_random_backbone(tmp_path: Path, generator: torch.Generator) -> None:
    model = _tiny(lora_rank=4)
    perturb_trainable(model)
    path = tmp_path / 'ckpt.safetensors'
    model.save(path)
    loaded = load_model(path)
    images, k, poses = _inputs(generator)
    with torch.no_grad():
        assert torch.equal(loaded(images, k, poses), model(images, k, poses))
    assert loaded.config == model.config


def test_round_trip_stores_only_trainable_weights_for_file_backbones(
        tmp_path: Path, generator: torch.Generator) -> None:
    weights = _timm_weights(tmp_path, seed=1)
    model = _tiny(pretrained=weights)
    perturb_trainable(model)
    path = tmp_path / 'adapters.safetensors'
    model.save(path)
    with safe_open(str(path), framework='pt') as handle:
        keys = list(handle.keys())
    assert keys and all(k.startswith('trainable/') for k in keys)
    assert {k[len('trainable/'):] for k in keys} == set(model.trainable_state_dict())
    loaded = load_model(path)  # takes the backbone from the recorded weights file
    images, k, poses = _inputs(generator)
    with torch.no_grad():
        assert torch.equal(loaded(images, k, poses), model(images, k, poses))


def test_checkpoint_for_another_backbone_is_refused(tmp_path: Path) -> None:
    dinov3, kwargs, size = TINY_BACKBONES['dinov3']
    other = build_model(dinov3, pretrained=False, img_size=size[0], backbone_kwargs=kwargs,
                        **TINY_ADAPTER)
    path = tmp_path / 'dinov3.safetensors'
    other.save(path)
    model = _tiny()
    with pytest.raises(CheckpointMismatchError, match='vit_small_patch16_dinov3'):
        model.load_trainable(path)


def test_checkpoint_for_other_weights_or_layout_is_refused(tmp_path: Path) -> None:
    trained = _tiny(pretrained=_timm_weights(tmp_path, seed=1))
    path = tmp_path / 'a.safetensors'
    trained.save(path)
    with pytest.raises(CheckpointMismatchError, match='other weights'):
        load_model(path, pretrained=_timm_weights(tmp_path, seed=2))
    with pytest.raises(CheckpointMismatchError, match='other weights'):
        _tiny(seed=3).load_trainable(path)
    for layout in ({'adapter_blocks': [1]}, {'adapter_dim': 16}):
        other_layout = _tiny(pretrained=tmp_path / 'backbone1.safetensors', **layout)
        with pytest.raises(CheckpointMismatchError, match='adapter layout'):
            other_layout.load_trainable(path)


def test_files_that_are_not_checkpoints_are_refused(tmp_path: Path) -> None:
    plain = tmp_path / 'plain.safetensors'
    save_file({'x': torch.zeros(2)}, str(plain))
    with pytest.raises(CheckpointMismatchError, match='not an mvfm_ros checkpoint'):
        load_model(plain)
    garbage = tmp_path / 'garbage.safetensors'
    garbage.write_bytes(b'not a safetensors file')
    with pytest.raises(CheckpointMismatchError, match='not a readable safetensors'):
        load_model(garbage)
    with pytest.raises(FileNotFoundError, match='does not exist'):
        load_model(tmp_path / 'missing.safetensors')


def test_save_is_atomic_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    model = _tiny()
    path = tmp_path / 'sub' / 'ckpt.safetensors'
    model.save(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ['ckpt.safetensors']
