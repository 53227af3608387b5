"""Validation sweep of the label lifting's design and thresholds (docs/results.md).

Runs generated streams of a validation seed (not the held-out 1000) through the node's
pipeline with each variant of :class:`~mvfm_ros.lift.labels.LabelLifter` and of the normal
fusion, and prints consistency / purity / stability (superpixels) and disagreement / error
(normals). Usage: ``python tools/lift_sweep.py [--seed 500] [--streams 6] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# name -> LabelLifter settings (min_similarity, min_similarity_same_view, vote, min_share).
LABEL_VARIANTS = {
    'one threshold 0.85, no vote': (0.85, 0.85, False, 0.5),
    'one threshold 0.75, no vote': (0.75, 0.75, False, 0.5),
    'one threshold 0.85, vote': (0.85, 0.85, True, 0.5),
    'one threshold 0.95, vote': (0.95, 0.95, True, 0.5),
    'same-view 0.93, 0.8, vote (shipped)': (0.8, 0.93, True, 0.5),
    'same-view 0.91, 0.8, vote': (0.8, 0.91, True, 0.5),
    'shipped, link share 0.3': (0.8, 0.93, True, 0.3),
}


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seed', type=int, default=500, help='scene seed of the streams')
    parser.add_argument('--streams', type=int, default=6, help='streams of 12 keyframes')
    parser.add_argument('--json', help='write the results here')
    args = parser.parse_args()
    from mvfm_ros.eval.lifting import evaluate_lifting, procedural_sequences
    from mvfm_ros.models.factory import load_model
    from mvfm_ros.models.loading import demo_model_path
    from mvfm_ros.pipeline.engine import Engine

    engine = Engine(load_model(demo_model_path()), 'cpu')

    def run(operator: str) -> dict:
        streams = procedural_sequences(args.streams, 12, engine.input_size, args.seed)
        return evaluate_lifting(engine, streams)['operators'][operator]

    results = {}
    engine.set_operators(['superpixels'])
    for name, (similarity, same_view, vote, share) in LABEL_VARIANTS.items():
        lifter = engine.lifting.lifters['superpixels']
        lifter.min_similarity, lifter.min_similarity_same_view = similarity, same_view
        lifter.vote, lifter.min_share = vote, share
        results[name] = run('superpixels')
        print(f'{name:40}', json.dumps({k: round(v, 4) for k, v in
                                        results[name]['lifted'].items()}), flush=True)
    print('per view:', json.dumps({k: round(v, 4) for k, v in
                                   results[name]['per_view'].items()}))
    engine.set_operators(['normals'])
    for recursive in (False, True):
        engine.lifting.recursive = recursive
        name = f'normals, fused {"over time" if recursive else "per window"}'
        results[name] = run('normals')
        print(f'{name:40}', json.dumps({k: round(v, 3) for k, v in
                                        results[name]['lifted'].items()}), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + '\n')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
