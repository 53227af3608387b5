"""``mvfm-bench --soak MINUTES``: the live node fed at camera rate for a long time.

Starts ``perception_node`` (the shipped demo ViT unless ``--checkpoint`` names another model:
the soak measures transport and memory, not the model; default settings but for the remapped
inputs) as a process, publishes 640x480 rgb8 images (the demo bag's frames, upsampled),
camera_info and poses at ``--soak-rate`` Hz with real-time stamps, and every ``interval``
seconds records the node's resident memory (``/proc/PID/status``), its output and input rates
and its pose failures. The summary gives the memory growth after warm-up, the longest gap
between outputs (a stall) and the pose failure rate. The DDS transport is the node's default
(UDPv4) unless ``FASTDDS_BUILTIN_TRANSPORTS`` is set in the environment (both the node and the
publisher then use it); the result records which.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from mvfm_ros.pipeline.stats import POSE_FAILURES

SIZE = (480, 640)
WARMUP_S = 60.0
DRAIN_S = 15.0  # after the last frame, the most seconds to wait for the node to count it


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (Linux ``/proc``)."""
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f'no VmRSS for process {pid}')


def node_pid(pid: int, name: str = 'perception_node') -> int:
    """Return the process running ``name``: ``pid`` or, under ``ros2 launch``, a descendant."""
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            if name in Path(f'/proc/{current}/cmdline').read_bytes().decode(errors='replace'):
                return current
            children = Path(f'/proc/{current}/task/{current}/children').read_text().split()
        except OSError:  # the process ended meanwhile
            continue
        todo += [int(child) for child in children]
    raise RuntimeError(f'no {name} process under {pid}')


def _frames(bag: Path) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
    """Return the demo bag's images upsampled to 640x480, their K, and their poses."""
    import torch
    from rosbags.highlevel import AnyReader

    from mvfm_ros.geometry.camera import scale_intrinsics
    from mvfm_ros.messages.conversions import camera_info_matrix, image_to_rgb, pose_to_matrix

    images, poses, k = [], [], None
    with AnyReader([bag]) as reader:
        wanted = {'/camera/image', '/camera/camera_info', '/pose'}
        for conn, _, raw in reader.messages([c for c in reader.connections
                                             if c.topic in wanted]):
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.topic == '/camera/image':
                rgb = torch.from_numpy(image_to_rgb(msg)).permute(2, 0, 1)[None].float()
                big = torch.nn.functional.interpolate(rgb, size=SIZE, mode='bilinear')
                images.append(big[0].permute(1, 2, 0).round().byte().numpy())
            elif conn.topic == '/camera/camera_info' and k is None:
                small = camera_info_matrix(msg)
                k = scale_intrinsics(torch.from_numpy(small), SIZE[1] / msg.width,
                                     SIZE[0] / msg.height).numpy()
            elif conn.topic == '/pose':
                poses.append(pose_to_matrix(msg.pose))
    return images, k, poses


def _row(session, start: float, sent: int) -> dict[str, float]:
    """One sample: memory of the node, rates, pose failures and delays, counts."""
    d = session.diagnostics
    return {'t_s': round(time.monotonic() - start, 1),
            'rss_mb': rss_mb(node_pid(session.process.pid)), 'sent': sent,
            'outputs': session.counts['features'],
            'input_rate_hz': float(d.get('input_rate_recent_hz', 0)),
            'output_rate_hz': float(d.get('output_rate_recent_hz', 0)),
            'pose_failures': sum(int(d.get(key, 0)) for key in POSE_FAILURES),
            'pose_delay_p90_s': float(d.get('pose_delay_p90_s', 0)),
            'pose_delay_max_s': float(d.get('pose_delay_max_s', 0)),
            'frames_received': int(d.get('frames_received', 0)),
            'frames_dropped': int(d.get('frames_dropped', 0))}


