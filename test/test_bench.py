"""ONNX export checked with onnxruntime; the benchmark command's table and JSON."""

from __future__ import annotations

import json

import pytest
from conftest import TINY_ADAPTER, perturb_trainable

from mvfm_ros import build_model
from mvfm_ros.bench.cli import main as bench_main
from mvfm_ros.bench.export import TOLERANCE, check, export
from mvfm_ros.bench.measure import parse_placement

pytest.importorskip('onnxruntime')


@pytest.mark.parametrize('blocks, mode', [(None, 'residual'), ((1,), 'residual'),
                                         ((0, 1), 'side')])
def test_onnx_export_matches_pytorch(tmp_path, blocks, mode) -> None:
    model = build_model('vit_small_patch14_reg4_dinov2', pretrained=False,
                        backbone_kwargs=dict(depth=2, embed_dim=32, num_heads=2),
                        adapter_blocks=blocks, adapter_mode=mode, normal_head=8,
                        **TINY_ADAPTER)
    perturb_trainable(model, scale=0.05)
    path = tmp_path / 'model.onnx'
    names = export(model, path, views=3, size=(28, 42))
    assert names == ['features', 'normals'] and path.stat().st_size > 0
    report = check(model, path, views=3, size=(28, 42))
    assert report['features_relative_diff'] <= TOLERANCE
    assert report['normals_relative_diff'] <= TOLERANCE


def test_placements_parse() -> None:
    assert parse_placement('all', 6) == ('all', None, 'residual')
    assert parse_placement('last:2', 6) == ('last:2', (4, 5), 'residual')
    assert parse_placement('1,3', 6) == ('1,3', (1, 3), 'residual')
    assert parse_placement('head:2', 6) == ('head:2', (5, 5), 'residual')
    assert parse_placement('5,5', 6) == ('5,5', (5, 5), 'residual')
    assert parse_placement('side:1,3,5', 6) == ('side:1,3,5', (1, 3, 5), 'side')
    assert parse_placement('side:last:2', 6) == ('side:last:2', (4, 5), 'side')
    for bad in ('last:9', 'head:0', 'side:side:1'):
        with pytest.raises(ValueError):
            parse_placement(bad, 6)


def test_bench_prints_a_table_and_writes_json(tmp_path, capsys) -> None:
    out = tmp_path / 'bench.json'
    code = bench_main(['--backbone', 'vit_small_patch16_224', '--size', '32', '48',
                       '--views', '3', '--repeats', '2', '--warmup', '1', '--placements',
                       'all', 'head:2', 'side:last:2', '--adapter-dim', '96', '--json',
                       str(out)])
    assert code == 0
    results = json.loads(out.read_text())
    rows = {r['placement']: r for r in results['placements']}
    assert set(rows) == {'all', 'head:2', 'side:last:2'}
    assert rows['head:2']['adapter_blocks'] == [11, 11]
    assert rows['head:2']['adapter_dim'] == 96
    assert rows['side:last:2']['adapter_mode'] == 'side'
    for row in rows.values():
        for key in ('base', 'multiview', 'stream', 'base_1view'):
            assert row[key]['median_ms'] > 0 and row[key]['repeats'] == 2
        assert row['ratios']['multiview_over_base'] > 0
        assert 'overhead_fraction' in row['engine']
    table = capsys.readouterr().out
    assert 'MV/base' in table and 'head:2' in table


def test_the_soak_measures_the_node_process_under_its_launcher() -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from mvfm_ros.bench.soak import node_pid, rss_mb

    # A launcher whose own command line does not name the child, as `ros2 launch` does not
    # name perception_node.
    launcher = subprocess.Popen([sys.executable, '-c', 'import subprocess; '
                                 "subprocess.run(['sle' + 'ep', '30'])"])
    found = None
    try:
        deadline = time.monotonic() + 20
        while found is None and time.monotonic() < deadline:
            try:
                found = node_pid(launcher.pid, 'sleep')
            except RuntimeError:
                time.sleep(0.05)
        assert found is not None and found != launcher.pid
        assert rss_mb(found) < rss_mb(launcher.pid)  # sleep is far smaller than Python
        with pytest.raises(RuntimeError, match='no perception_node process'):
            node_pid(launcher.pid)
    finally:
        if found is not None:
            os.kill(found, signal.SIGKILL)
        launcher.kill()
        launcher.wait()
