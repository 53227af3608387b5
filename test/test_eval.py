"""Normal head, pretraining objective, baseline, colours, the evaluator and mvfm-eval."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_ADAPTER

from mvfm_ros import build_model, load_model
from mvfm_ros.data import SceneConfig, SceneGenerator
from mvfm_ros.eval.baseline import rgb_patch_descriptors
from mvfm_ros.eval.cli import main as eval_main
from mvfm_ros.eval.evaluate import Evaluator
from mvfm_ros.eval.metrics import hard_matches
from mvfm_ros.geometry.sampling import grid_unit_coords, sample_features
from mvfm_ros.models.heads.normals import NormalHead, normal_loss
from mvfm_ros.train.pretrain import augmented_pairs
from mvfm_ros.viz.colors import normal_colors, pca_colors, segment_colors

TINY_VIT = dict(patch_size=8, embed_dim=32, depth=2, num_heads=2)


def test_augmented_pairs_points_see_the_same_image_content(generator) -> None:
    # A smooth image whose colour encodes position: equal colours mean the same source pixel.
    ys, xs = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 64), indexing='ij')
    image = torch.stack((xs, ys, 0.5 * (xs + ys)))[None].repeat(3, 1, 1, 1)
    crops, unit_a, unit_b, valid = augmented_pairs(image, 200, generator, jitter=False)
    assert crops.shape == (6, 3, 48, 64) and valid.float().mean() > 0.2
    for i in range(3):
        ca = sample_features(crops[i], unit_a[i][valid[i]])
        cb = sample_features(crops[3 + i], unit_b[i][valid[i]])
        assert (ca - cb).abs().max() < 0.03
    # Wrong pairing does not agree: the test can fail.
    ca = sample_features(crops[0], unit_a[0][valid[0]])
    cb = sample_features(crops[4], unit_b[0][valid[0]])
    assert (ca - cb).abs().max() > 0.05


def test_normal_head_outputs_unit_normals_and_loss_is_one_minus_cosine() -> None:
    head = NormalHead(16, hidden=8, upscale=2)
    out = head(torch.randn(2, 16, 3, 4), (24, 32))
    assert out.shape == (2, 3, 24, 32)
    assert torch.allclose(out.norm(dim=1), torch.ones(2, 24, 32), atol=1e-5)
    truth = F.normalize(torch.randn(2, 3, 24, 32), dim=1)
    assert normal_loss(truth, truth).item() == pytest.approx(0.0, abs=1e-6)
    assert normal_loss(-truth, truth).item() == pytest.approx(2.0, abs=1e-6)
    truth[:, :, :12] = 0  # unknown pixels are ignored
    assert normal_loss(truth, truth).item() == pytest.approx(0.0, abs=1e-6)


def test_rgb_baseline_matches_a_shifted_image_exactly(generator) -> None:
    image = torch.rand(1, 3, 32, 48, generator=generator)
    shifted = torch.roll(image, shifts=8, dims=3)  # one patch to the right
    da, db = rgb_patch_descriptors(image, 8), rgb_patch_descriptors(shifted, 8)
    assert da.shape == (1, 48, 4, 6)
    assert torch.allclose(da.norm(dim=1), torch.ones(1, 4, 6), atol=1e-5)
    # Patch centres of the first five columns: their shifted copy is inside the image.
    centres = grid_unit_coords(4, 6).reshape(4, 6, 2)[:, :5].reshape(-1, 2)
    found = hard_matches(da[0], db[0], centres)
    step = 2 / 6
    assert torch.allclose(found[:, 0], centres[:, 0] + step, atol=1e-5)


def test_pca_colours_are_shared_across_views_and_deterministic(generator) -> None:
    feats = torch.randn(3, 16, 4, 5, generator=generator)
    feats[2, :, 1, 1] = feats[0, :, 3, 2]  # the same feature in two views
    colours = pca_colors(feats)
    assert colours.shape == (3, 3, 4, 5) and colours.min() >= 0 and colours.max() <= 1
    assert torch.allclose(colours[2, :, 1, 1], colours[0, :, 3, 2])
    assert torch.allclose(pca_colors(-feats), pca_colors(feats), atol=1e-5)  # sign-fixed
    seg = segment_colors(torch.tensor([[0, 1], [1, -1]]))
    assert torch.equal(seg[:, 0, 1], seg[:, 1, 0]) and seg[:, 1, 1].sum() == 0
    assert torch.allclose(normal_colors(torch.tensor([0.0, 0.0, -1.0]).view(3, 1, 1)).flatten(),
                          torch.tensor([0.5, 0.5, 0.0]))


@pytest.fixture(scope='module')
def tiny_samples():
    gen = SceneGenerator(5, SceneConfig(32, 48, supersample=1))
    return [gen.sample(i, 3) for i in range(2)]


def test_untrained_model_scores_exactly_like_its_backbone(tiny_samples) -> None:
    model = build_model('vit_small_patch16_224', pretrained=False, backbone_kwargs=TINY_VIT,
                        normal_head=8, **TINY_ADAPTER)
    evaluator = Evaluator(model, matches_per_pair=32)
    for sample in tiny_samples:
        evaluator.add(sample)
    results = evaluator.results()
    corr = results['correspondence']
    assert corr['base']['all'] == corr['multiview']['all']
    assert corr['base']['all']['matches'] == 2 * 6 * 32 or corr['base']['all']['matches'] > 100
    assert results['loc_err_ratio_mv_to_base'] == pytest.approx(1.0)
    assert results['cosine_to_base'] == pytest.approx(1.0, abs=1e-5)
    assert set(results['normals']) >= {'mean_deg', 'median_deg', 'within_11.25deg'}
    assert set(results['segmentation']) == {'base', 'multiview'}
    assert sum(v['matches'] for v in corr['rgb']['by_angle'].values()) == corr['rgb']['all'][
        'matches']


def test_mvfm_eval_writes_json_and_pictures(tmp_path, capsys) -> None:
    model = build_model('vit_small_patch16_224', pretrained=False, backbone_kwargs=TINY_VIT,
                        normal_head=8, **TINY_ADAPTER)
    model.config.input_size = (32, 48)
    path = tmp_path / 'model.safetensors'
    model.save(path)
    assert load_model(path).config.input_size == (32, 48)
    out = tmp_path / 'eval.json'
    code = eval_main([str(path), '--windows', '2', '--views', '3', '--matches', '16',
                      '--stream-window', '2', '--stereo', '1', '--small-baseline', '1',
                      '--json', str(out), '--plot', str(tmp_path / 'plots')])
    assert code == 0
    results = json.loads(out.read_text())
    assert results['windows'] == 2 and results['data']['height'] == 32
    assert not math.isnan(results['correspondence']['rgb']['all']['loc_err'])
    assert {'across_window', 'two_view_stereo', 'small_baseline'} <= set(results)
    assert set(results['across_window']['by_gap']['multiview']) == {'1', '2'}
    pngs = sorted(p.name for p in (tmp_path / 'plots').glob('*.png'))
    assert pngs == ['baseline_and_gap.png', 'matches_0.png', 'matches_1.png', 'metrics.png',
                    'window_0.png', 'window_1.png']
    assert all((tmp_path / 'plots' / p).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' for p in pngs)
    assert 'multi-view / base location error' in capsys.readouterr().out


def test_shipped_demo_model_halves_the_base_error_on_held_out_scenes() -> None:
    from mvfm_ros.models.loading import demo_model_path

    model = load_model(demo_model_path())
    height, width = model.config.input_size
    generator = SceneGenerator(1000, SceneConfig(height, width, supersample=1))  # held out
    evaluator = Evaluator(model, matches_per_pair=64)
    for index in range(4):
        evaluator.add(generator.sample(index, 4))
    results = evaluator.results()
    corr = results['correspondence']
    assert results['loc_err_ratio_mv_to_base'] <= 0.5, corr
    assert corr['base']['all']['loc_err'] < corr['rgb']['all']['loc_err']
    assert results['cosine_to_base'] > 0.7
    assert results['normals']['median_deg'] < 45


def test_across_window_scores_each_view_from_its_own_window(tiny_samples) -> None:
    """The node's stream: view i comes from the window of views i-W+1..i, not the whole sample."""
    from conftest import perturb_trainable

    from mvfm_ros.eval.evaluate import node_stream_features

    model = build_model('vit_small_patch16_224', pretrained=False, backbone_kwargs=TINY_VIT,
                        **TINY_ADAPTER)
    perturb_trainable(model)
    sample = tiny_samples[0]  # 3 views
    streamed = node_stream_features(model, sample, window_size=2)
    with torch.no_grad():
        def forward(views):
            return model(sample.images[views][None], sample.intrinsics[views][None],
                         sample.cam_to_world[views][None])[0]
        joint = forward([0, 1, 2])
        # View 0 alone, view 1 with 0, view 2 with 1 (not with 0): three different windows.
        assert torch.allclose(streamed[0], forward([0])[0], atol=1e-5)
        assert torch.allclose(streamed[1], forward([0, 1])[1], atol=1e-5)
        assert torch.allclose(streamed[2], forward([1, 2])[1], atol=1e-5)
    assert not torch.allclose(streamed[2], joint[2], atol=1e-3)  # not one window's features
    evaluator = Evaluator(model, matches_per_pair=16, stream_window=2)
    for s in tiny_samples:
        evaluator.add(s)
    across = evaluator.results()['across_window']
    assert across['window_size'] == 2 and across['base']['matches'] > 0
    assert across['multiview']['loc_err'] != evaluator.results()['correspondence'][
        'multiview']['all']['loc_err']
    # An anchored window keeps view 0 as the reference: view 2 is computed with 0, not 1.
    anchored = node_stream_features(model, sample, window_size=2, anchor_span=5)
    with torch.no_grad():
        assert torch.allclose(anchored[2], forward([0, 2])[1], atol=1e-5)
    assert not torch.allclose(anchored[2], streamed[2], atol=1e-3)


