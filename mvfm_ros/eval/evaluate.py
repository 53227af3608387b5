"""Evaluate a multi-view model against its own backbone and a naive baseline, as the paper does.

For every window: hard-argmax matches of ground-truth correspondences with the base features,
the multi-view features and normalised RGB patches (location error in [-1, 1] coordinates and
recall at pixel thresholds, binned by the viewpoint angle between the two views); cosine
similarity of the multi-view to the base features; normals from the normal head; and joint
clustering of each window's features scored against ground-truth instances.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from mvfm_ros.data.correspondence import sample_correspondences
from mvfm_ros.data.sample import MultiViewSample
from mvfm_ros.eval.baseline import rgb_patch_descriptors
from mvfm_ros.eval.metrics import (
    RECALL_THRESHOLDS_PX,
    angle_bin,
    hard_matches,
    location_errors,
    normal_metrics,
    pixel_errors,
    recall_at,
    rotation_angle_deg,
    segmentation_consistency,
)
from mvfm_ros.geometry.sampling import to_unit
from mvfm_ros.models.heads.segmentation import cluster_segments
from mvfm_ros.models.mvfm import MultiViewModel

METHODS = ('rgb', 'base', 'multiview')
SECTIONS = ('two_view_stereo', 'small_baseline')
SMALL_BASELINE = 0.05  # baseline / median depth under which a view pair is small-baseline
BASELINE_BINS = ('0-0.02', '0.02-0.05', '0.05-0.1', '0.1-0.3', '0.3+')


def baseline_bin(ratio: float) -> str:
    """Label of the baseline / depth bin of a ratio (:data:`BASELINE_BINS`)."""
    if math.isnan(ratio):
        return 'unknown'
    for label in BASELINE_BINS[:-1]:
        if ratio < float(label.split('-')[1]):
            return label
    return BASELINE_BINS[-1]


def baseline_ratios(sample: MultiViewSample) -> torch.Tensor:
    """``(V, V)`` distance between camera centres over the median depth (NaN: no depth)."""
    centres = sample.cam_to_world[:, :3, 3].double()
    distance = torch.cdist(centres, centres)
    depth = sample.depth
    if depth is None or not (depth > 0).any():
        return torch.full_like(distance, math.nan)
    return distance / max(float(depth[depth > 0].median()), 1e-6)


@dataclass
class WindowOutputs:
    """Everything computed for one window, kept for plots."""

    sample: MultiViewSample
    features: dict[str, torch.Tensor]  # method -> (V, C, h, w)
    normals: torch.Tensor | None = None  # (V, 3, H, W)
    segments: dict[str, torch.Tensor] = field(default_factory=dict)  # method -> (V, h, w)


@dataclass
class _Errors:
    loc: list[torch.Tensor] = field(default_factory=list)
    px: list[torch.Tensor] = field(default_factory=list)

    def add(self, found: torch.Tensor, truth: torch.Tensor, height: int, width: int) -> None:
        """Record matches ``found`` against ``truth`` (unit coordinates) of an H x W image."""
        self.loc.append(location_errors(found, truth).cpu())
        self.px.append(pixel_errors(found, truth, height, width).cpu())

    def summary(self) -> dict[str, float]:
        loc = torch.cat(self.loc) if self.loc else torch.zeros(0)
        px = torch.cat(self.px) if self.px else torch.zeros(0)
        return {'loc_err': float(loc.mean()) if loc.numel() else math.nan,
                'matches': int(loc.numel()), **recall_at(px)}


def window_features(model: MultiViewModel, sample: MultiViewSample,
                    ) -> dict[str, torch.Tensor]:
    """Compute base, multi-view and RGB-baseline features ``(V, C, h, w)`` of one window."""
    device = model.device
    images = sample.images.to(device)[None]
    with torch.no_grad():
        base = model.base_features(images)[0]
        multi = model(images, sample.intrinsics.to(device)[None],
                      sample.cam_to_world.to(device)[None])[0]
    rgb = rgb_patch_descriptors(sample.images.to(device), model.patch_size)
    return {'rgb': rgb, 'base': base, 'multiview': multi}


def node_stream_features(model: MultiViewModel, sample: MultiViewSample,
                         window_size: int, anchor_span: int = 0) -> torch.Tensor:
    """Features ``(V, C, h, w)`` of every view as the node publishes them.

    The views are taken as consecutive keyframes: view ``i`` is computed in its own window,
    which slides as the node's does (:func:`~mvfm_ros.pipeline.window.slide`: views
    ``i - window_size + 1 .. i``, the oldest the reference view; with ``anchor_span`` the
    reference is kept that many keyframes), so two views' features generally come from
    different windows with different companions.
    """
    from mvfm_ros.pipeline.window import slide

    device = model.device
    out, members, age = [], [], 0
    with torch.no_grad():
        for i in range(sample.num_views):
            members, age = slide(members, i, window_size, anchor_span, age)
            feats = model(sample.images[members].to(device)[None],
                          sample.intrinsics[members].to(device)[None],
                          sample.cam_to_world[members].to(device)[None])[0]
            out.append(feats[-1])
    return torch.stack(out)


def window_matches(sample: MultiViewSample, per_pair: int, generator: torch.Generator,
                   ) -> torch.Tensor:
    """Ground-truth correspondences ``(N, 6)`` in pixels: COLMAP tracks if given, else depth."""
    if sample.matches is not None:
        return sample.matches
    if sample.depth is None:
        raise ValueError(f'sample {sample.name!r} has neither matches nor depth to evaluate on')
    return sample_correspondences(sample.depth, sample.intrinsics, sample.cam_to_world,
                                  per_pair, generator)


def instances_on_grid(instances: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Ground-truth ids ``(V, H, W)`` at the patch centres of a ``(h, w)`` grid."""
    return F.interpolate(instances[:, None].float(), size=grid, mode='nearest')[:, 0].long()


