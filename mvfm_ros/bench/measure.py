"""Measurements behind ``mvfm-bench`` (see :mod:`mvfm_ros.bench.cli`): timings per window."""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import time
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from mvfm_ros.bench import DEMO
from mvfm_ros.bench.export import example_inputs
from mvfm_ros.bench.timing import time_call
from mvfm_ros.geometry.camera import scale_intrinsics
from mvfm_ros.messages.factory import rosbags_factory, rosbags_typestore
from mvfm_ros.models.device import autocast, resolve_device
from mvfm_ros.models.factory import build_model, load_model
from mvfm_ros.models.loading import demo_model_path, load_configured_model
from mvfm_ros.models.trunk import join_states
from mvfm_ros.pipeline.engine import Engine
from mvfm_ros.pipeline.frame import Frame
from mvfm_ros.pipeline.outputs import Wanted
from mvfm_ros.pipeline.pipeline import Pipeline
from mvfm_ros.pipeline.settings import Settings
from mvfm_ros.pipeline.window import Window


def parse_placement(text: str, depth: int) -> tuple[str, tuple[int, ...] | None, str]:
    """Parse a placement of adapters into (name, blocks, adapter mode).

    ``all`` (every block), ``last:K`` (one after each of the last K blocks), ``head:N`` (N
    stacked after the last block) or block indices ``i,j,k`` (a repeated index stacks); any of
    them prefixed with ``side:`` for a side network (``side:1,3,5``).
    """
    mode, body = ('side', text[len('side:'):]) if text.startswith('side:') else ('residual', text)
    if body == 'all':
        return text, None, mode
    kind, _, count = body.partition(':')
    if kind in ('last', 'head'):
        k = int(count)
        if not 0 < k <= depth:
            raise ValueError(f'placement {text}: K must be in 1..{depth}')
        return text, tuple(range(depth - k, depth)) if kind == 'last' else (depth - 1,) * k, mode
    try:
        return text, tuple(int(i) for i in body.split(',')), mode
    except ValueError:
        raise ValueError(f"placement '{text}' is not all, last:K, head:N or i,j,k (optionally "
                         "after 'side:')") from None


def build(args: argparse.Namespace, blocks: tuple[int, ...] | None, mode: str = 'residual'):
    """Build the model to time: a checkpoint as it is, or an architecture with random weights.

    Architectures: the demo model's, a released model's (``official:FAMILY``) or a timm
    backbone with the package's adapters.
    """
    if args.checkpoint:
        return load_configured_model(args.checkpoint)[0]
    if args.backbone.startswith('official:'):
        from mvfm_ros.models.official import COMMON, FAMILIES

        family = args.backbone.split(':', 1)[1]
        if family not in FAMILIES:
            raise ValueError(f'--backbone {args.backbone}: the released families are '
                             f'{sorted(FAMILIES)}')
        name, options = FAMILIES[family]
        options = {**COMMON, **options, 'adapter_blocks': blocks, 'adapter_mode': mode}
        return build_model(name, pretrained=False, img_size=args.size[0], **options)
    if args.backbone == DEMO:
        reference = load_model(demo_model_path())
        cfg = reference.config
        options = {name: getattr(cfg, name) for name in cfg.option_names()}
        options['adapter_blocks'] = blocks
        options['adapter_mode'] = mode
        if args.adapter_dim:
            options['adapter_dim'] = args.adapter_dim
        return build_model(cfg.backbone, pretrained=False, img_size=cfg.img_size,
                           backbone_kwargs=cfg.backbone_kwargs, **options)
    return build_model(args.backbone, pretrained=False, img_size=args.size[0],
                       adapter_blocks=blocks, adapter_mode=mode, adapter_dim=args.adapter_dim)


