"""``mvfm-bench``: time per window of the base backbone, the multi-view model and streaming.

For a backbone, input size, number of views, device and precision, and for each adapter
placement, it measures (median over repeats after warm-up, device synchronised):

- ``base``: the frozen backbone alone on the V views of a window;
- ``multiview``: the multi-view model on the window (the paper's design recomputes every view);
- ``stream``: one new keyframe entering a window whose other V-1 frames are cached (the
  pipeline's engine: per-frame blocks for the new frame only, adapter blocks for the window);
- ``base_1view``: the backbone on one view (what a single-view node would pay per frame);
- ``engine``: the pipeline's step for a new keyframe split in three: the model (resize and
  features), its outputs (normal head, joint PCA and k-means, colour images, arrays) and message
  encoding, each as a fraction of the model time. The live node measures its own overhead
  (conversion, queueing, publishing) and reports it on ``/diagnostics``.

Weights do not change timings, so backbones are built with random weights (no downloads).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mvfm_ros.bench.export import example_inputs
from mvfm_ros.bench.timing import time_call
from mvfm_ros.models.factory import build_model, load_model
from mvfm_ros.models.trunk import join_states
from mvfm_ros.pipeline.engine import Engine, demo_model_path, resolve_device
from mvfm_ros.pipeline.frame import Frame
from mvfm_ros.ros.messages import rosbags_factory, rosbags_typestore

DEMO = 'demo'


def parse_placement(text: str, depth: int) -> tuple[str, tuple[int, ...] | None, str]:
    """Parse a placement of adapters into (name, blocks, adapter mode).

    ``all`` (every block), ``last:K`` (one after each of the last K blocks), ``head:N`` (N
    stacked after the last block) or block indices ``i,j,k`` (a repeated index stacks); any of
    them prefixed with ``side:`` for a side network (``side:1,3,5``).
    """
    mode, body = ('side', text[len('side:'):]) if text.startswith('side:') else ('residual', text)
    if body == 'all':
        return text, None, mode
    kind, _, count = body.partition(':')
    if kind in ('last', 'head'):
        k = int(count)
        if not 0 < k <= depth:
            raise ValueError(f'placement {text}: K must be in 1..{depth}')
        return text, tuple(range(depth - k, depth)) if kind == 'last' else (depth - 1,) * k, mode
    try:
        return text, tuple(int(i) for i in body.split(',')), mode
    except ValueError:
        raise ValueError(f"placement '{text}' is not all, last:K, head:N or i,j,k (optionally "
                         "after 'side:')") from None


def build(args: argparse.Namespace, blocks: tuple[int, ...] | None, mode: str = 'residual'):
    """Build the model to time: the demo architecture or a timm backbone, random weights."""
    if args.backbone == DEMO:
        reference = load_model(demo_model_path())
        cfg = reference.config
        options = {name: getattr(cfg, name) for name in cfg.option_names()}
        options['adapter_blocks'] = blocks
        options['adapter_mode'] = mode
        if args.adapter_dim:
            options['adapter_dim'] = args.adapter_dim
        return build_model(cfg.backbone, pretrained=False, img_size=cfg.img_size,
                           backbone_kwargs=cfg.backbone_kwargs, **options)
    return build_model(args.backbone, pretrained=False, img_size=args.size[0],
                       adapter_blocks=blocks, adapter_mode=mode, adapter_dim=args.adapter_dim)


def measure(args: argparse.Namespace, placement: str, blocks, mode: str,
            device: torch.device) -> dict[str, Any]:
    """Take all timings for one placement."""
    model = build(args, blocks, mode).to(device).eval()
    dtype = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}[args.precision]
    if args.compile:
        model.trunk.model.blocks = torch.compile(model.trunk.model.blocks)
    v, (h, w) = args.views, args.size
    images, intrinsics, poses = (t.to(device) for t in example_inputs(v, (h, w)))

    def autocast():
        if dtype is None:
            return torch.autocast(device.type, enabled=False)
        return torch.autocast(device.type, dtype=dtype)

    @torch.inference_mode()
    def base():
        with autocast():
            model.base_features(images)

    @torch.inference_mode()
    def base_one():
        with autocast():
            model.trunk(images[0, :1])

    @torch.inference_mode()
    def multiview():
        with autocast():
            model(images, intrinsics, poses)

    with torch.inference_mode(), autocast():
        cached = [model.frame_tokens(images[0, i:i + 1]) for i in range(v - 1)]

    @torch.inference_mode()
    def stream():
        with autocast():
            new = model.frame_tokens(images[0, v - 1:])
            model.window_features(join_states([*cached, new]), intrinsics, poses)

    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    out = {'placement': placement, 'adapter_blocks': list(model.adapter_blocks),
           'adapter_dim': model.adapters[0].proj_out.in_features, 'adapter_mode': mode}
    for name, fn in (('base', base), ('multiview', multiview), ('stream', stream),
                     ('base_1view', base_one)):
        out[name] = time_call(fn, device, args.repeats, args.warmup)
    out['peak_memory_mb'] = (torch.cuda.max_memory_allocated(device) / 2**20
                             if device.type == 'cuda'
                             else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out['engine'] = engine_overhead(model, args, device)
    med = {name: out[name]['median_ms'] for name in ('base', 'multiview', 'stream',
                                                     'base_1view')}
    out['ratios'] = {'multiview_over_base': med['multiview'] / med['base'],
                     'stream_over_base_1view': med['stream'] / med['base_1view'],
                     'stream_over_multiview': med['stream'] / med['multiview']}
    return out


def engine_overhead(model, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """Time the pipeline's full window step against the model part of it."""
    engine = Engine(model, device, args.precision, tuple(args.size))
    rng = np.random.default_rng(0)
    h, w = args.size
    k = np.array([[0.8 * w, 0, w / 2], [0, 0.8 * w, h / 2], [0, 0, 1.0]])
    frames = []
    for i in range(args.views):
        pose = np.eye(4)
        pose[0, 3] = 0.2 * i
        frames.append(Frame(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), k, pose, i,
                            uid=i))
    engine.run(frames)
    # The streaming step of the node: the newest frame is new, the others are cached.
    newest = frames[-1]

    def outputs():
        engine._cache.pop(newest.uid, None)
        return engine.run(frames, outputs=[len(frames) - 1])

    build = rosbags_factory(rosbags_typestore())

    def step():  # the window plus every output message the node builds from it
        for _ in build.outputs(outputs(), engine.identity, 'map'):
            pass

    def model_only():
        engine._cache.pop(newest.uid, None)
        engine.features(frames)

    full, run, core = (time_call(fn, device, args.repeats, args.warmup)['median_ms']
                       for fn in (step, outputs, model_only))
    return {'step_ms': full, 'outputs_ms': run, 'model_ms': core,
            'outputs_fraction': (run - core) / core, 'encode_fraction': (full - run) / core,
            'overhead_fraction': (full - core) / core}


