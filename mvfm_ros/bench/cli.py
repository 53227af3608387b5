"""``mvfm-bench``: time per window of the base backbone, the multi-view model and streaming.

For a backbone, input size, number of views, device and precision, and for each adapter
placement, it measures (median over repeats after warm-up, device synchronised):

Weights do not change timings: backbones are built with random weights (no downloads), in
the architecture of the demo model, a timm backbone or a released model (``--backbone
official:dinov2_reg``); ``--checkpoint`` times a trained or converted model as it is.

- ``base``: the frozen backbone alone on the V views of a window;
- ``multiview``: the multi-view model on the window (the paper's design recomputes every view);
- ``stream``: one new keyframe entering a window whose other V-1 frames are cached (the
  pipeline's engine: per-frame blocks for the new frame only, adapter blocks for the window);
- ``base_1view``: the backbone on one view (what a single-view node would pay per frame);
- ``engine``: the pipeline's step for a new keyframe split in three, each phase timed in the
  same call: the model (resize and features), its outputs (normal head, joint PCA and k-means,
  colour images, arrays) and building every output message; outputs and messages are given as
  shares of the model's time. The live node measures its own overhead (conversion, queueing,
  publishing) and reports it on ``/diagnostics``.

``--soak MINUTES`` instead runs the live node for that long at camera rate and reports memory,
rates, stalls and pose failures over time (:mod:`mvfm_ros.bench.soak`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mvfm_ros.bench import DEMO


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line interface (also checked against the README)."""
    parser = argparse.ArgumentParser(prog='mvfm-bench', description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--backbone', default=DEMO,
                        help="timm backbone (random weights), 'demo' (the demo model's) or "
                        "'official:FAMILY' (a released model's architecture, e.g. "
                        'official:dinov2_reg, random weights)')
    parser.add_argument('--checkpoint',
                        help='time this trained or converted checkpoint, or a shipped model '
                        '(mv-dinov2, demo-vit), as it is (--backbone and --placements are '
                        'ignored)')
    parser.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'),
                        help="input height and width (default: the checkpoint's training size, "
                        'else 96 128)')
    parser.add_argument('--views', type=int, default=4, help='views per window')
    parser.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N')
    parser.add_argument('--precision', default='fp32', choices=('fp32', 'bf16', 'fp16'),
                        help='autocast precision')
    parser.add_argument('--placements', nargs='+', default=['all', 'last:3'],
                        help='adapter placements: all, last:K, head:N or block indices i,j,k; '
                             "prefix 'side:' for a side network (side:1,3,5)")
    parser.add_argument('--adapter-dim', type=int,
                        help='width inside the adapters (default: the backbone width, or the '
                             "demo model's)")
    parser.add_argument('--repeats', type=int, default=20, help='timed runs (median reported)')
    parser.add_argument('--warmup', type=int, default=3, help='untimed runs first')
    parser.add_argument('--compile', action='store_true', help='torch.compile the blocks')
    parser.add_argument('--threads', type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument('--operators', nargs='*', default=[],
                        help='operators run and lifted in the timed engine step (e.g. '
                        'superpixels normals)')
    parser.add_argument('--camera', type=int, nargs=2, default=(640, 480), metavar=('W', 'H'),
                        help='camera (depth) resolution of the timed map update')
    parser.add_argument('--map-voxel', type=float, default=0.05,
                        help='voxel size in metres of the timed map update')
    parser.add_argument('--json', metavar='FILE', help='also write the results as JSON')
    soak = parser.add_argument_group('soak: the live node at camera rate for a long time')
    soak.add_argument('--soak', type=float, metavar='MINUTES',
                      help='run the soak for this many minutes instead of the timings')
    soak.add_argument('--soak-rate', type=float, default=15.0, help='frames per second')
    soak.add_argument('--soak-output', type=Path, default=Path('bench_output/soak'),
                      help="folder for the node's log")
    soak.add_argument('--bag', type=Path, help='bag whose frames are played (default: the '
                      'demo bag)')
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    if args.soak is not None:
        from mvfm_ros.bench.soak import format_soak, run_soak
        from mvfm_ros.demo.player import find_demo_bag

        results = run_soak(args.soak, args.soak_rate, args.soak_output,
                           args.bag or find_demo_bag(), args.checkpoint or 'demo-vit')
        print(format_soak(results))
    else:
        from mvfm_ros.bench.measure import format_table, run

        results = run(args)
        print(format_table(results))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + '\n')
        print(f'results: {args.json}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