def measure(args: argparse.Namespace, placement: str, blocks, mode: str,
            device: torch.device) -> dict[str, Any]:
    """Take all timings for one placement."""
    model = build(args, blocks, mode).to(device).eval()
    if args.compile:
        model.trunk.model.blocks = torch.compile(model.trunk.model.blocks)
    v, (h, w) = args.views, args.size
    images, intrinsics, poses = (t.to(device) for t in example_inputs(v, (h, w)))

    @torch.inference_mode()
    def base():
        with autocast(device, args.precision):
            model.base_features(images)

    @torch.inference_mode()
    def base_one():
        with autocast(device, args.precision):
            model.trunk(images[0, :1])

    @torch.inference_mode()
    def multiview():
        with autocast(device, args.precision):
            model(images, intrinsics, poses)

    with torch.inference_mode(), autocast(device, args.precision):
        cached = [model.frame_tokens(images[0, i:i + 1]) for i in range(v - 1)]

    @torch.inference_mode()
    def stream():
        with autocast(device, args.precision):
            new = model.frame_tokens(images[0, v - 1:])
            model.window_features(join_states([*cached, new]), intrinsics, poses)

    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    out = {'placement': placement, 'adapter_blocks': list(model.adapter_blocks),
           'adapter_dim': model.adapters[0].proj_out.in_features, 'adapter_mode': mode}
    for name, fn in (('base', base), ('multiview', multiview), ('stream', stream),
                     ('base_1view', base_one)):
        out[name] = time_call(fn, device, args.repeats, args.warmup)
    out['peak_memory_mb'] = (torch.cuda.max_memory_allocated(device) / 2**20
                             if device.type == 'cuda'
                             else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out['engine'] = engine_overhead(model, args, device)
    med = {name: out[name]['median_ms'] for name in ('base', 'multiview', 'stream',
                                                     'base_1view')}
    out['ratios'] = {'multiview_over_base': med['multiview'] / med['base'],
                     'stream_over_base_1view': med['stream'] / med['base_1view'],
                     'stream_over_multiview': med['stream'] / med['multiview']}
    return out


def engine_overhead(model, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Time the pipeline's streaming step for a new keyframe against the model part of it.

    Repeats alternate between a consumer of every output (RViz and a planner) and a planner
    that subscribes to ``features`` alone, so the time the output edge saves when nobody
    wants the pictures is measured in the same run.
    """
    engine = Engine(model, device, args.precision, tuple(args.size))
    engine.set_operators(args.operators)
    rng = np.random.default_rng(0)
    h, w = args.size
    k = np.array([[0.8 * w, 0, w / 2], [0, 0.8 * w, h / 2], [0, 0, 1.0]])
    window = Window(args.views)

    def new_frame(uid: int) -> Frame:  # the robot drives on: a new keyframe 20 cm ahead
        pose = np.eye(4)
        pose[0, 3] = 0.2 * uid
        return Frame(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), k, pose, uid, uid=uid)

    for uid in range(args.views):
        window.push(new_frame(uid))
    engine.run(window)
    build = rosbags_factory(rosbags_typestore())
    consumers = {'all': Wanted.everything(), 'features': Wanted(frozenset({'features'}))}
    phases: dict[str, list[float]] = {f'{name}_{phase}': [] for name in consumers
                                      for phase in ('model', 'outputs', 'encode')}
    phases['map'] = []
    # The map update of a keyframe with a depth image at the camera's resolution.
    pipeline = Pipeline(engine, Settings(map_voxel_size=args.map_voxel))
    cam_h, cam_w = args.camera[1], args.camera[0]
    cam_k = scale_intrinsics(torch.as_tensor(k), cam_w / w, cam_h / h).numpy()
    uid = args.views
    for repeat in range(args.warmup + args.repeats):
        for name, wanted in consumers.items():
            window.push(new_frame(uid))
            uid += 1
            result = engine.run(window, outputs=[len(window.keyframes) - 1], wanted=wanted)
            result.wanted = wanted
            start = time.perf_counter()
            for _ in build.outputs(result, engine.identity, 'map', wanted):  # what is sent
                pass
            if repeat >= args.warmup:
                phases[f'{name}_model'].append(engine.timing['model_s'])
                phases[f'{name}_outputs'].append(engine.timing['outputs_s'])
                phases[f'{name}_encode'].append(time.perf_counter() - start)
        view = result.views[-1]
        view.frame.depth = synthetic_depth(cam_h, cam_w, repeat)
        view.frame.intrinsics = cam_k  # K of the depth's (camera) resolution
        view.frame.image = rng.integers(0, 255, (cam_h, cam_w, 3), dtype=np.uint8)
        start = time.perf_counter()
        pipeline.update_map(view)
        if repeat >= args.warmup:
            phases['map'].append(time.perf_counter() - start)
    ms = {key: 1000 * statistics.median(values) for key, values in phases.items()}
    model_ms = ms['all_model']
    step = {name: ms[f'{name}_model'] + ms[f'{name}_outputs'] + ms[f'{name}_encode']
            for name in consumers}
    edge = {name: ms[f'{name}_outputs'] + ms[f'{name}_encode'] for name in consumers}
    return {'model_ms': model_ms, 'outputs_ms': ms['all_outputs'],
            'encode_ms': ms['all_encode'], 'step_ms': step['all'],
            'features_only_step_ms': step['features'],
            'features_only_saved_ms': edge['all'] - edge['features'],
            'features_only_saved_fraction': (edge['all'] - edge['features']) / step['all'],
            'operators': list(args.operators),
            'outputs_fraction': ms['all_outputs'] / model_ms,
            'encode_fraction': ms['all_encode'] / model_ms,
            'overhead_fraction': edge['all'] / model_ms,
            'map_ms': ms['map'], 'map_fraction': ms['map'] / model_ms,
            'map_voxels': len(pipeline.map), 'map_camera': list(args.camera),
            'map_voxel_m': args.map_voxel}


def synthetic_depth(height: int, width: int, seed: int) -> np.ndarray:
    """Return a floor-and-wall-like depth image (1 to 5 m, some holes), different per seed."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0, 1, height)[:, None]
    cols = np.linspace(0, 1, width)[None, :]
    depth = 1.0 + 4.0 * (1 - rows) * (0.6 + 0.4 * np.cos(3 * cols + seed))
    depth = (depth + 0.02 * rng.standard_normal((height, width))).astype(np.float32)
    depth[rng.random((height, width)) < 0.05] = 0.0  # missing measurements
    return depth


def format_table(results: dict[str, Any]) -> str:
    """Format the table printed on screen."""
    head = (f"{results['backbone']} {results['size'][0]}x{results['size'][1]}, "
            f"{results['views']} views, {results['device']} ({results['device_name']}), "
            f"{results['precision']}, median of {results['repeats']} after "
            f"{results['warmup']} warm-up; adapter width "
            f"{results['placements'][0]['adapter_dim'] if results['placements'] else '-'}")
    cols = ('base', 'multiview', 'stream', 'base_1view')
    lines = [head, f"{'placement':14}" + ''.join(f'{c + " ms":>14}' for c in cols)
             + f"{'MV/base':>9}{'stream/1view':>14}{'outputs/model':>15}{'encode/model':>14}"
             + f"{'map/model':>13}"]
    for row in results['placements']:
        lines.append(f"{row['placement']:14}" + ''.join(
            f"{row[c]['median_ms']:14.2f}" for c in cols)
            + f"{row['ratios']['multiview_over_base']:9.2f}"
            + f"{row['ratios']['stream_over_base_1view']:14.2f}"
            + f"{100 * row['engine']['outputs_fraction']:14.1f}%"
            + f"{100 * row['engine']['encode_fraction']:13.1f}%"
            + f"{100 * row['engine']['map_fraction']:12.1f}%"
            + f"{100 * row['engine']['features_only_saved_fraction']:8.1f}%")
    lines.append("outputs/model: the engine's outputs (normal head, joint PCA and k-means, "
                 'colour images, the operators and their lifting) per new keyframe, as a share '
                 "of the model's time; "
                 'encode/model: building every output message, likewise; map/model: fusing '
                 f"one keyframe's {results['placements'][0]['engine']['map_camera'][0]}x"
                 f"{results['placements'][0]['engine']['map_camera'][1]} depth into the "
                 f"{100 * results['placements'][0]['engine']['map_voxel_m']:.0f} cm voxel map, "
                 'likewise; saved: share of the step saved when only mvfm/features has a '
                 'subscriber (no pictures, normals, segments or lifting made)'
                 if results['placements'] else '')
    return '\n'.join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every placement asked for; returns the results (JSON-ready)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.checkpoint:
        model = load_configured_model(args.checkpoint)[0]
        args.size = args.size or model.config.input_size or (96, 128)
        placements = [('checkpoint', model.adapter_blocks,
                       model.config.adapter_mode)]
        backbone = model.config.backbone
    else:
        args.size = args.size or (96, 128)
        depth = build(args, None).trunk.depth
        placements = [parse_placement(p, depth) for p in args.placements]
        backbone = args.backbone
    return {
        'backbone': backbone, 'checkpoint': str(args.checkpoint or ''),
        'size': list(args.size), 'views': args.views,
        'device': str(device), 'precision': args.precision, 'repeats': args.repeats,
        'warmup': args.warmup, 'compile': args.compile,
        'device_name': (torch.cuda.get_device_name(device) if device.type == 'cuda'
                        else f'{platform.processor() or platform.machine()}, '
                             f'{torch.get_num_threads()} threads'),
        'torch': torch.__version__,
        'placements': [measure(args, name, blocks, mode, device)
                       for name, blocks, mode in tqdm(placements, desc='placements',
                                                      unit='placement')],
    }