def test_stereo_and_small_baseline_sections_take_the_right_pairs() -> None:
    from mvfm_ros.data.procedural import SceneConfig, SceneGenerator
    from mvfm_ros.eval.evaluate import baseline_ratios

    generator = SceneGenerator(3, SceneConfig(48, 64, supersample=1))
    stereo = generator.sample(0, 2, 'forward', rig='stereo', baseline=0.1)
    creep = generator.sample(1, 3, 'creep')
    orbit = generator.sample(2, 3, 'orbit')
    centres = stereo.cam_to_world[:, :3, 3]
    assert float((centres[0] - centres[1]).norm()) == pytest.approx(0.1, abs=1e-4)
    assert float(baseline_ratios(creep)[0, 1]) < 0.05 < float(baseline_ratios(orbit)[0, 2])
    model = build_model('vit_small_patch16_224', pretrained=False, backbone_kwargs=TINY_VIT,
                        **TINY_ADAPTER)
    evaluator = Evaluator(model, matches_per_pair=16)
    evaluator.add(orbit)
    assert 'two_view_stereo' not in evaluator.results()
    evaluator.add(stereo, 'two_view_stereo', main=False)
    evaluator.add(creep, main=False)
    results = evaluator.results()
    # Extra windows count only in their sections and baseline bins, not in the main figure.
    assert results['windows'] == 1
    assert results['two_view_stereo']['base']['matches'] == 32  # both directions of one pair
    assert results['small_baseline']['base']['matches'] > 0
    small = sum(v['matches'] for k, v in results['correspondence']['base']['by_baseline'].items()
                if k in ('0-0.02', '0.02-0.05'))
    assert small == results['small_baseline']['base']['matches']


def test_shipped_demo_model_is_consistent_for_stereo_pairs_and_across_windows() -> None:
    """What a robot meets: a calibrated stereo pair, and keyframes from different windows."""
    from mvfm_ros.models.loading import demo_model_path

    model = load_model(demo_model_path())
    height, width = model.config.input_size
    generator = SceneGenerator(1001, SceneConfig(height, width, supersample=1))  # held out
    evaluator = Evaluator(model, matches_per_pair=64, stream_window=3)
    for index in range(6):
        evaluator.add(generator.sample(index, 2, 'forward', rig='stereo'), 'two_view_stereo',
                      main=False)
    for index in range(3):
        evaluator.add(generator.sample(100 + index, 5))
    results = evaluator.results()
    assert results['two_view_stereo']['loc_err_ratio_mv_to_base'] <= 0.6, results
    assert results['across_window']['loc_err_ratio_mv_to_base'] <= 0.8, results
