"""``mvfm-eval``: base versus multi-view features (and a naive baseline) on posed windows."""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

from mvfm_ros.pipeline.settings import Settings

LOG = logging.getLogger('mvfm_ros.eval')


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser (also used to document the command)."""
    parser = argparse.ArgumentParser(prog='mvfm-eval', description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('model', help='model checkpoint (.safetensors from mvfm-train or '
                        'mvfm-convert) or a shipped model: mv-dinov2, demo-vit')
    parser.add_argument('--data', default='procedural',
                        choices=('procedural', '7scenes', 'scannet', 'tum'),
                        help='data source (default: generated scenes)')
    parser.add_argument('--path', help='dataset folder for 7scenes/scannet/tum')
    parser.add_argument('--seed', type=int, default=1000,
                        help='procedural scene seed (training uses 0: 1000 is held out)')
    parser.add_argument('--windows', type=int, default=50, help='windows to evaluate at most')
    parser.add_argument('--views', type=int, default=4, help='views per window')
    parser.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size (default: the size the model was trained at, else '
                             '224 224)')
    parser.add_argument('--supersample', type=int, default=1,
                        help='procedural anti-aliasing (match the training data)')
    parser.add_argument('--stride', type=int, default=2, help='RGB-D frame stride in windows')
    parser.add_argument('--min-overlap', type=float, default=0.25,
                        help='least fraction of each view seen by the first (RGB-D windows)')
    parser.add_argument('--matches', type=int, default=128, help='matches per view pair')
    parser.add_argument('--device', default='auto', help='auto, cpu or cuda')
    parser.add_argument('--json', metavar='FILE', help='write the results as JSON')
    parser.add_argument('--plot', metavar='DIR', help='write PNG figures to this folder')
    parser.add_argument('--stream-window', type=int, default=0, metavar='W',
                        help='also score across_window: each view from its own sliding window '
                             'of W views, as the node publishes (use --views > W)')
    parser.add_argument('--stream-anchor', type=int, default=Settings().window_anchor,
                        metavar='K', help="with --stream-window: keep each window's reference "
                        "view K keyframes, as the node's window_anchor setting (0: plain "
                        'sliding)')
    parser.add_argument('--stereo', type=int, default=0, metavar='N',
                        help='also score two_view_stereo on N generated stereo-rig pairs '
                             '(5-25 cm baselines)')
    parser.add_argument('--small-baseline', type=int, default=0, metavar='N',
                        help='also add N generated windows of small motions (creep, hover) '
                             'to small_baseline (view pairs with baseline/depth < 0.05 of any '
                             'window count there too)')
    parser.add_argument('--examples', type=int, default=2,
                        help='windows drawn as contact sheets with --plot')
    parser.add_argument('--lift', type=int, default=0, metavar='N',
                        help='also score lifted operators and the map on N camera streams '
                             '(procedural: generated, 7scenes: stretches of --path), run '
                             'through the pipeline as the node runs them (0: off)')
    parser.add_argument('--lift-frames', type=int, default=12,
                        help='keyframes per stream with --lift')
    parser.add_argument('--lift-operators', nargs='+', default=['superpixels', 'normals'],
                        help='operators scored with --lift')
    parser.add_argument('--lift-features-only', action='store_true',
                        help='lift without depth (feature correspondences; no map)')
    return parser


def format_sections(results: dict) -> str:
    """Human-readable two_view_stereo and small_baseline sections (empty if absent)."""
    lines = []
    for name in ('two_view_stereo', 'small_baseline'):
        if name in results:
            s = results[name]
            lines.append(f"{name}: base {s['base']['loc_err']:.4f}, multiview "
                         f"{s['multiview']['loc_err']:.4f}, rgb {s['rgb']['loc_err']:.4f} (ratio "
                         f"{s['loc_err_ratio_mv_to_base']:.3f}, {s['base']['matches']} matches)")
    return '\n'.join(lines)


def format_lifting(lifting: dict) -> str:
    """Human-readable summary of the lifting scores."""
    lines = [f"lifted operators ({lifting['sequences']} streams of {lifting['frames']} "
             f"keyframes, window {lifting['window']}, depth {lifting['use_depth']}):"]
    for name, scores in lifting['operators'].items():
        for stage in ('per_view', 'lifted'):
            lines.append(f'  {name:12} {stage:9}' + ', '.join(
                f'{k} {v:.3f}' for k, v in scores[stage].items()))
    if 'map' in lifting:
        lines.append('  map: ' + ', '.join(f'{k} {v:.4g}' for k, v in lifting['map'].items()
                                           if v is not None))
    return '\n'.join(lines)


def format_table(results: dict) -> str:
    """Human-readable summary of :meth:`Evaluator.results`."""
    from mvfm_ros.eval.evaluate import METHODS

    corr = results['correspondence']
    keys = ['loc_err'] + [f'recall@{t}px' for t in results['recall_thresholds_px']]
    lines = [f"{'':22}" + ''.join(f'{k:>13}' for k in keys)]
    for method in METHODS:
        row = corr[method]['all']
        lines.append(f'{method:22}' + ''.join(f'{row[k]:13.4f}' for k in keys))
    lines.append('location error by viewpoint angle (deg):')
    for label, row in corr['multiview']['by_angle'].items():
        cells = '  '.join(f"{m} {corr[m]['by_angle'][label]['loc_err']:.4f}" for m in METHODS)
        lines.append(f'  {label:>7} (n={row["matches"]:5d}): {cells}')
    lines.append(f"multi-view / base location error: {results['loc_err_ratio_mv_to_base']:.3f}; "
                 f"cosine to base features: {results['cosine_to_base']:.3f}")
    if 'across_window' in results:
        a = results['across_window']
        lines.append(f"across windows (each view from its own window of {a['window_size']}, as "
                     f"the node publishes): base {a['base']['loc_err']:.4f}, multiview "
                     f"{a['multiview']['loc_err']:.4f} (ratio "
                     f"{a['loc_err_ratio_mv_to_base']:.3f})")
    if 'normals' in results:
        n = results['normals']
        lines.append('normals: ' + ', '.join(f'{k} {v:.3f}' for k, v in n.items()))
    for method, seg in results.get('segmentation', {}).items():
        lines.append(f'segmentation ({method}): ' + ', '.join(
            f'{k} {v:.3f}' for k, v in seg.items()))
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    import torch  # after parsing: --help answers without loading PyTorch
    from tqdm import tqdm

    from mvfm_ros.data.matches import DataConfig, MatchDataset
    from mvfm_ros.eval.evaluate import Evaluator
    from mvfm_ros.models.loading import load_configured_model

    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    device = args.device
    if device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    elif device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('mvfm-eval: --device cuda was asked for but CUDA is not available')
    model, description, checkpoint = load_configured_model(args.model)
    model = model.to(device)
    args.model = str(checkpoint)
    print(f'model: {description}', flush=True)
    size = tuple(args.size or model.config.input_size or (224, 224))
    data = DataConfig(source=args.data, path=args.path, num_views=args.views, height=size[0],
                      width=size[1], seed=args.seed, stride=args.stride,
                      min_overlap=args.min_overlap, supersample=args.supersample)
    try:
        dataset = MatchDataset(data, args.matches)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f'mvfm-eval: {err}') from err
    count = min(args.windows, len(dataset))
    if count == 0 and not (args.lift or args.stereo or args.small_baseline):
        raise SystemExit('mvfm-eval: nothing to evaluate (--windows 0 and no other section)')
    evaluator = Evaluator(model, args.matches, seed=args.seed,
                          stream_window=args.stream_window, stream_anchor=args.stream_anchor)
    outputs = []
    start = time.perf_counter()
    for index in tqdm(range(count), desc='eval'):
        out = evaluator.add(dataset.load(index))
        if len(outputs) < args.examples:
            outputs.append(out)
    extra = robot_windows(args, size) if args.stereo or args.small_baseline else []
    for sample, section in tqdm(extra, desc='stereo/small baseline'):
        evaluator.add(sample, section, main=False)
    results = evaluator.results() if count or extra else {}
    if args.lift:
        results['lifting'] = lifting(model, args, size, device)
    results.update({'model': str(args.model), 'data': vars(data), 'device': device,
                    'seconds': time.perf_counter() - start})
    if count:
        print(format_table(results))
    if format_sections(results):
        print(format_sections(results))
    if 'lifting' in results:
        print(format_lifting(results['lifting']))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2, allow_nan=True) + '\n')
        print(f'results: {args.json}')
    if args.plot:
        write_plots(results, outputs, Path(args.plot))
        print(f'figures: {args.plot}/')
    if not count:
        return 0
    return 0 if not math.isnan(results['correspondence']['base']['all']['loc_err']) else 1


def robot_windows(args: argparse.Namespace, size: tuple[int, int]) -> list:
    """Return generated stereo pairs and small-motion windows (scenes of seed --seed + 1)."""
    from mvfm_ros.data.procedural import SceneConfig, SceneGenerator

    generator = SceneGenerator(args.seed + 1, SceneConfig(*size, supersample=args.supersample))
    out = [(generator.sample(i, 2, 'forward', rig='stereo'), 'two_view_stereo')
           for i in range(args.stereo)]
    out += [(generator.sample(10_000 + i, args.views, ('creep', 'hover')[i % 2]), None)
            for i in range(args.small_baseline)]
    return out


def lifting(model, args: argparse.Namespace, size: tuple[int, int], device: str) -> dict:
    """Run the lifting evaluation of ``--lift`` with the node's engine around ``model``."""
    from mvfm_ros.eval.lifting import evaluate_lifting, procedural_sequences, rgbd_sequences
    from mvfm_ros.pipeline.engine import Engine

    engine = Engine(model, device, input_size=size, checkpoint=args.model)
    engine.set_operators(args.lift_operators)
    if args.data == 'procedural':
        samples = procedural_sequences(args.lift, args.lift_frames, size, args.seed)
    elif args.data == '7scenes':
        samples = rgbd_sequences(args.path, args.lift, args.lift_frames, size)
    else:
        raise SystemExit('mvfm-eval: --lift takes procedural or 7scenes data')
    return evaluate_lifting(engine, samples, window=args.views,
                            use_depth=not args.lift_features_only)


