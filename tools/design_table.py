"""Print the issue 11 design table of docs/results.md from mvfm-eval JSON files.

Usage: ``python tools/design_table.py NAME=PREFIX ...`` where ``PREFIX_procedural.json`` and
``PREFIX_7scenes.json`` were written by the commands in docs/results.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def row(name: str, prefix: str) -> str:
    """One markdown row: every section's multi-view / base ratio, seg. consistency, cosine."""
    gen = json.loads(Path(f'{prefix}_procedural.json').read_text())
    real = json.loads(Path(f'{prefix}_7scenes.json').read_text())
    seg = gen['segmentation']
    within = gen['correspondence']['multiview']['all']['loc_err']
    cells = [f"{gen['loc_err_ratio_mv_to_base']:.3f}",
             f"{gen['across_window']['loc_err_ratio_mv_to_base']:.3f}",
             f"{gen['across_window']['multiview']['loc_err'] / within:.2f}",
             f"{gen['two_view_stereo']['loc_err_ratio_mv_to_base']:.3f}",
             f"{gen['small_baseline']['loc_err_ratio_mv_to_base']:.3f}",
             f"{seg['multiview']['consistency']:.3f} / {seg['base']['consistency']:.3f}",
             f"{gen['cosine_to_base']:.3f}",
             f"{real['loc_err_ratio_mv_to_base']:.3f}",
             f"{real['across_window']['loc_err_ratio_mv_to_base']:.3f}",
             f"{real['small_baseline']['loc_err_ratio_mv_to_base']:.3f}"]
    return f'| {name} | ' + ' | '.join(cells) + ' |'


def main() -> int:
    """Entry point."""
    print('| design | within | across | across / within | stereo | small baseline | '
          'k-means consistency (mv / base) | cosine to base | 7-Scenes within | '
          '7-Scenes across | 7-Scenes small baseline |')
    print('| --- ' * 11 + '|')
    for arg in sys.argv[1:]:
        name, _, prefix = arg.partition('=')
        print(row(name, prefix))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
