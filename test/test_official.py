"""Converting the paper's released checkpoints (``mvfm-convert``, :mod:`mvfm_ros.models.official`).

The layouts in ``test/data`` are the state-dict names and shapes of the public code's
``DINO3D`` for each released family, written by ``tools/official_check.py`` from that code
(which also checks the converted model's outputs against the official model's; see
docs/results.md). Here a checkpoint of that layout with random values is converted without the
official code: every tensor must land where it belongs, once.
"""

import json
import pickle
from pathlib import Path

import pytest
import torch

from mvfm_ros.bench.cli import main as bench_main
from mvfm_ros.models import load_model
from mvfm_ros.models.convert_cli import main as convert_main
from mvfm_ros.models.loading import load_configured_model
from mvfm_ros.models.official import (
    FAMILIES,
    OfficialCheckpointError,
    convert,
    detect_family,
    read_state_dict,
)

DATA = Path(__file__).parent / 'data'
PREFIX = 'vit.base_model.model.'


def official_state(family: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Return a checkpoint of the family's layout with random values (shared adapters equal)."""
    layout = json.loads((DATA / f'official_layout_{family}.json').read_text())
    generator = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(shape, generator=generator) * 0.05 for k, shape in layout.items()}
    for key in layout:  # the public code saves its one shared adapter under every index
        parts = key.split('.')
        if parts[0] == 'spatial_adapters' and int(parts[1]) > 1:
            state[key] = state['.'.join(['spatial_adapters', '1'] + parts[2:])].clone()
    return state


@pytest.fixture(scope='module', params=sorted(FAMILIES))
def converted(request):
    state = official_state(request.param)
    return request.param, state, convert(state)


def test_the_layouts_are_the_families():
    for family in FAMILIES:
        assert detect_family(official_state(family)) == family


def test_every_tensor_lands_where_it_belongs(converted):
    family, state, model = converted
    mine = model.state_dict()
    assert torch.equal(mine['adapters.0.attn.qkv.weight'],
                       state['spatial_adapters.0.spatial_attn.qkv.weight'])
    assert torch.equal(mine['adapters.1.mlp.fc2.bias'], state['spatial_adapters.7.ffn.fc2.bias'])
    assert torch.equal(mine['adapters.1.proj_out.weight'],
                       state['spatial_adapters.3.zero_conv.weight'][..., 0])
    assert torch.equal(mine['trunk.model.blocks.4.attn.qkv.lora_a'],
                       state[PREFIX + 'blocks.4.attn.qkv.lora_A.default.weight'])
    assert torch.equal(mine['trunk.model.blocks.4.attn.qkv.base.weight'],
                       state[PREFIX + 'blocks.4.attn.qkv.base_layer.weight'])
    assert torch.equal(mine['trunk.model.reg_token'], state[PREFIX + 'register_tokens'])
    assert torch.equal(mine['trunk.model.blocks.11.ls2.gamma'],
                       state[PREFIX + 'blocks.11.ls2.gamma'])
    # timm keeps the CLS position separately from the patch positions (its own filter).
    assert torch.equal(mine['trunk.model.pos_embed'][0], state[PREFIX + 'pos_embed'][0, 1:])
    if family == 'dinov2_reg':
        assert torch.equal(mine['ray_embed.proj.weight'], state['plucker_embed.proj.weight'])
        assert model.adapters[0].ray_dim == 128
    else:
        assert model.ray_embed is None and model.adapters[0].ray_dim == 0
    assert model.config.input_size == (518, 518)


def test_converted_model_runs_and_its_adapters_act(converted):
    _, _, model = converted
    images = torch.rand(1, 2, 3, 56, 70, generator=torch.Generator().manual_seed(1))
    k = torch.tensor([[60.0, 0, 35], [0, 60, 28], [0, 0, 1]]).expand(1, 2, 3, 3)
    poses = torch.eye(4).repeat(1, 2, 1, 1)
    poses[0, 1, 0, 3] = 0.2
    with torch.no_grad():
        feats = model(images, k, poses)
        base = model.base_features(images)
    assert feats.shape == (1, 2, 384, 4, 5) and torch.isfinite(feats).all()
    assert (feats - base).abs().max() > 1e-2  # random adapters change the features


