"""Training: a tiny CPU run lowers the loss; an interrupted run resumes to the same state."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from mvfm_ros import load_model
from mvfm_ros.train.cli import main as train_main
from mvfm_ros.train.config import TrainConfig
from mvfm_ros.train.state import MODEL_FILE, STATE_FILE
from mvfm_ros.train.trainer import Trainer


def tiny_config(output: Path, **overrides) -> TrainConfig:
    data = dict(
        backbone='vit_small_patch14_reg4_dinov2', pretrained=False, img_size=56,
        backbone_kwargs=dict(depth=2, embed_dim=32, num_heads=2),
        adapter=dict(adapter_heads=2, ray_dim=8),
        data=dict(source='procedural', num_views=2, height=56, width=56, seed=5),
        steps=6, batch_size=2, lr=3e-3, matches_per_sample=32, log_every=1,
        checkpoint_every=3, output=str(output))
    data.update(overrides)
    return TrainConfig.from_dict(data)


def test_tiny_run_lowers_the_loss(tmp_path: Path) -> None:
    torch.manual_seed(0)
    trainer = Trainer(tiny_config(tmp_path, steps=12))
    batches = [trainer.batch(s) for s in range(3)]

    def mean_loss() -> float:
        with torch.no_grad():
            return sum(float(trainer.losses(b)['corr']) for b in batches) / len(batches)

    before = mean_loss()
    trainer.config.steps = 12
    # Train on the same three batches repeatedly: the loss on them must go down.
    trainer.batch = lambda step, _b=batches: _b[step % 3]
    trainer.fit()
    after = mean_loss()
    assert after < 0.9 * before, (before, after)
    assert (tmp_path / MODEL_FILE).is_file() and (tmp_path / 'log.jsonl').is_file()
    model = load_model(tmp_path / MODEL_FILE)
    for key, value in trainer.model.trainable_state_dict().items():
        assert torch.equal(model.trainable_state_dict()[key], value), key


def test_interrupted_run_resumes_to_the_same_state(tmp_path: Path) -> None:
    straight = Trainer(tiny_config(tmp_path / 'a'))
    straight.fit()
    first = Trainer(tiny_config(tmp_path / 'b'))
    first.fit(steps=3)  # "interrupted" after the checkpoint at step 3
    assert (tmp_path / 'b' / STATE_FILE).is_file()
    resumed = Trainer(tiny_config(tmp_path / 'b'))
    resumed.fit(resume=True)
    assert resumed.step == 6
    for key, value in straight.model.trainable_state_dict().items():
        assert torch.equal(resumed.model.trainable_state_dict()[key], value), key
    opt_a, opt_b = straight.optimizer.state_dict(), resumed.optimizer.state_dict()
    for index, state in opt_a['state'].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(
                opt_b['state'][index][name])), (index, name)


def test_cli_and_config_errors(tmp_path: Path, capsys) -> None:
    cfg = tiny_config(tmp_path / 'run', steps=2).to_dict()
    path = tmp_path / 'train.yaml'
    path.write_text(yaml.safe_dump(cfg))
    assert train_main([str(path)]) == 0
    assert 'steps 1..2' in capsys.readouterr().out
    path.write_text(yaml.safe_dump({**cfg, 'learning_rate': 1.0}))
    with pytest.raises(ValueError, match='learning_rate'):
        TrainConfig.from_yaml(path)
    with pytest.raises(ValueError, match='precision'):
        Trainer(tiny_config(tmp_path, precision='fp8'))


def test_shipped_training_config_parses() -> None:
    config = TrainConfig.from_yaml(Path(__file__).resolve().parents[1] / 'config' /
                                   'train_dinov2_vits14.yaml')
    assert config.temperature == 0.02 and config.reg_weight == 0.1 and config.batch_size == 4
    assert config.data.num_views == 4 and config.img_size == 518
    # Every demo-model stage parses too (unknown keys would be an error).
    for path in sorted((Path(__file__).resolve().parents[1] / 'config' / 'demo').glob('*.yaml')):
        TrainConfig.from_yaml(path)
    robot = TrainConfig.from_yaml(path.with_name('adapters_robot_more.yaml'))
    assert robot.adapter['pose_conditioning'] == 'metric' and robot.data.motions


def test_torchrun_ddp_on_cpu(tmp_path: Path) -> None:
    """Two processes under torchrun (gloo backend) train and write one checkpoint."""
    import subprocess
    import sys

    cfg = tiny_config(tmp_path / 'ddp', steps=2, batch_size=1).to_dict()
    path = tmp_path / 'ddp.yaml'
    path.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node',
           '2', '-m', 'mvfm_ros.train.cli', str(path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'steps 1..2' in result.stdout
    assert load_model(tmp_path / 'ddp' / MODEL_FILE).config.backbone == cfg['backbone']


def test_a_killed_run_leaves_a_marked_checkpoint_and_resumes_with_a_clean_log(
        tmp_path: Path) -> None:
    import json

    from mvfm_ros.models.checkpoint import read_checkpoint
    from mvfm_ros.train.state import LATEST_FILE

    class Killed(Exception):
        pass

    config = tiny_config(tmp_path, checkpoint_every=100, checkpoint_minutes=0.0)
    first = Trainer(config)
    original = first.train_step

    def dies_at_step_5():
        if first.step == 4:
            raise Killed
        return original()

    first.train_step = dies_at_step_5
    with pytest.raises(Killed):
        first.fit()
    # Checkpointed by wall time (every step here), long before checkpoint_every.
    assert not (tmp_path / MODEL_FILE).exists()
    metadata, _ = read_checkpoint(tmp_path / LATEST_FILE)
    assert (metadata['training_final'], metadata['training_step']) == ('False', '4')
    resumed = Trainer(config)
    resumed.fit(resume=True)
    steps = [json.loads(line)['step'] for line in
             (tmp_path / 'log.jsonl').read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]  # no step logged twice
    metadata, _ = read_checkpoint(tmp_path / MODEL_FILE)
    assert (metadata['training_final'], metadata['training_step']) == ('True', '6')
    assert not (tmp_path / LATEST_FILE).exists()


def test_cross_window_loss_is_zero_only_for_identical_features() -> None:
    from mvfm_ros.train.losses import cross_window_loss

    feats = torch.randn(2, 3, 16, 4, 5)
    assert float(cross_window_loss(feats, feats.clone())) == pytest.approx(0.0, abs=1e-6)
    assert float(cross_window_loss(feats, 3.0 * feats)) == pytest.approx(0.0, abs=1e-6)
    other = feats + 0.5 * torch.randn_like(feats)
    assert float(cross_window_loss(feats, other)) > 0.01


def test_robot_streams_train_two_overlapping_windows_with_the_cross_term(tmp_path) -> None:
    config = tiny_config(tmp_path, steps=2, cross_window_weight=1.0,
                         adapter=dict(adapter_heads=2, ray_dim=8, pose_conditioning='metric'),
                         data=dict(source='procedural', height=56, width=56, seed=5, pool=2,
                                   motions=['creep', 'stereo'], min_views=2, max_views=4))
    trainer = Trainer(config)
    for step in range(6):
        win_a, win_b = trainer.windows(step)
        # The node's sliding window seen twice: same size, shifted, sharing views.
        assert len(win_a) == len(win_b) and 2 <= len(win_a) <= 4
        assert win_a[0] == 0 and 0 < win_b[0] < len(win_a) and win_b[-1] <= 4
    batch = trainer.batch(0)
    win_a, win_b = trainer.windows(0)
    assert batch['images'].shape[1] == len(set(win_a) | set(win_b))
    parts = trainer.losses(batch)
    assert {'corr', 'reg', 'cross'} <= set(parts) and float(parts['cross']) >= 0
    trainer.fit()  # and it trains
    with pytest.raises(ValueError, match='motions'):
        tiny_config(tmp_path, data=dict(motions=['teleport']))


def test_fine_tuning_starts_from_a_checkpoint_and_may_switch_to_metric(tmp_path) -> None:
    first = Trainer(tiny_config(tmp_path / 'a', steps=1))
    first.fit()
    config = tiny_config(tmp_path / 'b', init=str(tmp_path / 'a' / MODEL_FILE),
                         adapter=dict(adapter_heads=2, ray_dim=8, pose_conditioning='metric'))
    second = Trainer(config)
    assert second.model.config.pose_conditioning == 'metric'
    for key, value in first.model.trainable_state_dict().items():
        assert torch.equal(second.model.trainable_state_dict()[key], value), key
    with pytest.raises(ValueError, match='adapter_heads'):
        Trainer(tiny_config(tmp_path / 'c', init=str(tmp_path / 'a' / MODEL_FILE),
                            adapter=dict(adapter_heads=4, ray_dim=8)))
