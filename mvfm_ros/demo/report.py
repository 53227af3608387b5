"""Turn what the demo collected from the node into pictures and ``summary.json``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from mvfm_ros.data.correspondence import corresponding_pixels, sample_correspondences
from mvfm_ros.data.imageio import resize_depth, resize_image
from mvfm_ros.eval.lift_metrics import id_stability, label_consistency
from mvfm_ros.eval.metrics import hard_matches, location_errors
from mvfm_ros.geometry.camera import scale_intrinsics
from mvfm_ros.geometry.sampling import to_pixels, to_unit
from mvfm_ros.messages.conversions import camera_info_matrix, stamp_to_ns
from mvfm_ros.messages.factory import POINT_FIELD_TYPES
from mvfm_ros.pipeline import Engine, Settings
from mvfm_ros.pipeline.engine import PROMPT_ID
from mvfm_ros.pipeline.frame import Frame
from mvfm_ros.pipeline.stats import percentiles
from mvfm_ros.pipeline.window import Window
from mvfm_ros.viz.colors import label_colors, palette, pca_colors, to_uint8
from mvfm_ros.viz.figures import normals_legend, plot_matches, plot_window

TOLERANCE_PX = 8.0
# What each location error of summary.json measures (the paper's "Loc. Err.": mean L1 distance
# in [-1, 1] image coordinates of the best match; lower is better).
LOCATION_ERROR_FIELDS = {
    'base': 'the frozen backbone alone, on two keyframes two apart',
    'multiview': 'the same two keyframes computed together in one window (what one window '
                 'message carries)',
    'node_across_windows': 'the same two keyframes as the node published them, each from its '
                           'own window (what a planner fusing over time meets)',
    'live_consistency': "the node's own check on /diagnostics: every few keyframes, published "
                        'features against an earlier window at depth correspondences',
}


def _number(text: str):
    """Return a diagnostics value as a number where it is one (they travel as strings)."""
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and 'e' not in text and '.' not in text else value


def _array(msg) -> np.ndarray:
    if msg.encoding.startswith('32FC'):
        return np.frombuffer(bytes(msg.data), dtype='<f4').reshape(msg.height, msg.width, -1)
    channels = 3 if msg.encoding == 'rgb8' else 1
    return np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.width,
                                                                  channels)


def _chw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array, dtype=np.float32)).permute(2, 0, 1)


def contact_sheets(session, folder: Path) -> int:
    """Write one sheet per window the node published on ``mvfm/window``.

    Each shows the window's views as the model saw them, with one PCA over the window's
    features; normals, segments and lifted superpixel ids of each view are the ones published
    when it was new (ids as published: the same colour is the same id across keyframes).
    """
    out = session.outputs
    for i, key in enumerate(sorted(out['window'])):
        msg = out['window'][key]
        stamps = [stamp_to_ns(v.header.stamp) for v in msg.views]
        if not all(k in session.images for k in stamps):
            continue
        feats = torch.stack([_chw(_array(v.features)) for v in msg.views])
        images = torch.stack([_chw(session.images[k]) / 255.0 for k in stamps])
        size = tuple(images.shape[-2:])

        def upsample(stack: torch.Tensor, size: tuple[int, int] = size) -> torch.Tensor:
            return torch.nn.functional.interpolate(stack, size=size, mode='nearest')

        panels = {'feature PCA (joint)': upsample(pca_colors(feats))}
        for name, topic in (('normals', 'normals/color'), ('segments', 'segmentation/color'),
                            ('lifted superpixels', 'ops/superpixels/color')):
            if all(k in out.get(topic, {}) for k in stamps):
                panels[f'{name} (when new)'] = upsample(torch.stack(
                    [_chw(_array(out[topic][k])) / 255.0 for k in stamps]))
        labels = [f'view {j}{" (new)" if j == msg.new_view else ""}\n{k / 1e9 % 1000:.2f} s'
                  for j, k in enumerate(stamps)]
        legend = normals_legend() if 'normals (when new)' in panels else []
        if all(k in out['segmentation'] for k in stamps):
            ids = sorted(set(np.unique(np.concatenate([
                _array(out['segmentation'][k]).ravel() for k in stamps])).tolist()))
            colours = palette(max(ids) + 1)
            legend += [('prompted object' if i == PROMPT_ID else f'segment {i}',
                        tuple(colours[i].tolist())) for i in ids]
        plot_window(images, panels, folder / f'window_{i:03d}.png',
                    f'window {msg.window_id} ({len(stamps)} views, features computed together)',
                    row_labels=labels, legend=legend)
    return len(out['window'])


def correspondences(session, depth: dict[int, np.ndarray], keys: list[int],
                    folder: Path) -> dict[str, dict[str, float]]:
    """Match two keyframes of one window with base and with multi-view features.

    Multi-view features agree within a window (rays are relative to the window's first view),
    so the pair is matched inside the window ``[a, ..., b]``, computed by the pipeline's engine
    from the frames the node received. The node's own published features of ``a`` and ``b``
    (each from the window it was newest in) are scored too, as ``node_across_windows``.
    """
    pairs = [(i, i + 2) for i in range(len(keys) - 2)
             if keys[i] in depth and keys[i + 2] in depth]
    if not pairs:
        return {}
    first, last = pairs[len(pairs) // 2]
    window = keys[first:last + 1]
    a, b = window[0], window[-1]
    engine, _ = Engine.from_settings(Settings(device='cpu'))
    frames = [Frame(session.images[key],
                    camera_info_matrix(session.infos[key], session.images[key].shape[:2]),
                    session.poses[key], key, uid=uid) for uid, key in enumerate(window)]
    ends = (frames[0], frames[-1])
    ks = [torch.from_numpy(f.intrinsics).float() for f in ends]
    poses = [torch.from_numpy(f.cam_to_world).float() for f in ends]
    window = Window(len(frames))
    for frame in frames:
        window.push(frame)
    multi, prepared = engine.features(window)
    multi = multi[[0, -1]]
    with torch.no_grad():  # the same resized images the engine fed the model
        base = engine.model.base_features(torch.stack(
            [prepared[0].image, prepared[-1].image])[None])[0].float()
    node = torch.stack([_chw(_array(session.outputs['features'][k])) for k in (a, b)])
    height, width = session.images[a].shape[:2]
    dep = torch.from_numpy(np.stack([depth[a], depth[b]])).float()
    rows = sample_correspondences(dep, torch.stack(ks), torch.stack(poses), 60,
                                  torch.Generator().manual_seed(0), pairs=[(0, 1)])
    unit_a, unit_b = to_unit(rows[:, 1:3], height, width), to_unit(rows[:, 4:6], height, width)
    found, scores = {}, {}
    for name, feats in (('base', base), ('multiview', multi), ('node_across_windows', node)):
        unit = hard_matches(feats[0], feats[1], unit_a)
        pixels = to_pixels(unit, height, width)
        ok = (pixels - rows[:, 4:6]).norm(dim=-1) <= TOLERANCE_PX
        scores[name] = {'within_8px': float(ok.float().mean()),
                        'loc_err': float(location_errors(unit, unit_b).mean())}
        if name != 'node_across_windows':
            found[name] = pixels
    images = [_chw(session.images[k]) / 255.0 for k in (a, b)]
    plot_matches(images[0], images[1], rows[:, 1:3], found, rows[:, 4:6],
                 folder / 'correspondences.png', TOLERANCE_PX)
    return scores


def cloud_array(msg) -> np.ndarray:
    """Return a PointCloud2 as a structured array (fields as the message describes them)."""
    types = {v: k for k, v in POINT_FIELD_TYPES.items()}
    dtype = np.dtype({'names': [f.name for f in msg.fields],
                      'formats': ['<' + types[f.datatype] for f in msg.fields],
                      'offsets': [f.offset for f in msg.fields], 'itemsize': msg.point_step})
    return np.frombuffer(bytes(msg.data), dtype=dtype, count=msg.width * msg.height)


def map_pictures(session, folder: Path) -> dict:
    """Draw the last map message top-down and obliquely; returns its numbers."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    maps = session.outputs.get('map') or {}
    if not maps:
        return {'voxels': 0}
    cloud = cloud_array(maps[max(maps)])
    rgb = cloud['rgb'].view(np.uint32)
    colours = np.stack((rgb >> 16 & 255, rgb >> 8 & 255, rgb & 255), 1) / 255.0
    labels = cloud['label']
    ids = label_colors(labels) / 255.0
    # Seen from above the ceiling would hide the room: drop the top 0.3 m, draw low to high.
    order = np.argsort(cloud['z'])
    order = order[cloud['z'][order] < cloud['z'].max() - 0.3]
    cloud, colours, ids = cloud[order], colours[order], ids[order]
    for name, view in (('map_top.png', None), ('map_oblique.png', (35, -60))):
        fig = plt.figure(figsize=(10, 5))
        for k, (title, colour) in enumerate((('colour', colours), ('lifted superpixel ids',
                                                                    ids))):
            if view is None:
                ax = fig.add_subplot(1, 2, k + 1)
                ax.scatter(cloud['x'], cloud['y'], c=colour, s=2, marker='s', linewidths=0)
                ax.set_aspect('equal')
                ax.set_xlabel('x (m)')
                ax.set_ylabel('y (m)')
            else:
                ax = fig.add_subplot(1, 2, k + 1, projection='3d')
                ax.scatter(cloud['x'], cloud['y'], cloud['z'], c=colour, s=1, linewidths=0)
                ax.view_init(*view)
                ax.set_box_aspect((np.ptp(cloud['x']), np.ptp(cloud['y']), np.ptp(cloud['z'])))
            ax.set_title(f'mvfm/map: {title}\n({len(cloud)} voxels below the ceiling, '
                         'world frame)', fontsize=10)
        fig.savefig(folder / name, dpi=110, bbox_inches='tight')
        plt.close(fig)
    return {'voxels': int(len(labels)), 'labels': int(len(np.unique(labels[labels >= 0]))),
            'messages': len(maps)}


def operator_scores(session, depth: dict[int, np.ndarray], keys: list[int]) -> dict:
    """Superpixels of consecutive keyframes as published (lifted) vs run per view.

    Scored at correspondences from the bag's depth: consistency after the best one-to-one id
    match, and the share of pixels whose published id did not change between keyframes.
    """
    from mvfm_ros.lift.builtin_ops import superpixels

    topic = 'ops/superpixels'
    published = session.outputs.get(topic) or {}
    scores: dict[str, list[float]] = {'per_view': [], 'lifted': [], 'stability': []}
    for a, b in zip(keys, keys[1:]):
        if not all(k in published and k in depth and k in session.poses for k in (a, b)):
            continue
        la, lb = (_labels(published[k]) for k in (a, b))
        size = la.shape
        frames = []
        for k in (a, b):
            # As the engine prepares a frame: the image and depth at the model input size.
            d = resize_depth(torch.from_numpy(depth[k]).float(), size)
            kk = torch.as_tensor(camera_info_matrix(session.infos[k]), dtype=torch.float32)
            kk = scale_intrinsics(kk, size[1] / depth[k].shape[1], size[0] / depth[k].shape[0])
            image = resize_image(_chw(session.images[k]) / 255.0, size)
            frames.append((d, kk, torch.as_tensor(session.poses[k], dtype=torch.float32),
                           superpixels(to_uint8(image))))
        (da, ka, pa, sa), (db, kb, pb, sb) = frames
        ia, ib = (t.numpy() for t in corresponding_pixels(da, db, ka, kb, pa, pb))
        if len(ia) < 50:
            continue
        scores['per_view'].append(label_consistency(sa, sb, ia, ib))
        scores['lifted'].append(label_consistency(la, lb, ia, ib))
        scores['stability'].append(id_stability(la, lb, ia, ib))
    return {'superpixels': {'pairs': len(scores['lifted']),
                            'per_view': {'consistency': _nanmean(scores['per_view'])},
                            'lifted': {'consistency': _nanmean(scores['lifted']),
                                       'stability': _nanmean(scores['stability'])}}}


def _nanmean(values: list[float]) -> float | None:
    return float(np.nanmean(values)) if values else None


def _labels(msg) -> np.ndarray:
    return np.frombuffer(bytes(msg.data), dtype='<i4').reshape(msg.height, msg.width)


def write_report(session, depth: dict[int, np.ndarray], diagnostics: dict[str, str],
                 folder: Path, images: int, elapsed: float, exit_code: int) -> dict:
    """Write pictures and summary.json; returns the summary."""
    keys = sorted(session.outputs['features'])
    sheets = contact_sheets(session, folder)
    scores = correspondences(session, depth, keys, folder)
    map_summary = map_pictures(session, folder)
    lifting = operator_scores(session, depth, keys)
    latency = [session.arrival[k] - session.sent[k] for k in keys if k in session.sent]
    windows = list(session.outputs['window'].values())
    summary = {
        'images_played': images,
        'keyframes': int(diagnostics.get('keyframes', 0)),
        'windows': len(keys),
        'frames_dropped': int(diagnostics.get('frames_dropped', 0)),
        'outputs_per_topic': {t: len(v) for t, v in session.outputs.items()},
        'latency_s': percentiles(latency),
        'node_reported': {k: float(v) for k, v in diagnostics.items()
                          if k.startswith(('latency_', 'inference_', 'overhead_'))},
        'matches_within_8px': {k: v['within_8px'] for k, v in scores.items()},
        'location_error': {k: v['loc_err'] for k, v in scores.items()},
        'location_error_fields': LOCATION_ERROR_FIELDS,
        'live_consistency': {k: _number(v) for k, v in diagnostics.items()
                             if k.startswith('consistency_')},
        'contact_sheets': sheets,
        'map': map_summary,
        'operators': lifting,
        'model': ({k: getattr(windows[-1], k) for k in ('backbone', 'backbone_sha256',
                                                         'checkpoint_sha256', 'pose_conditioning')}
                  if windows else None),
        'elapsed_s': elapsed,
        'node_exit_code': exit_code,
        'diagnostics': {k: _number(v) for k, v in diagnostics.items()},
    }
    (folder / 'summary.json').write_text(json.dumps(summary, indent=2) + '\n')
    return summary
