"""``mvfm-bag`` (``ros2 run mvfm_ros process_bag``): run the perception pipeline over a bag.

Reads a ROS 2 bag (MCAP or sqlite3), runs the node's frame assembly and pipeline on it in
recorded order, and writes a bag with the node's output topics (optionally the inputs). The
settings are the node's: the flags for the wiring below are made from the one settings table
(:mod:`mvfm_ros.pipeline.settings`), any other setting is ``--param NAME=VALUE`` or comes from
``--config`` (a node parameter file); a value the node would refuse is refused here the same.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import yaml

from mvfm_ros.pipeline.settings import SCOPE_PIPELINE, Settings, SettingsError, setting_type

LOG = logging.getLogger('mvfm_ros.bag')


def _flag_type(name: str) -> Any:
    """Argparse type of a setting's flag (lists and flags are read as YAML)."""
    kind = setting_type(name)
    return yaml.safe_load if kind in (list, bool) else kind


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line interface."""
    parser = argparse.ArgumentParser(prog='mvfm-bag', description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('input', help='input bag (folder with metadata.yaml, MCAP or sqlite3)')
    parser.add_argument('output', help='output bag folder (must not exist)')
    parser.add_argument('--image-topic', default='/{camera}/image',
                        help='sensor_msgs/Image topic ({camera}: each camera of --cameras)')
    parser.add_argument('--camera-info-topic', default='/{camera}/camera_info',
                        help='sensor_msgs/CameraInfo topic ({camera} as above)')
    parser.add_argument('--depth-topic', default='',
                        help='registered depth (16UC1 mm or 32FC1 m) of the camera ({camera} as '
                        'above): builds the map (mvfm/map) and lifts operators geometrically; '
                        'empty: none')
    defaults = Settings.defaults()
    for name, spec in Settings.specs().items():
        if spec.flag:
            parser.add_argument('--' + name.replace('_', '-'), dest=name, default=defaults[name],
                                type=_flag_type(name), help=spec.help)
    parser.add_argument('--include-inputs', action='store_true',
                        help='copy every input topic to the output bag')
    parser.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap',
                        help='storage format of the output bag')
    parser.add_argument('--ply', default='', help='also write the final map as a PLY file '
                        'here (needs --depth-topic; an existing file only with --overwrite)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace an existing --ply file')
    parser.add_argument('--outputs', nargs='+', metavar='TOPIC',
                        help='output topics to write (names under the namespace, e.g. features '
                        'window); default: all')
    parser.add_argument('--config', help='node parameter file (perception.yaml): the settings '
                        'it holds are used')
    parser.add_argument('--param', action='append', default=[], metavar='NAME=VALUE',
                        help='any setting, e.g. --param window_size=6 (repeatable)')
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Return the settings: defaults, then ``--config``, then the flags, then ``--param``."""
    values: dict[str, Any] = {}
    if args.config:
        data = yaml.safe_load(Path(args.config).read_text()) or {}
        for node_params in data.values():
            values.update((node_params or {}).get('ros__parameters', {}))
    specs = Settings.specs()
    values = {k: v for k, v in values.items()
              if k in specs and specs[k].scope == SCOPE_PIPELINE}  # node wiring is ignored
    defaults = Settings.defaults()
    for name, spec in specs.items():
        if spec.flag and getattr(args, name) != defaults[name]:
            values[name] = getattr(args, name)
    for item in args.param:
        name, sep, value = item.partition('=')
        if not sep:
            raise SettingsError(f"--param needs NAME=VALUE, got '{item}'")
        if name not in specs:
            raise SettingsError(f"unknown setting '{name}'; known: {sorted(specs)}")
        values[name] = yaml.safe_load(value)
    return Settings.from_values(values)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    args = build_parser().parse_args(argv)
    from mvfm_ros.messages.bag import BagError, BagOptions, ProcessingError, process_bag

    try:
        options = BagOptions(settings_from_args(args), args.image_topic, args.camera_info_topic,
                             args.depth_topic, args.include_inputs, args.storage, args.ply,
                             args.overwrite, args.outputs)
        report = process_bag(Path(args.input), Path(args.output), options)
    except (BagError, ProcessingError, SettingsError, FileNotFoundError, ValueError,
            RuntimeError) as err:
        print(f'mvfm-bag: error: {err}', file=sys.stderr)
        return 2
    stats = report.stats
    print(f'{report.images} images, {int(stats.get("keyframes", 0))} keyframes, '
          f'{report.results} outputs written to {args.output}; problems: '
          f'{dict(report.skipped) or "none"}; model time per window p50 '
          f'{stats.get("inference_p50_s", float("nan")) * 1000:.1f} ms'
          + (f'; map: {report.map_voxels} voxels' if args.depth_topic else ''))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
