"""Figures a person wants to look at: metric charts, window contact sheets, matches."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use('Agg')  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from mvfm_ros.viz.colors import normal_colors, pca_colors, segment_colors, to_uint8  # noqa: E402

METHOD_LABELS = {'rgb': 'RGB patches (naive)', 'base': 'base backbone',
                 'multiview': 'multi-view (ours)'}
METHOD_COLOURS = {'rgb': '#9e9e9e', 'base': '#1f77b4', 'multiview': '#d62728'}


def _save(fig: plt.Figure, path: str | os.PathLike) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches='tight')  # keeps legends placed below the axes
    plt.close(fig)


def plot_metric_bars(results: dict, path: str | os.PathLike) -> None:
    """Location error by viewpoint-angle bin and recall at pixel thresholds, per method."""
    corr = results['correspondence']
    methods = [m for m in METHOD_LABELS if m in corr]
    bins = sorted({b for m in methods for b in corr[m]['by_angle']},
                  key=lambda b: float(b.split('-')[0])) + ['all']
    def row(method: str, label: str) -> dict:
        return corr[method]['all'] if label == 'all' else corr[method]['by_angle'].get(label, {})

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        values = [row(method, b).get('loc_err', float('nan')) for b in bins]
        ax1.bar([x + i * width for x in range(len(bins))], values, width,
                label=METHOD_LABELS[method], color=METHOD_COLOURS[method])
        keys = [k for k in corr[method]['all'] if k.startswith('recall@')]
        ax2.bar([x + i * width for x in range(len(keys))],
                [100 * corr[method]['all'][k] for k in keys], width,
                label=METHOD_LABELS[method], color=METHOD_COLOURS[method])
    counts = [row(methods[0], b).get('matches', 0) for b in bins]
    ax1.set_xticks([x + 0.4 - width / 2 for x in range(len(bins))],
                   [f'{b}°\n(n={n})' if b != 'all' else f'all\n(n={n})'
                    for b, n in zip(bins, counts)])
    ax1.set_ylabel('location error, [-1, 1] units (lower is better)')
    ax1.set_title('Hard-argmax match error by viewpoint change')
    ax1.legend()
    keys = [k for k in corr[methods[0]]['all'] if k.startswith('recall@')]
    ax2.set_xticks([x + 0.4 - width / 2 for x in range(len(keys))],
                   [k.replace('recall@', '≤ ') for k in keys])
    ax2.set_ylabel('% of matches (higher is better)')
    ax2.set_title('Match recall at pixel thresholds')
    ax2.set_ylim(0, 100)
    _save(fig, path)


def plot_error_curves(results: dict, path: str | os.PathLike) -> bool:
    """Location error against baseline/depth and, across windows, against keyframe gap.

    Returns False (nothing written) when the results hold neither.
    """
    corr = results.get('correspondence', {})
    across = results.get('across_window', {}).get('by_gap', {})
    by_baseline = {m: corr[m].get('by_baseline', {}) for m in METHOD_LABELS if m in corr}
    if not any(by_baseline.values()) and not across:
        return False
    fig, axes = plt.subplots(1, 2 if across else 1, figsize=(11 if across else 5.5, 4),
                             squeeze=False)
    ax1 = axes[0, 0]
    for method, bins in by_baseline.items():
        labels = [b for b in bins if b != 'unknown']
        ax1.plot(range(len(labels)), [bins[b]['loc_err'] for b in labels], 'o-',
                 label=METHOD_LABELS[method], color=METHOD_COLOURS[method])
        ax1.set_xticks(range(len(labels)), [f"{b}\n(n={bins[b]['matches']})" for b in labels])
    ax1.set_xlabel('baseline / median depth')
    ax1.set_ylabel('location error (lower is better)')
    ax1.set_title('Within a window, by baseline')
    ax1.legend()
    if across:  # only with --stream-window
        ax2 = axes[0, 1]
        for method, gaps in across.items():
            keys = sorted(gaps, key=int)
            ax2.plot([int(k) for k in keys], [gaps[k]['loc_err'] for k in keys], 'o-',
                     label=METHOD_LABELS[method] + (' (as the node publishes)'
                                                    if method == 'multiview' else ''),
                     color=METHOD_COLOURS[method])
            ax2.set_xticks([int(k) for k in keys])
        ax2.set_xlabel('keyframe gap (each keyframe from its own window)')
        ax2.set_ylabel('location error (lower is better)')
        ax2.set_title('Across windows, by keyframe gap')
        ax2.legend()
    _save(fig, path)
    return True


def plot_window(images: torch.Tensor, panels: dict[str, torch.Tensor],
                path: str | os.PathLike, title: str = '',
                row_labels: list[str] | None = None,
                legend: list[tuple[str, tuple[float, float, float]]] | None = None) -> None:
    """Contact sheet: one row per view, columns input then each panel.

    Args:
        images: ``(V, 3, H, W)`` inputs in [0, 1].
        panels: column title -> ``(V, 3, h, w)`` colours in [0, 1] (any resolution).
        path: PNG to write.
        title: figure title.
        row_labels: one label per view (default ``view i``).
        legend: (label, RGB in [0, 1]) entries drawn under the sheet (colour keys).
    """
    columns = {'input': images, **panels}
    v = images.shape[0]
    fig, axes = plt.subplots(v, len(columns), figsize=(2.4 * len(columns), 1.9 * v + 0.4),
                             squeeze=False)
    for col, (name, stack) in enumerate(columns.items()):
        for row in range(v):
            ax = axes[row][col]
            ax.imshow(to_uint8(stack[row]), interpolation='nearest')
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=9)
    for row in range(v):
        axes[row][0].set_ylabel(row_labels[row] if row_labels else f'view {row}', fontsize=8)
    if legend:
        from matplotlib.patches import Patch

        fig.legend(handles=[Patch(color=colour, label=label) for label, colour in legend],
                   loc='upper center', bbox_to_anchor=(0.5, 0.0), ncol=min(len(legend), 6),
                   fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    _save(fig, path)


def window_panels(features: dict[str, torch.Tensor], normals: torch.Tensor | None = None,
                  segments: torch.Tensor | None = None, images: torch.Tensor | None = None,
                  ) -> dict[str, torch.Tensor]:
    """Return the standard contact-sheet panels: PCA of each feature set, normals, segments."""
    panels = {f'{name} PCA': pca_colors(f.cpu()) for name, f in features.items()}
    if normals is not None:
        panels['normals'] = normal_colors(normals.cpu())
    if segments is not None:
        seg = segments.cpu()
        if images is not None:
            seg = torch.nn.functional.interpolate(seg[:, None].float(), size=images.shape[-2:],
                                                  mode='nearest')[:, 0].long()
        panels['segments'] = segment_colors(seg, images.cpu() if images is not None else None)
    return panels


MAX_DRAWN = 25


def normals_legend() -> list[tuple[str, tuple[float, float, float]]]:
    """Colour key of normals drawn as ``(n + 1) / 2`` in the optical frame."""
    return [('normal +x (right)', (1.0, 0.5, 0.5)), ('+y (down)', (0.5, 1.0, 0.5)),
            ('-z (facing the camera)', (0.5, 0.5, 0.0)), ('-y (up, e.g. floor)', (0.5, 0.0, 0.5))]


def plot_matches(image_a: torch.Tensor, image_b: torch.Tensor, query_px: torch.Tensor,
                 found_px: dict[str, torch.Tensor], truth_px: torch.Tensor,
                 path: str | os.PathLike, tolerance_px: float = 10.0) -> None:
    """Draw the matches of the same query points found by each method, correct ones green.

    Args:
        image_a: ``(3, H, W)`` query view.
        image_b: ``(3, H, W)`` target view.
        query_px: ``(N, 2)`` query pixels in A.
        found_px: method name -> ``(N, 2)`` pixels found in B.
        truth_px: ``(N, 2)`` true pixels in B.
        path: PNG to write.
        tolerance_px: a match within this many pixels of the truth counts as correct.
    """
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(1, len(found_px), figsize=(6.5 * len(found_px), 3.5),
                             squeeze=False)
    width = image_a.shape[-1]
    pair = torch.cat((image_a.cpu(), image_b.cpu()), dim=-1)
    shown = torch.arange(len(query_px))[:MAX_DRAWN]  # a readable number of lines
    for ax, (name, found) in zip(axes[0], found_px.items()):
        ok = (found - truth_px).norm(dim=-1) <= tolerance_px
        ax.imshow(to_uint8(pair))
        for i in shown.tolist():
            (xa, ya), (xb, yb) = query_px[i].tolist(), found[i].tolist()
            colour = '#2ca02c' if ok[i] else '#d62728'
            ax.plot([xa, xb + width], [ya, yb], '-', lw=1.0, alpha=0.85, color=colour)
            ax.plot([xa], [ya], 'o', ms=3, color=colour)
        ax.set_title(f'{METHOD_LABELS.get(name, name)}: {int(ok.sum())}/{len(ok)} within '
                     f'{tolerance_px:g} px', fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.legend(handles=[Line2D([], [], color='#2ca02c', marker='o', ms=3,
                               label=f'match within {tolerance_px:g} px of the truth'),
                        Line2D([], [], color='#d62728', marker='o', ms=3, label='wrong match')],
               loc='upper center', bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8,
               frameon=False)
    fig.suptitle(f'query points in the left view (dots) and their match in the right view '
                 f'({min(len(query_px), MAX_DRAWN)} of {len(query_px)} drawn)', fontsize=9)
    _save(fig, path)