def run_soak(minutes: float, rate: float, output: Path, bag: Path, model: str = 'demo-vit',
             interval: float = 10.0) -> dict[str, Any]:
    """Run the soak of ``model`` (a shipped name or a file); return the rows and the summary."""
    from mvfm_ros.demo.player import PLAYED, Session
    from mvfm_ros.ros.publishing import rclpy_factory

    images, k, poses = _frames(bag)
    output.mkdir(parents=True, exist_ok=True)
    profile = os.environ.get('FASTDDS_DEFAULT_PROFILES_FILE')
    transport = os.environ.get('FASTDDS_BUILTIN_TRANSPORTS') or (
        f'profile {Path(profile).name}' if profile else "the node's default")
    session = Session({'diagnostics_period': 1.0, 'checkpoint': model}, output / 'node.log',
                      keep_outputs=False)
    build = rclpy_factory()
    classes = session.classes
    rows: list[dict[str, float]] = []
    try:
        if not session.wait(lambda: all(p.get_subscription_count()
                                        for p in session.pubs.values()), 180):
            raise RuntimeError('perception_node did not subscribe within 180 s')
        start = time.monotonic()
        end = start + 60 * minutes
        next_sample, sent, longest_gap = start, 0, 0.0
        session.last_output = start
        period = 1.0 / rate
        while time.monotonic() < end:
            due = start + sent * period
            session.spin(max(0.0, due - time.monotonic()))
            now_ns = session.node.get_clock().now().nanoseconds
            header = build.header(now_ns, 'camera_optical')
            j = sent % len(images)
            info = build.camera_info(header, k, *SIZE)
            pose = classes['geometry_msgs/msg/PoseStamped'](
                header=build.header(now_ns, 'map'), pose=build.pose(poses[j % len(poses)]))
            session.pubs['/camera/camera_info'].publish(info)
            session.pubs['/pose'].publish(pose)
            session.pubs['/camera/image'].publish(build.image(header, images[j], 'rgb8'))
            sent += 1
            longest_gap = max(longest_gap, time.monotonic() - session.last_output)
            if time.monotonic() >= next_sample:
                rows.append(_row(session, start, sent))
                print(' '.join(f'{key} {value}' for key, value in rows[-1].items()), flush=True)
                next_sample += interval
        # Drained: the node's diagnostics (every second) catch up with the last frames sent
        # before the final row, so received and sent are compared at the same moment.
        deadline = time.monotonic() + DRAIN_S
        while (time.monotonic() < deadline
               and int(session.diagnostics.get('frames_received', 0)) < sent):
            session.spin(0.2)
        session.spin(1.5)
        rows.append(_row(session, start, sent))
        print(' '.join(f'{key} {value}' for key, value in rows[-1].items()), flush=True)
    finally:
        code = session.close()
    return {'minutes': minutes, 'rate_hz': rate, 'size': list(SIZE), 'model': model,
            'transport': transport, 'rows': rows,
            'node_exit_code': code, 'topics_played': sorted(PLAYED),
            'summary': summarize(rows, longest_gap)}


def summarize(rows: list[dict[str, float]], longest_gap: float) -> dict[str, float]:
    """Memory growth after warm-up, stalls and pose failures of a soak."""
    if not rows:
        return {}
    warm = next((r for r in rows if r['t_s'] >= WARMUP_S), rows[0])
    last = rows[-1]
    received = max(last['frames_received'], 1)
    return {
        'rss_start_mb': rows[0]['rss_mb'], 'rss_after_warmup_mb': warm['rss_mb'],
        'rss_end_mb': last['rss_mb'],
        'rss_growth_total_pct': 100 * (last['rss_mb'] / rows[0]['rss_mb'] - 1),
        'rss_growth_after_warmup_pct': 100 * (last['rss_mb'] / warm['rss_mb'] - 1),
        'longest_output_gap_s': longest_gap,
        'pose_failure_rate': last['pose_failures'] / received,
        'pose_delay_max_s': max(r['pose_delay_max_s'] for r in rows),
        'frames_sent': last['sent'], 'frames_received': last['frames_received'],
        'outputs': last['outputs'], 'frames_dropped': last['frames_dropped'],
    }


def format_soak(result: dict[str, Any]) -> str:
    """Table of the samples and the summary."""
    keys = ('t_s', 'rss_mb', 'input_rate_hz', 'output_rate_hz', 'outputs', 'pose_failures',
            'pose_delay_p90_s', 'pose_delay_max_s', 'frames_dropped')
    lines = [' '.join(f'{k:>14}' for k in keys)]
    for row in result['rows']:
        lines.append(' '.join(f'{row[k]:>14.1f}' if isinstance(row[k], float)
                              else f'{row[k]:>14}' for k in keys))
    lines.append('')
    lines += [f'{k}: {v:.4g}' if isinstance(v, float) else f'{k}: {v}'
              for k, v in result['summary'].items()]
    return '\n'.join(lines)

