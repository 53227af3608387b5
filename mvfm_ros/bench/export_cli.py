"""``mvfm-export``: the multi-view model as ONNX, checked against PyTorch with onnxruntime.

The graph takes ``images (1, V, 3, H, W)`` in [0, 1], ``intrinsics (1, V, 3, 3)`` and
``cam_to_world (1, V, 4, 4)`` and returns ``features (1, V, C, h, w)`` (and ``normals`` when the
model has a normal head); V, H and W are fixed at export time, as TensorRT engines prefer.

On a Jetson (JetPack 6, TensorRT 10):
``trtexec --onnx=mvfm.onnx --saveEngine=mvfm.plan --fp16`` (``--bf16`` on Orin with TRT >= 10),
then check the engine against this ONNX file with the same inputs (``polygraphy run mvfm.onnx
--trt --onnxrt``). Keep V, H and W equal to the node's ``window_size`` and input size.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line interface (also checked against the README)."""
    parser = argparse.ArgumentParser(prog='mvfm-export', description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='model checkpoint (default: the shipped demo model)')
    parser.add_argument('--output', type=Path, default=Path('mvfm.onnx'), help='ONNX file')
    parser.add_argument('--views', type=int, default=4, help='views per window in the graph')
    parser.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size (default: the size the model was trained at)')
    parser.add_argument('--opset', type=int, default=18, help='ONNX opset')
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    from mvfm_ros.bench.export import TOLERANCE, check, export
    from mvfm_ros.models.factory import load_model
    from mvfm_ros.models.loading import demo_model_path

    model = load_model(args.checkpoint or demo_model_path())
    size = tuple(args.size or model.config.input_size or (224, 224))
    names = export(model, args.output, args.views, size, args.opset)
    report = check(model, args.output, args.views, size)
    ok = all(v <= TOLERANCE for k, v in report.items() if k.endswith('relative_diff'))
    report.update({'onnx': str(args.output), 'outputs': names, 'views': args.views,
                   'size': list(size), 'tolerance_relative': TOLERANCE, 'passed': ok})
    print(json.dumps(report, indent=2))
    if not ok:
        print('mvfm-export: ONNX output differs from PyTorch beyond the tolerance',
              file=sys.stderr)
    return 0 if ok else 1


if __name__ == '__main__':
    raise SystemExit(main())
