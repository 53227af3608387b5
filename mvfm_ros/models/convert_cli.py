"""``mvfm-convert``: an official MVFM checkpoint (the paper's released models) to this package's.

Reads a checkpoint of the public code (github leosegre/Multi-View-Foundation-Models: the
``Leoseg/dinov2_reg`` or ``Leoseg/dinov2_reg_no_plucker`` models, a ``.pth`` file or the folder
holding it), checks that every tensor maps once onto the package's model, and writes a
safetensors checkpoint with the backbone included, which the node (``checkpoint:``),
``mvfm-bag``, ``mvfm-eval`` and ``mvfm-bench`` load like any other.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line interface."""
    parser = argparse.ArgumentParser(prog='mvfm-convert', description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('checkpoint', help='official checkpoint file (.pth) or its folder')
    parser.add_argument('output', help='converted checkpoint to write (.safetensors)')
    parser.add_argument('--family', help='released family, dinov2_reg or '
                        'dinov2_reg_no_plucker (default: recognised from the tensors)')
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    from mvfm_ros.models.checkpoint import backbone_fingerprint
    from mvfm_ros.models.official import OfficialCheckpointError, convert, read_state_dict

    try:
        state = read_state_dict(args.checkpoint)
        model = convert(state, args.family)
    except (OfficialCheckpointError, FileNotFoundError) as err:
        print(f'mvfm-convert: error: {err}', file=sys.stderr)
        return 2
    model.weights_source = f'official:{Path(args.checkpoint).name}'
    model.save(args.output, include_backbone=True)
    print(f'{len(state)} tensors of {args.checkpoint} converted to {args.output}: '
          f'{model.config.backbone}, backbone fingerprint '
          f'{backbone_fingerprint(model.backbone_state_dict())[:16]}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