@pytest.mark.parametrize('damage, message', [
    (lambda s: s.pop('spatial_adapters.4.ffn.fc1.bias'), 'spatial_adapters.4.ffn.fc1.bias'),
    (lambda s: s.update(extra=torch.zeros(3)), 'not mapped'),
    (lambda s: s['spatial_adapters.5.norm.weight'].add_(1.0), 'differs from adapter 1'),
    (lambda s: s.update({'spatial_adapters.0.ffn.fc1.bias': torch.zeros(7)}), 'wrong shapes'),
    (lambda s: s.pop(PREFIX + 'register_tokens'), 'not a DINOv2-with-registers'),
    (lambda s: s.pop('spatial_adapters.11.norm.weight'), 'spatial_adapters.11.norm.weight'),
])
def test_a_checkpoint_that_does_not_fit_is_refused(damage, message):
    state = official_state('dinov2_reg', seed=2)
    damage(state)
    with pytest.raises(OfficialCheckpointError, match=message):
        convert(state)


class Payload:
    """Unpickling this would call ``print``: a checkpoint must never run code."""

    def __reduce__(self):
        return print, ('code from a checkpoint ran',)


def test_reading_a_checkpoint_runs_no_code(tmp_path):
    path = tmp_path / 'evil.pth'
    path.write_bytes(pickle.dumps({'model': Payload()}, protocol=2))
    with pytest.raises(pickle.UnpicklingError):
        read_state_dict(path)


def test_convert_command_writes_a_checkpoint_every_loader_takes(tmp_path, capsys):
    state = official_state('dinov2_reg_no_plucker', seed=3)
    folder = tmp_path / 'Leoseg_dinov2_reg_no_plucker'
    folder.mkdir()
    torch.save({'model': state, 'n': 5}, folder / 'model_best.pth')
    out = tmp_path / 'mv_dinov2_no_plucker.safetensors'
    assert convert_main([str(folder), str(out)]) == 0
    assert 'backbone fingerprint' in capsys.readouterr().out
    reference = convert(state)
    loaded = load_model(out)  # the backbone travels inside: no weights needed
    configured, line, identity = load_configured_model(checkpoint=str(out))
    assert identity == out and 'vit_small_patch14_reg4_dinov2' in line
    assert configured.config.input_size == (518, 518)
    images = torch.rand(1, 3, 3, 42, 42, generator=torch.Generator().manual_seed(4))
    k = torch.tensor([[40.0, 0, 21], [0, 40, 21], [0, 0, 1]]).expand(1, 3, 3, 3)
    poses = torch.eye(4).repeat(1, 3, 1, 1)
    poses[0, :, 2, 3] = torch.tensor([0.0, 0.1, 0.3])
    with torch.no_grad():
        expected = reference(images, k, poses)
        assert torch.equal(loaded(images, k, poses), expected)
        assert torch.equal(configured(images, k, poses), expected)
    assert convert_main([str(tmp_path / 'missing.pth'), str(tmp_path / 'x.safetensors')]) == 2
    assert 'does not exist' in capsys.readouterr().err

    report = tmp_path / 'bench.json'
    assert bench_main(['--checkpoint', str(out), '--size', '28', '42', '--views', '2',
                       '--repeats', '1', '--warmup', '0', '--camera', '64', '48',
                       '--json', str(report)]) == 0
    results = json.loads(report.read_text())
    assert results['backbone'] == 'vit_small_patch14_reg4_dinov2'
    assert results['checkpoint'] == str(out)
    assert [row['placement'] for row in results['placements']] == ['checkpoint']
    assert results['placements'][0]['adapter_blocks'] == list(range(12))


def test_bench_times_a_released_architecture(tmp_path):
    report = tmp_path / 'bench.json'
    assert bench_main(['--backbone', 'official:dinov2_reg', '--size', '28', '28', '--views',
                       '2', '--repeats', '1', '--warmup', '0', '--placements', 'all',
                       '--camera', '64', '48', '--json', str(report)]) == 0
    row = json.loads(report.read_text())['placements'][0]
    assert row['adapter_dim'] == 384 + 128  # the official adapter reads tokens and rays
    with pytest.raises(ValueError, match='released families'):
        bench_main(['--backbone', 'official:clip', '--size', '28', '28'])
