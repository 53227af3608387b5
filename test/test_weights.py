"""Real backbone weight loading: local files and an offline Hugging Face cache."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest
import timm
import torch
from conftest import TINY_BACKBONES
from safetensors.torch import save_file

from mvfm_ros import build_model
from mvfm_ros.models import WeightsNotFoundError


def _saved_timm_model(family: str, path: Path, seed: int = 7):
    name, kwargs, size = TINY_BACKBONES[family]
    torch.manual_seed(seed)
    extra = {} if family == 'sam' else {'dynamic_img_size': True}
    net = timm.create_model(name, pretrained=False, num_classes=0, img_size=size[0], **kwargs,
                            **extra).eval()
    if path.suffix == '.safetensors':
        save_file(net.state_dict(), str(path))
    else:
        torch.save({'model': net.state_dict()}, path)
    return net


def _timm_reference(net, family: str, images: torch.Tensor) -> torch.Tensor:
    """Features straight from timm's own forward_features, as (N, C, h, w)."""
    cfg = net.pretrained_cfg
    x = (images - torch.tensor(cfg['mean']).view(1, 3, 1, 1)) / torch.tensor(
        cfg['std']).view(1, 3, 1, 1)
    out = net.forward_features(x)
    if family == 'sam':
        return out
    patches = out[:, net.num_prefix_tokens:]
    h = images.shape[-2] // net.patch_embed.patch_size[0]
    w = images.shape[-1] // net.patch_embed.patch_size[1]
    return patches.transpose(1, 2).reshape(out.shape[0], -1, h, w)


@pytest.mark.parametrize('family,suffix', [('dinov2_reg', '.safetensors'), ('dinov3', '.pth'),
                                           ('clip', '.safetensors'), ('sam', '.safetensors')])
def test_local_weights_give_identical_features(tmp_path: Path, family: str, suffix: str) -> None:
    path = tmp_path / f'weights{suffix}'
    net = _saved_timm_model(family, path)
    name, kwargs, size = TINY_BACKBONES[family]
    torch.manual_seed(99)  # a different seed: only the file can make the weights equal
    model = build_model(name, pretrained=path, img_size=size[0], backbone_kwargs=kwargs,
                        adapter_heads=2, ray_dim=8)
    images = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = _timm_reference(net, family, images)
    got = model.base_features(images[None])[0]
    assert torch.allclose(got, expected, atol=1e-6)


def test_missing_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    name, kwargs, size = TINY_BACKBONES['dinov2_reg']
    missing = tmp_path / 'nope' / 'dinov2.safetensors'
    with pytest.raises(WeightsNotFoundError, match='does not exist') as info:
        build_model(name, pretrained=missing, backbone_kwargs=kwargs)
    assert str(missing) in str(info.value) and 'pretrained=False' in str(info.value)


def test_empty_hf_cache_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_CACHE', str(tmp_path))
    with pytest.raises(WeightsNotFoundError) as info:
        build_model('vit_small_patch14_reg4_dinov2.lvd142m')  # pretrained=True by default
    message = str(info.value)
    assert str(tmp_path) in message
    assert 'timm/vit_small_patch14_reg4_dinov2.lvd142m' in message
    assert 'hf download' in message


def test_weights_from_offline_hf_cache(tmp_path: Path, monkeypatch) -> None:
    name, kwargs, size = TINY_BACKBONES['dinov2_reg']
    repo = tmp_path / 'models--timm--vit_small_patch14_reg4_dinov2.lvd142m'
    snapshot = repo / 'snapshots' / ('a' * 40)
    snapshot.mkdir(parents=True)
    (repo / 'refs').mkdir()
    (repo / 'refs' / 'main').write_text('a' * 40)
    net = _saved_timm_model('dinov2_reg', snapshot / 'model.safetensors')
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_CACHE', str(tmp_path))
    model = build_model(name + '.lvd142m', pretrained=True, img_size=size[0],
                        backbone_kwargs=kwargs, adapter_heads=2, ray_dim=8)
    images = torch.rand(1, 3, *size)
    with torch.no_grad():
        expected = _timm_reference(net, 'dinov2_reg', images)
    assert torch.allclose(model.base_features(images[None])[0], expected, atol=1e-6)


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / 'clip.safetensors'
    _saved_timm_model('clip', path)
    name, kwargs, size = TINY_BACKBONES['dinov2_reg']
    with pytest.raises(ValueError, match='do not fit backbone'):
        build_model(name, pretrained=path, img_size=size[0], backbone_kwargs=kwargs)


def test_unknown_backbone_name() -> None:
    with pytest.raises(ValueError, match='timm has no model'):
        build_model('not_a_vit', pretrained=True)
