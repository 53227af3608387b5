"""``make demo`` / ``mvfm-demo``: the real node, fed the demo bag over ROS 2, outputs collected.

Starts ``perception_node`` (a separate process, autostarted), plays the demo bag's camera,
camera_info, depth and pose topics to it at the recorded rate, collects every output topic like
a downstream planner would, and writes ``demo_output/``: one contact sheet per processed window
(input | feature PCA | normals | segmentation | lifted superpixels, every view), a picture of
correspondences found with base versus multi-view features (scored with the bag's depth), map
pictures, and ``summary.json`` with frame counts, latency and consistency figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mvfm_ros.demo.player import Session, find_demo_bag, play


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line interface (also checked against the README)."""
    parser = argparse.ArgumentParser(prog='mvfm-demo', description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--bag', type=Path, help='bag folder to play (default: the demo bag, '
                        'from this checkout or the installed share/mvfm_ros/demo/bag)')
    parser.add_argument('--output', type=Path, default=Path('demo_output'),
                        help='folder for pictures, summary.json and the node log')
    # The default model with every output, two operators and the map takes about 1 s per
    # keyframe on a 2-core CPU; a quarter of the recorded speed lets it process every keyframe
    # (at 1.0 the node's queue drops most of them, by design).
    parser.add_argument('--rate', type=float, default=0.25, help='playback speed factor')
    parser.add_argument('--timeout', type=float, default=300.0,
                        help='seconds to wait for the node to finish after playback')
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    try:
        args.bag = args.bag or find_demo_bag()
    except FileNotFoundError as err:
        print(f'mvfm-demo: {err}', file=sys.stderr)
        return 2
    if not args.bag.exists():
        print(f'mvfm-demo: bag {args.bag} not found', file=sys.stderr)
        return 2
    args.output.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    session = Session({'input_depth': 50, 'output_depth': 50, 'diagnostics_period': 0.25,
                       'consistency_every': 3}, args.output / 'node.log', sim_time=True)
    print('node: ' + ' '.join(session.command), flush=True)
    try:
        depth, images = play(session, args.bag, args.rate)
        print(f'played {images} images; waiting for the node to finish ...', flush=True)

        def finished() -> bool:
            d = session.diagnostics
            if not d or int(d.get('frames_received', 0)) < images or d.get('queue') != '0':
                return False
            done = int(d.get('windows_processed', 0))
            # Normals come only from models with a normal head; the map comes by period.
            return all(len(session.outputs[t]) >= done for t, o in session.topics.items()
                       if o.per_view or o.scope == 'window') and bool(session.outputs['map'])

        if not session.wait(finished, args.timeout):
            print('mvfm-demo: the node did not finish in time; writing what arrived',
                  file=sys.stderr)
        diagnostics = dict(session.diagnostics)
    finally:
        code = session.close()
    from mvfm_ros.demo.report import write_report

    summary = write_report(session, depth, diagnostics, args.output, images,
                           time.monotonic() - started, code)
    print(json.dumps({k: summary[k] for k in ('images_played', 'keyframes', 'windows',
                                               'latency_s', 'matches_within_8px')}, indent=1))
    print(f'\ndemo output: {args.output.resolve()}/\n  window_*.png  contact sheets '
          f'(input | feature PCA | normals | segmentation | lifted superpixels)\n'
          f'  correspondences.png  base vs multi-view matches\n  map_top.png, map_oblique.png  '
          f"the node's voxel map\n  summary.json  counts, latency, lifting and map\n"
          f"  node.log  the node's log")
    return 0 if summary['windows'] > 0 and code == 0 else 1


if __name__ == '__main__':
    raise SystemExit(main())