def write_plots(results: dict, outputs: list, folder: Path) -> None:
    """Metric bars, one contact sheet and one match picture per example window."""
    import torch

    from mvfm_ros.data.correspondence import sample_correspondences
    from mvfm_ros.eval.metrics import hard_matches
    from mvfm_ros.geometry.sampling import to_pixels, to_unit
    from mvfm_ros.viz.colors import normal_colors
    from mvfm_ros.viz.figures import (
        plot_error_curves,
        plot_matches,
        plot_metric_bars,
        plot_window,
        window_panels,
    )

    folder.mkdir(parents=True, exist_ok=True)
    plot_metric_bars(results, folder / 'metrics.png')
    plot_error_curves(results, folder / 'baseline_and_gap.png')
    for i, out in enumerate(outputs):
        sample = out.sample
        panels = window_panels({k: out.features[k] for k in ('base', 'multiview')},
                               out.normals, out.segments.get('multiview'), sample.images)
        if sample.normals is not None:
            panels['normals (truth)'] = normal_colors(sample.normals)
        plot_window(sample.images, panels, folder / f'window_{i}.png', sample.name)
        if sample.depth is None:
            continue
        rows = sample_correspondences(sample.depth, sample.intrinsics, sample.cam_to_world, 40,
                                      torch.Generator().manual_seed(i), pairs=[(0, 1)])
        if not len(rows):
            continue
        height, width = sample.image_size
        unit_a = to_unit(rows[:, 1:3], height, width)
        found = {m: to_pixels(hard_matches(out.features[m][0].float().cpu(),
                                           out.features[m][1].float().cpu(), unit_a),
                              height, width) for m in ('base', 'multiview')}
        plot_matches(sample.images[0], sample.images[1], rows[:, 1:3], found, rows[:, 4:6],
                     folder / f'matches_{i}.png')


if __name__ == '__main__':
    raise SystemExit(main())