class Evaluator:
    """Accumulate the evaluation over windows.

    Args:
        model: the multi-view model (its backbone gives the base features).
        matches_per_pair: ground-truth correspondences drawn per ordered view pair.
        seed: seed of the correspondence sampling.
        max_segments: upper bound on k of the joint clustering.
    """

    def __init__(self, model: MultiViewModel, matches_per_pair: int = 128, seed: int = 0,
                 max_segments: int = 12, stream_window: int = 0,
                 stream_anchor: int = 0) -> None:
        """Start with nothing accumulated.

        ``stream_window`` > 0 also scores ``across_window``: each view's features computed in
        its own sliding window of that many views, as the node publishes them
        (:func:`node_stream_features`), against the base features on the same pairs.
        """
        self.model = model.eval()
        self.matches_per_pair = matches_per_pair
        self.generator = torch.Generator().manual_seed(seed)
        self.max_segments = max_segments
        self.errors = {m: defaultdict(_Errors) for m in METHODS}
        self.cosine: list[float] = []
        self.normals: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.segmentation = {m: [] for m in ('base', 'multiview')}
        self.stream_window = stream_window
        self.stream_anchor = stream_anchor
        self.across = {m: _Errors() for m in ('base', 'multiview')}
        self.across_gap = {m: defaultdict(_Errors) for m in ('base', 'multiview')}
        # Named sections: two_view_stereo (stereo-rig windows added as such) and small_baseline
        # (every view pair whose baseline is under SMALL_BASELINE of the median depth).
        self.sections = {name: {m: _Errors() for m in METHODS} for name in SECTIONS}
        self.by_baseline = {m: defaultdict(_Errors) for m in METHODS}
        self.windows = 0

    def add(self, sample: MultiViewSample, section: str | None = None,
            main: bool = True) -> WindowOutputs:
        """Evaluate one window; returns its outputs (for plots).

        ``section`` also files every match of the window under that section
        (``two_view_stereo`` for the windows of a stereo rig); with ``main`` False the window
        counts only in the sections and the baseline bins (extra windows of a kind).
        """
        feats = window_features(self.model, sample)
        ratios = baseline_ratios(sample)
        streamed = (node_stream_features(self.model, sample, self.stream_window,
                                         self.stream_anchor)
                    if self.stream_window else None)
        height, width = sample.image_size
        rows = window_matches(sample, self.matches_per_pair, self.generator)
        for a, b in rows[:, [0, 3]].long().unique(dim=0).tolist():
            sel = rows[(rows[:, 0] == a) & (rows[:, 3] == b)].to(feats['base'].device)
            unit_a = to_unit(sel[:, 1:3], height, width)
            unit_b = to_unit(sel[:, 4:6], height, width)
            label = angle_bin(rotation_angle_deg(sample.cam_to_world[a], sample.cam_to_world[b]))
            ratio = float(ratios[a, b])
            sections = [section] if section else []
            if ratio < SMALL_BASELINE:  # False for NaN (no depth to tell)
                sections.append('small_baseline')
            for method, f in feats.items():
                found = hard_matches(f[a].float(), f[b].float(), unit_a)
                for key in (label, 'all') if main else ():
                    self.errors[method][key].add(found, unit_b, height, width)
                self.by_baseline[method][baseline_bin(ratio)].add(found, unit_b, height, width)
                for name in sections:
                    self.sections[name][method].add(found, unit_b, height, width)
            if streamed is not None:  # views a and b come from different windows
                gap = f'{abs(a - b)}'
                for method, f in (('base', feats['base']), ('multiview', streamed)):
                    found = hard_matches(f[a].float(), f[b].float(), unit_a)
                    self.across[method].add(found, unit_b, height, width)
                    self.across_gap[method][gap].add(found, unit_b, height, width)
        out = WindowOutputs(sample, feats)
        if not main:
            return out
        cos = F.cosine_similarity(feats['multiview'].float(), feats['base'].float(), dim=1)
        self.cosine.append(float(cos.mean()))
        if self.model.normal_head is not None:
            with torch.no_grad():
                out.normals = self.model.normals(feats['multiview'][None], (height, width))[0]
            if sample.normals is not None:
                self.normals.append((out.normals.cpu(), sample.normals))
        if sample.instances is not None:
            grid = tuple(feats['base'].shape[-2:])
            truth = instances_on_grid(sample.instances, grid)
            ids, counts = truth[truth >= 0].unique(return_counts=True)
            k = int(min(self.max_segments, max(2, (counts >= 0.01 * truth.numel()).sum())))
            for method in ('base', 'multiview'):
                pred = cluster_segments(feats[method].float(), k).cpu()
                out.segments[method] = pred
                self.segmentation[method].append(segmentation_consistency(pred, truth))
        self.windows += 1
        return out

    def results(self) -> dict:
        """Summary of everything added: the JSON ``mvfm-eval`` writes."""
        correspondence = {}
        for method in METHODS:
            bins = self.errors[method]
            correspondence[method] = {
                'all': bins['all'].summary() if 'all' in bins else _Errors().summary(),
                'by_angle': {k: bins[k].summary() for k in sorted(
                    (k for k in bins if k != 'all'), key=lambda k: float(k.split('-')[0]))},
            }
        base = correspondence['base']['all']['loc_err']
        multi = correspondence['multiview']['all']['loc_err']
        out = {
            'windows': self.windows,
            'correspondence': correspondence,
            'loc_err_ratio_mv_to_base': multi / base if base else math.nan,
            'cosine_to_base': sum(self.cosine) / len(self.cosine) if self.cosine else math.nan,
            'recall_thresholds_px': list(RECALL_THRESHOLDS_PX),
        }
        for method in METHODS:
            correspondence[method]['by_baseline'] = {
                k: self.by_baseline[method][k].summary() for k in (*BASELINE_BINS, 'unknown')
                if k in self.by_baseline[method]}
        if self.stream_window:
            across = {m: e.summary() for m, e in self.across.items()}
            base_err = across['base']['loc_err']
            out['across_window'] = {
                'window_size': self.stream_window, 'anchor_span': self.stream_anchor,
                **across,
                'loc_err_ratio_mv_to_base': (across['multiview']['loc_err'] / base_err
                                             if base_err else math.nan),
                'by_gap': {m: {g: self.across_gap[m][g].summary()
                               for g in sorted(self.across_gap[m], key=int)}
                           for m in self.across_gap}}
        for name, errors in self.sections.items():
            scores = {m: e.summary() for m, e in errors.items()}
            if scores['base']['matches']:
                out[name] = {**scores, 'loc_err_ratio_mv_to_base': (
                    scores['multiview']['loc_err'] / scores['base']['loc_err']
                    if scores['base']['loc_err'] else math.nan)}
        if self.normals:
            pred = torch.cat([p for p, _ in self.normals])
            truth = torch.cat([t for _, t in self.normals])
            out['normals'] = normal_metrics(pred, truth)
        if self.segmentation['multiview']:
            out['segmentation'] = {
                m: {key: sum(s[key] for s in scores) / len(scores) for key in scores[0]}
                for m, scores in self.segmentation.items()}
        return out


def evaluate(model: MultiViewModel, samples: Iterable[MultiViewSample], **kwargs) -> dict:
    """Evaluate ``model`` on ``samples``; keyword arguments go to :class:`Evaluator`."""
    evaluator = Evaluator(model, **kwargs)
    for sample in samples:
        evaluator.add(sample)
    return evaluator.results()