def format_table(results: dict[str, Any]) -> str:
    """Format the table printed on screen."""
    head = (f"{results['backbone']} {results['size'][0]}x{results['size'][1]}, "
            f"{results['views']} views, {results['device']} ({results['device_name']}), "
            f"{results['precision']}, median of {results['repeats']} after "
            f"{results['warmup']} warm-up; adapter width "
            f"{results['placements'][0]['adapter_dim'] if results['placements'] else '-'}")
    cols = ('base', 'multiview', 'stream', 'base_1view')
    lines = [head, f"{'placement':14}" + ''.join(f'{c + " ms":>14}' for c in cols)
             + f"{'MV/base':>9}{'stream/1view':>14}{'outputs':>9}{'encode':>8}"]
    for row in results['placements']:
        lines.append(f"{row['placement']:14}" + ''.join(
            f"{row[c]['median_ms']:14.2f}" for c in cols)
            + f"{row['ratios']['multiview_over_base']:9.2f}"
            + f"{row['ratios']['stream_over_base_1view']:14.2f}"
            + f"{100 * row['engine']['outputs_fraction']:8.1f}%"
            + f"{100 * row['engine']['encode_fraction']:7.1f}%")
    return '\n'.join(lines)


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line interface (also checked against the README)."""
    parser = argparse.ArgumentParser(prog='mvfm-bench', description=__doc__.split('\n\n')[0])
    parser.add_argument('--backbone', default=DEMO,
                        help="timm backbone (random weights) or 'demo' (the demo model's)")
    parser.add_argument('--size', type=int, nargs=2, default=(96, 128), metavar=('H', 'W'))
    parser.add_argument('--views', type=int, default=4)
    parser.add_argument('--device', default='auto')
    parser.add_argument('--precision', default='fp32', choices=('fp32', 'bf16', 'fp16'))
    parser.add_argument('--placements', nargs='+', default=['all', 'last:3'],
                        help='adapter placements: all, last:K, head:N or block indices i,j,k; '
                             "prefix 'side:' for a side network (side:1,3,5)")
    parser.add_argument('--adapter-dim', type=int,
                        help='width inside the adapters (default: the backbone width, or the '
                             "demo model's)")
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--compile', action='store_true', help='torch.compile the blocks')
    parser.add_argument('--threads', type=int, help='torch CPU threads')
    parser.add_argument('--json', metavar='FILE', help='also write the results as JSON')
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    depth = build(args, None).trunk.depth
    placements = [parse_placement(p, depth) for p in args.placements]
    results = {
        'backbone': args.backbone, 'size': list(args.size), 'views': args.views,
        'device': str(device), 'precision': args.precision, 'repeats': args.repeats,
        'warmup': args.warmup, 'compile': args.compile,
        'device_name': (torch.cuda.get_device_name(device) if device.type == 'cuda'
                        else f'{platform.processor() or platform.machine()}, '
                             f'{torch.get_num_threads()} threads'),
        'torch': torch.__version__,
        'placements': [measure(args, name, blocks, mode, device)
                       for name, blocks, mode in placements],
    }
    print(format_table(results))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + '\n')
        print(f'results: {args.json}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
