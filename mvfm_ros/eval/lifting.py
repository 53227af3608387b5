"""Evaluate lifted operators and the map on generated sequences, as the node produces them.

Each sequence is run through the real :class:`~mvfm_ros.pipeline.Pipeline` (every keyframe in
its own sliding window, operators lifted, map fused from depth). Scores compare the published
(lifted) outputs of keyframe pairs with the per-view operator outputs of the same frames, at
ground-truth correspondences: label consistency after the best one-to-one id matching, id
stability between consecutive keyframes (ids as published), instance purity, normal
disagreement and error; and the map's label purity against ground-truth instances.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from mvfm_ros.data.correspondence import corresponding_pixels
from mvfm_ros.data.imageio import resize_depth
from mvfm_ros.data.procedural import SceneConfig, SceneGenerator
from mvfm_ros.data.sample import MultiViewSample
from mvfm_ros.eval.lift_metrics import (
    id_stability,
    label_consistency,
    normal_angles,
    normal_error,
    purity,
    surface_distance,
    surface_lookups,
)
from mvfm_ros.geometry.camera import scale_intrinsics
from mvfm_ros.pipeline.engine import Engine
from mvfm_ros.pipeline.frame import Frame
from mvfm_ros.pipeline.pipeline import Pipeline
from mvfm_ros.pipeline.settings import Settings

TRAJECTORIES = ('orbit', 'forward', 'turn')


def _mean(values: list[float]) -> float:
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float('nan')


def map_scores(pipeline: Pipeline, sample: MultiViewSample) -> dict[str, float]:
    """Label purity of the map's voxels against ground-truth instances, and surface distance.

    Each voxel centre is looked up in the views that see it (depth agreement within two
    voxels): its instance is the majority there, and it lies on a surface when any view agrees.
    """
    cloud = pipeline.map_cloud()
    if not len(cloud):
        return {'voxels': 0}
    points = np.stack([cloud['x'], cloud['y'], cloud['z']], 1)
    votes = [defaultdict(int) for _ in range(len(points))]
    tolerance = 2 * pipeline.map.voxel_size
    on_surface = surface_distance(points, sample) <= tolerance
    for v, idx, rows, cols, error in surface_lookups(points, sample):
        if sample.instances is None:
            break
        inst = sample.instances[v].numpy()[rows, cols]
        for i, ok, g in zip(idx, error <= tolerance, inst):
            if ok and g >= 0:
                votes[i][int(g)] += 1
    truth = np.array([max(d, key=d.get) if d else -1 for d in votes])
    labels = cloud['label']
    keep = (labels >= 0) & (truth >= 0)
    scores = {'voxels': int(len(cloud)), 'on_surface_2_voxels': float(on_surface.mean()),
              'memory_mb': pipeline.map.nbytes / 2**20}
    if keep.any():
        scores['label_purity'] = purity(labels[keep], truth[keep])
    return scores


def procedural_sequences(count: int, frames: int, size: tuple[int, int],
                         seed: int = 1000) -> Iterator[MultiViewSample]:
    """Yield generated camera streams (orbit, forward, turn in turn); seed 1000 is held out."""
    generator = SceneGenerator(seed, SceneConfig(*size))
    for index in range(count):
        yield generator.sequence(index, frames, TRAJECTORIES[index % len(TRAJECTORIES)])


def rgbd_sequences(root: str, count: int, frames: int,
                   size: tuple[int, int]) -> Iterator[MultiViewSample]:
    """Consecutive frames of a 7-Scenes recording, ``count`` evenly spaced stretches."""
    from mvfm_ros.data.rgbd import load_7scenes

    sequence = load_7scenes(root)
    starts = np.linspace(0, max(len(sequence) - frames, 0), count).astype(int)
    for start in starts:
        yield sequence.load(list(range(start, min(start + frames, len(sequence)))), size)


def evaluate_lifting(engine: Engine, samples: Iterable[MultiViewSample], window: int = 4,
                     use_depth: bool = True) -> dict:
    """Score the engine's operators, lifted as the node lifts them, on camera streams.

    Args:
        engine: an engine with operators (``set_operators``).
        samples: streams with depth (instances and normals where known), rendered at the
            engine's input size; each frame is a keyframe.
        window: window size of the pipeline.
        use_depth: give the pipeline the depth (geometric lifting and the map); False lifts by
            feature correspondences alone (and builds no map). Scores always use the depth.
    """
    per_view = defaultdict(lambda: defaultdict(list))
    lifted = defaultdict(lambda: defaultdict(list))
    maps, map_seconds, model_seconds = [], [], []
    start = time.perf_counter()
    sequences = 0
    for sample in samples:
        sequences += 1
        frames = sample.num_views
        settings = Settings(window_size=window, min_translation=0.0, min_rotation_deg=0.0,
                            max_interval=0.0)
        pipeline = Pipeline(engine, settings)
        outputs, raw = [], []
        for i in range(frames):
            image = (sample.images[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            frame = Frame(image, sample.intrinsics[i].numpy().astype(np.float64),
                          sample.cam_to_world[i].numpy().astype(np.float64),
                          (i + 1) * 100_000_000,
                          depth=sample.depth[i].numpy() if use_depth else None)
            result = pipeline.add(frame).views[-1]
            model_seconds.append(engine.timing['model_s'])
            outputs.append(result.ops)
            raw.append(pipeline.window.outputs_of(frame.uid))
        map_seconds += list(pipeline.stats.map_update)
        _score_sequence(sample, engine, outputs, raw, window, per_view, lifted)
        if use_depth:
            maps.append(map_scores(pipeline, sample))
    names = sorted(per_view)
    result = {'sequences': sequences, 'frames': frames, 'window': window,
              'use_depth': use_depth, 'seconds': time.perf_counter() - start,
              'operators': {n: {'per_view': {k: _mean(v) for k, v in per_view[n].items()},
                                'lifted': {k: _mean(v) for k, v in lifted[n].items()}}
                            for n in names}}
    if maps:
        result['map'] = {k: _mean([m[k] for m in maps if k in m]) for k in maps[-1]}
        result['map']['update_p50_s'] = float(np.median(map_seconds)) if map_seconds else None
        result['map']['model_p50_s'] = float(np.median(model_seconds))
    return result


def _score_sequence(sample, engine: Engine, outputs: list[dict], raw: list[dict], window: int,
                    per_view: dict, lifted: dict) -> None:
    """Add one sequence's scores: every keyframe pair less than a window apart."""
    height, width = engine.input_size
    depth = torch.stack([resize_depth(d, (height, width)) for d in sample.depth])
    instances = normals = None
    if sample.instances is not None:
        instances = torch.nn.functional.interpolate(sample.instances[:, None].float(),
                                                    size=(height, width), mode='nearest')[:, 0]
    if sample.normals is not None:
        normals = torch.nn.functional.interpolate(sample.normals, size=(height, width),
                                                  mode='nearest').permute(0, 2, 3, 1).numpy()
    h0, w0 = sample.depth.shape[-2:]
    ks = [scale_intrinsics(k, width / w0, height / h0) for k in sample.intrinsics]
    rotations = sample.cam_to_world[:, :3, :3].double().numpy()
    pairs = {}  # (i, j) -> corresponding pixels, keyframes less than a window apart
    for i in range(len(outputs)):
        for j in range(i + 1, min(i + window, len(outputs))):
            ia, ib = (t.numpy() for t in corresponding_pixels(
                depth[i], depth[j], ks[i], ks[j], sample.cam_to_world[i], sample.cam_to_world[j]))
            if len(ia) >= 50:
                pairs[(i, j)] = (ia, ib)
    for op in engine.lifting.operators:
        for store, source in ((per_view, raw), (lifted, outputs)):
            _score_op(op, source, store[op.name], pairs, instances, normals, rotations)
        for (i, j), (ia, ib) in pairs.items():
            if op.kind == 'labels' and j == i + 1 and op.name in outputs[i] and \
                    op.name in outputs[j]:
                lifted[op.name]['stability'].append(
                    id_stability(outputs[i][op.name], outputs[j][op.name], ia, ib))


def _score_op(op, source: list[dict], store: dict, pairs: dict, instances, normals,
              rotations: np.ndarray) -> None:
    """Score one operator's outputs (per view or lifted): each frame, then each pair."""
    name = op.name
    for i, out in enumerate(source):
        if name in out and op.kind == 'labels' and instances is not None:
            store['purity'].append(purity(out[name], instances[i].numpy()))
        elif name in out and op.kind == 'normals' and normals is not None:
            store['error_deg'].append(normal_error(out[name], normals[i]))
    for (i, j), (ia, ib) in pairs.items():
        if name not in source[i] or name not in source[j]:
            continue
        a, b = source[i][name], source[j][name]
        if op.kind == 'labels':
            store['consistency'].append(label_consistency(a, b, ia, ib))
        elif op.kind == 'normals':
            store['disagreement_deg'].append(float(normal_angles(
                a, b, rotations[i], rotations[j], ia, ib).mean()))
