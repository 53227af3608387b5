"""``mvfm-train``: train multi-view adapters from a YAML config."""

from __future__ import annotations

import argparse
import logging


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line interface (also checked against the README)."""
    parser = argparse.ArgumentParser(prog='mvfm-train', description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('config',
                        help='YAML training config (see config/train_dinov2_vits14.yaml)')
    parser.add_argument('--steps', type=int, help='override config steps')
    parser.add_argument('--output', help='override config output folder')
    parser.add_argument('--resume', action='store_true',
                        help='continue from OUTPUT/train_state.safetensors if present')
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    import torch  # after parsing: --help answers without loading PyTorch

    from mvfm_ros.train.config import TrainConfig
    from mvfm_ros.train.state import MODEL_FILE
    from mvfm_ros.train.trainer import Trainer

    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    config = TrainConfig.from_yaml(args.config, steps=args.steps, output=args.output)
    trainer = Trainer(config)
    try:
        history = trainer.fit(resume=args.resume)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if history and trainer.rank == 0:
        first, last = history[0], history[-1]
        print(f"steps {first['step']}..{last['step']}: loss {first['loss']:.4f} -> "
              f"{last['loss']:.4f}; model: {config.output}/{MODEL_FILE}")
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
