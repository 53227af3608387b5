"""The perception node over real rclpy + Fast DDS on loopback, with the shipped demo model."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from ros_helpers import (  # isort: skip
    STEP_NS, SIZE, ConsoleLog, Player, frame_messages, make_node, start, wait_for)

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from mvfm_ros.data.correspondence import sample_correspondences  # noqa: E402
from mvfm_ros.geometry.camera import scale_intrinsics  # noqa: E402
from mvfm_ros.geometry.sampling import sample_features, to_unit  # noqa: E402
from mvfm_ros.models.factory import load_model  # noqa: E402
from mvfm_ros.models.loading import demo_model_path  # noqa: E402
from mvfm_ros.pipeline.outputs import output_topics  # noqa: E402
from mvfm_ros.ros.publishing import rclpy_factory  # noqa: E402

rclpy = pytest.importorskip('rclpy')



def test_node_publishes_consistent_outputs_for_each_keyframe(ros_context, sequence) -> None:
    sample, images = sequence
    harness = start(make_node())
    try:
        types = rclpy_factory().types
        table = output_topics([op.name for op in harness.node.engine.lifting.operators])
        # The node publishes exactly the outputs of the table (the map only with use_depth).
        assert set(harness.node.out.pubs) == {f'mvfm/{t}' for t in table}
        topics = {t: harness.subscribe(types[o.msgtype], f'/mvfm/{t}')
                  for t, o in table.items() if o.scope != 'map'}
        player = Player(harness)
        sent = []
        for i in range(len(images)):
            sent.append(player.send(images[i], sample.intrinsics[i].numpy(),
                                    sample.cam_to_world[i].double().numpy(), (50 + i) * STEP_NS))
            # Every keyframe yields a window, the first one included; wait for it before sending
            # on, so no keyframe is dropped in this test (overload is tested separately).
            assert wait_for(lambda i=i: len(topics['features']) > i, 30), f'no output for {i}'
        assert wait_for(lambda: all(len(v) >= 6 for v in topics.values()), 30)
        feats = topics['features']
        # One output per keyframe, stamped and framed like its source image.
        assert [(m.header.stamp.sec, m.header.stamp.nanosec) for m in feats] == [
            (m.header.stamp.sec, m.header.stamp.nanosec) for m in sent]
        assert all(m.header.frame_id == 'camera_optical' for t, v in topics.items()
                   if t != 'window' for m in v)
        model_dim = harness.node.engine.model.feature_dim
        h, w = SIZE[0] // 8, SIZE[1] // 8
        assert {(m.encoding, m.height, m.width) for m in feats} == {
            (f'32FC{model_dim}', h, w)}
        assert {(m.encoding, m.height, m.width) for m in topics['features/pca']} == {
            ('rgb8', h, w)}
        assert {m.encoding for m in topics['normals']} == {'32FC3'}
        assert {m.encoding for m in topics['segmentation']} == {'mono8'}
        assert {m.encoding for m in topics['segmentation/color']} == {'rgb8'}
        info = topics['features/camera_info'][1]
        expected = scale_intrinsics(sample.intrinsics[1].double(), w / SIZE[1], h / SIZE[0])
        assert (info.height, info.width) == (h, w)
        assert np.allclose(np.array(info.k).reshape(3, 3), expected.numpy(), atol=1e-6)
        normals = np.frombuffer(bytes(topics['normals'][-1].data), dtype='<f4').reshape(
            SIZE[0], SIZE[1], 3)
        assert np.allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-3)

        # A planner reading two views: corresponding pixels agree more than with base features.
        maps = {(m.header.stamp.sec, m.header.stamp.nanosec): np.frombuffer(
            bytes(m.data), dtype='<f4').reshape(h, w, model_dim) for m in feats}
        a, b = 1, 2
        key = [(s.header.stamp.sec, s.header.stamp.nanosec) for s in sent]
        mv = [torch.from_numpy(maps[key[i]].copy()).permute(2, 0, 1) for i in (a, b)]
        model = harness.node.engine.model
        with torch.no_grad():
            base = model.base_features(sample.images[None, [a, b]])[0]
        rows = sample_correspondences(sample.depth, sample.intrinsics, sample.cam_to_world, 300,
                                      torch.Generator().manual_seed(0), pairs=[(a, b)])
        assert len(rows) > 50
        ua, ub = to_unit(rows[:, 1:3], *SIZE), to_unit(rows[:, 4:6], *SIZE)

        def agreement(fa, fb):
            return torch.nn.functional.cosine_similarity(
                sample_features(fa, ua), sample_features(fb, ub), dim=1).mean().item()

        assert agreement(*mv) > agreement(base[0], base[1])

        check_windows(topics['window'], feats, sample, harness.node.settings.window_size)

        # Diagnostics carry the node's overhead (conversion, queueing, publishing) per window.
        values = {kv.key: kv.value for kv in harness.node.diagnostics().values}
        assert 0 < float(values['overhead_p50_s']) <= float(values['latency_max_s'])
        assert float(values['overhead_fraction']) > 0
    finally:
        harness.close()


def check_windows(windows, feats, sample, window_size) -> None:
    """Check the window messages against the per-keyframe topics and the ground truth.

    Views computed together, the new one equal to its per-keyframe features, poses and
    feature-grid intrinsics that put known 3D points where they are seen.
    """
    from mvfm_ros.geometry.interpolation import pose_matrix
    from mvfm_ros.geometry.projection import project_points, unproject_depth

    assert [w.window_id for w in windows] == list(range(len(feats)))
    assert [len(w.views) for w in windows] == [min(i + 1, window_size)
                                               for i in range(len(windows))]
    per_keyframe = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in feats}
    for window in windows:
        assert window.header.frame_id == 'map' and window.new_view == len(window.views) - 1
        new = window.views[window.new_view]
        key = (new.header.stamp.sec, new.header.stamp.nanosec)
        assert key == (window.header.stamp.sec, window.header.stamp.nanosec)
        assert bytes(new.features.data) == bytes(per_keyframe[key].data)
        assert window.backbone and len(window.backbone_sha256) == 64
        # The shipped model's identity, as its checkpoint records it.
        assert window.checkpoint_sha256 and window.pose_conditioning == load_model(
            demo_model_path()).config.pose_conditioning
    # Reproject: points seen in the first view, through each view's pose and feature-grid K,
    # land where the ground truth puts them (in feature-grid pixels).
    last = windows[-1]
    stamps = {round(t * 1e9): i for i, t in enumerate(
        [(50 + i) * STEP_NS / 1e9 for i in range(len(sample.images))])}
    first = stamps[last.views[0].header.stamp.sec * 10**9 + last.views[0].header.stamp.nanosec]
    depth = sample.depth[first][None]
    points = unproject_depth(depth, sample.intrinsics[first][None],
                             sample.cam_to_world[first][None])[0].reshape(-1, 3)
    points = points[torch.isfinite(points).all(-1)][::97].double()
    for view in last.views:
        index = stamps[view.header.stamp.sec * 10**9 + view.header.stamp.nanosec]
        p, q = view.pose.position, view.pose.orientation
        pose = torch.from_numpy(pose_matrix([p.x, p.y, p.z], [q.x, q.y, q.z, q.w]))
        assert torch.allclose(pose, sample.cam_to_world[index].double(), atol=1e-5)
        k = torch.tensor(view.feature_info.k).reshape(3, 3)
        got, _ = project_points(points, k, pose)
        h, w = view.features.height, view.features.width
        # Ground truth in image pixels, to grid pixels with the pixel-centre rule.
        seen, _ = project_points(points, sample.intrinsics[index].double(),
                                 sample.cam_to_world[index].double())
        want = (seen + 0.5) * torch.tensor([w / SIZE[1], h / SIZE[0]]).double() - 0.5
        assert torch.allclose(got, want, atol=1e-3)


def test_bad_inputs_are_logged_counted_and_survived(ros_context, sequence, capfd) -> None:
    sample, images = sequence
    harness = start(make_node())
    logs = ConsoleLog(capfd)
    diags = harness.subscribe(DiagnosticArray, '/diagnostics')
    feats = harness.subscribe(Image, '/mvfm/features')
    node = harness.node
    try:
        player = Player(harness)
        k = sample.intrinsics[0].numpy()
        pose = sample.cam_to_world[0].double().numpy()
        # An image before any camera_info.
        player.send(images[0], k, pose, 10 * STEP_NS, info_first=False)
        assert wait_for(lambda: node.pipeline.stats.counts['missing_camera_info'] == 1, 10)
        cases = []
        img, info, pose_m = frame_messages(images[0], k, pose, 11 * STEP_NS)
        info.width = 64  # camera_info of another resolution
        cases.append(('size_mismatch', img, info, pose_m))
        img, info, pose_m = frame_messages(images[0], k, pose, 12 * STEP_NS)
        img.encoding = '16UC1'
        cases.append(('unsupported_encoding', img, info, pose_m))
        img, info, pose_m = frame_messages(images[0], k, pose, 13 * STEP_NS)
        pose_m.pose.orientation.w = math.nan
        cases.append(('bad_pose', img, info, pose_m))
        img, info, pose_m = frame_messages(images[0], k, pose, 14 * STEP_NS, world='odom')
        cases.append(('pose_frame_mismatch', img, info, pose_m))
        for kind, img, info, pose_m in cases:
            player.info.publish(info)
            player.pose.publish(pose_m)
            player.image.publish(img)
            assert wait_for(lambda kind=kind: node.pipeline.stats.counts[kind] >= 1, 10), kind
        # Good frames, then a duplicate stamp, an out-of-order stamp and an image older than
        # every pose received (extrapolation backwards).
        for i, ns in enumerate((20 * STEP_NS, 21 * STEP_NS)):
            player.send(images[i], sample.intrinsics[i].numpy(),
                        sample.cam_to_world[i].double().numpy(), ns)
        assert wait_for(lambda: len(feats) >= 1, 30), str(dict(node.pipeline.stats.counts))
        player.send(images[1], k, pose, 21 * STEP_NS, pose_msg=False)
        assert wait_for(lambda: node.pipeline.stats.counts['duplicate_stamp'] == 1, 10)
        player.send(images[1], k, pose, 20 * STEP_NS + 1, pose_msg=False)
        assert wait_for(lambda: node.pipeline.stats.counts['out_of_order_stamp'] == 1, 10)
        player.send(images[1], k, pose, 5 * STEP_NS, pose_msg=False)
        assert wait_for(lambda: node.pipeline.stats.counts['pose_extrapolation'] == 1, 10)
        # An image newer than every pose: waits tf_timeout for a pose, then gives up.
        player.send(images[2], k, pose, 40 * STEP_NS, pose_msg=False)
        assert wait_for(lambda: node.pipeline.stats.counts['pose_lookup_failed'] == 1, 10)
        kinds = ('missing_camera_info', 'size_mismatch', 'unsupported_encoding', 'bad_pose',
                 'pose_frame_mismatch', 'duplicate_stamp', 'out_of_order_stamp',
                 'pose_extrapolation', 'pose_lookup_failed')
        # Each kind: a log line naming it, and a diagnostics count.
        assert wait_for(lambda: all(logs.has(f'[{kind}]') for kind in kinds), 10), logs.text

        def diag_counts():
            if not diags:
                return {}
            return {kv.key: kv.value for kv in diags[-1].status[0].values}

        assert wait_for(lambda: all(diag_counts().get(kind) == '1' for kind in kinds), 10), \
            diag_counts()
        # Still serving: the next good frame gives an output.
        before = len(feats)
        player.send(images[2], sample.intrinsics[2].numpy(),
                    sample.cam_to_world[2].double().numpy(), 41 * STEP_NS)
        assert wait_for(lambda: len(feats) > before, 30)
    finally:
        harness.close()


def test_overload_drops_oldest_and_latency_stays_bounded(ros_context, sequence) -> None:
    sample, images = sequence
    # A larger input makes inference slower than the 50 Hz input on this machine.
    harness = start(make_node(input_height=384, input_width=512, queue_size=1))
    feats = harness.subscribe(Image, '/mvfm/features')
    node = harness.node
    try:
        player = Player(harness)
        count = 30
        for i in range(count):
            j = i % len(images)
            player.send(images[j], sample.intrinsics[j].numpy(),
                        sample.cam_to_world[j].double().numpy(), (100 + i) * STEP_NS)
            assert wait_for(lambda i=i: node.pipeline.stats.counts['frames_received'] > i, 5)
            # No sleeping between frames beyond waiting for the node to take each one in.
        assert wait_for(lambda: node.worker.pending() == 0, 60)
        snap = node.pipeline.stats.snapshot()
        assert snap['frames_dropped'] > 0
        assert snap['keyframes'] == count
        assert snap['windows_processed'] + snap['frames_dropped'] == count
        # Bounded: a processed frame waited at most for the window in progress and the queue.
        bound = (node.settings.queue_size + 2) * snap['inference_max_s'] + 0.5
        assert snap['latency_max_s'] <= bound, (snap, bound)
        # Delivery to this subscriber trails the publish: wait for it, then check nothing extra.
        assert wait_for(lambda: len(feats) >= snap['windows_processed'], 30), (len(feats), snap)
        assert len(feats) == snap['windows_processed']
    finally:
        harness.close()


def test_lifecycle_activate_deactivate_activate(ros_context, sequence) -> None:
    from rclpy.lifecycle import TransitionCallbackReturn

    sample, images = sequence
    harness = start(make_node())
    node = harness.node
    feats = harness.subscribe(Image, '/mvfm/features')
    try:
        player = Player(harness)

        def send(i, ns):
            player.send(images[i], sample.intrinsics[i].numpy(),
                        sample.cam_to_world[i].double().numpy(), ns)

        send(0, 1 * STEP_NS)
        send(1, 2 * STEP_NS)
        assert wait_for(lambda: len(feats) == 2, 30)
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert not node.pipeline.window.keyframes
        assert next(node.engine.model.parameters()).device.type == 'cpu'
        assert wait_for(lambda: player.image.get_subscription_count() == 0, 10)
        send(2, 3 * STEP_NS)
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert wait_for(lambda: player.image.get_subscription_count() > 0, 10)
        send(3, 4 * STEP_NS)
        send(4, 5 * STEP_NS)
        assert wait_for(lambda: len(feats) == 4, 30)
        assert (feats[-1].header.stamp.sec, feats[-1].header.stamp.nanosec) == divmod(
            5 * STEP_NS, 1_000_000_000)
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert node.engine is None
    finally:
        harness.close()


def test_configure_fails_clearly_for_a_checkpoint_that_does_not_fit(ros_context,
                                                                    tmp_path) -> None:
    from rclpy.lifecycle import TransitionCallbackReturn

    bad = tmp_path / 'not_a_checkpoint.safetensors'
    bad.write_bytes(b'garbage')
    node = make_node(checkpoint=str(bad))
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node.engine is None
    finally:
        node.destroy_node()


@pytest.mark.skipif(torch.cuda.is_available(), reason='a GPU is present: cuda is not absent')
def test_configure_fails_clearly_when_cuda_is_requested_but_absent(ros_context) -> None:
    from rclpy.lifecycle import TransitionCallbackReturn

    node = make_node(device='cuda')
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    finally:
        node.destroy_node()


def test_console_script_as_the_readme_runs_it(ros_context, sequence) -> None:
    """Serve every keyframe, the first included, started as the README says; exit 0 on ^C.

    The command line: remapped inputs, topic poses and autostart.
    """
    from geometry_msgs.msg import PoseStamped
    from rclpy.node import Node

    exe = os.path.join(os.path.dirname(sys.executable), 'perception_node')
    if not os.path.exists(exe):
        pytest.skip('perception_node console script not installed (pip install -e .)')
    sample, images = sequence
    peer = Node('mvfm_test_camera')
    try:
        feats, diag = [], {}
        peer.create_subscription(Image, '/mvfm/features', feats.append, 50)
        peer.create_subscription(DiagnosticArray, '/diagnostics', lambda m: diag.update(
            {kv.key: kv.value for kv in m.status[0].values}), 10)
        image = peer.create_publisher(Image, '/x', 10)
        info = peer.create_publisher(CameraInfo, '/y', 10)
        pose = peer.create_publisher(PoseStamped, '/p', 10)
        proc = subprocess.Popen(
            [exe, '--ros-args', '-r', 'image:=/x', '-r', 'camera_info:=/y', '-p',
             'pose_source:=topic', '-p', 'pose_topic:=/p', '-p', 'autostart:=true'],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

        def spin_until(condition, timeout):
            end = time.monotonic() + timeout
            while not condition() and time.monotonic() < end and proc.poll() is None:
                rclpy.spin_once(peer, timeout_sec=0.05)
            return condition()

        try:
            # Subscribed, and (input_reliability auto) matched to these reliable publishers:
            # its /diagnostics say so once discovery has shown them to the node.
            assert spin_until(lambda: '/x (reliable)' in diag.get('inputs', '') and
                              '/y (reliable)' in diag.get('inputs', ''), 60), diag
            sent = []
            for i in range(3):  # moving 0.15 m apart or more: every frame is a keyframe
                img, inf, pos = frame_messages(images[2 * i], sample.intrinsics[2 * i].numpy(),
                                               sample.cam_to_world[2 * i].double().numpy(),
                                               (80 + 10 * i) * STEP_NS)
                info.publish(inf)
                pose.publish(pos)
                image.publish(img)
                sent.append((img.header.stamp.sec, img.header.stamp.nanosec))
                assert spin_until(lambda i=i: len(feats) > i, 30), f'no features for frame {i}'
            assert [(m.header.stamp.sec, m.header.stamp.nanosec) for m in feats] == sent
        finally:
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert 'shipped DEMO model' in out and 'Traceback' not in out
    finally:
        peer.destroy_node()


def test_console_script_help_and_failed_autostart() -> None:
    exe = os.path.join(os.path.dirname(sys.executable), 'perception_node')
    if not os.path.exists(exe):
        pytest.skip('perception_node console script not installed (pip install -e .)')
    run = subprocess.run([exe, '--help'], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0 and 'autostart' in run.stdout and 'window_size' in run.stdout
    # A configure that fails under autostart ends the process with status 1 (no idling).
    run = subprocess.run([exe, '--ros-args', '-p', 'autostart:=true', '-p',
                          'checkpoint:=/nonexistent.safetensors'], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert 'configure failed' in run.stdout + run.stderr
    # A parameter rclpy cannot parse (an unquoted ':' in a YAML list) is a clear error.
    run = subprocess.run([exe, '--ros-args', '-p', 'operators:=[superpixels, pkg.mod:fn]'],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and 'Traceback' not in run.stderr, run.stderr
    assert 'could not be parsed' in run.stderr and 'quote' in run.stderr


def test_demo_model_is_shipped_and_small() -> None:
    path = demo_model_path()
    assert path.is_file()
    assert path.stat().st_size <= 50 * 2**20


def test_a_two_camera_rig_shares_windows_and_namespaces_outputs(ros_context, sequence) -> None:
    from geometry_msgs.msg import PoseStamped

    sample, images = sequence
    harness = start(make_node(cameras=['left', 'right']))
    outs = {cam: harness.subscribe(Image, f'/mvfm/{cam}/features') for cam in ('left', 'right')}
    node = harness.node
    try:
        pubs = {cam: (harness.publisher(Image, f'{cam}/image'),
                      harness.publisher(CameraInfo, f'{cam}/camera_info'),
                      harness.publisher(PoseStamped, f'{cam}/pose')) for cam in outs}
        assert wait_for(lambda: all(p.get_subscription_count() > 0
                                    for trio in pubs.values() for p in trio), 10)
        for i in range(4):
            cam = ('left', 'right')[i % 2]
            img, info, pose = frame_messages(images[i], sample.intrinsics[i].numpy(),
                                             sample.cam_to_world[i].double().numpy(),
                                             (70 + i) * STEP_NS, frame_id=f'{cam}_optical')
            pubs[cam][1].publish(info)
            pubs[cam][2].publish(pose)
            pubs[cam][0].publish(img)
            # Paced on the outputs: the node drops queued keyframes by design when it is
            # slower than its input (a loaded machine); here each one is served before the next.
            assert wait_for(lambda i=i: len(outs['left']) + len(outs['right']) > i, 30), \
                dict(node.pipeline.stats.counts)
        assert node.pipeline.stats.counts['frames_dropped'] == 0
        assert {m.header.frame_id for m in outs['left']} == {'left_optical'}
        assert {m.header.frame_id for m in outs['right']} == {'right_optical'}
        assert len(node.pipeline.window.keyframes) == 4  # both cameras' views in one window
        assert {f.camera for f in node.pipeline.window.frames} == {'left', 'right'}
    finally:
        harness.close()


def test_no_frame_is_lost_from_a_reliable_publisher_with_default_qos(ros_context,
                                                                     sequence) -> None:
    """640x480 rgb8 at 10 Hz from a reliable publisher: every frame arrives (auto QoS)."""
    from rclpy.qos import ReliabilityPolicy

    sample, _ = sequence
    harness = start(make_node(input_reliability='auto', queue_size=1))
    node = harness.node
    try:
        player = Player(harness)  # reliable publishers, created after activation
        # The node re-matches its inputs to the publishers it sees (within 2 s).
        assert wait_for(lambda: all(i.reliability == ReliabilityPolicy.RELIABLE
                                    for i in node.inputs.inputs), 10), node.inputs.describe()
        rng = np.random.default_rng(0)
        k = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
        count = 30
        for i in range(count):
            image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
            player.send(image, k, sample.cam_to_world[i % 6].double().numpy(),
                        (300 + i) * STEP_NS)
            time.sleep(0.1)  # camera rate: 10 Hz
        assert wait_for(lambda: node.pipeline.stats.counts['frames_received'] == count, 20), \
            dict(node.pipeline.stats.counts)
        values = {kv.key: kv.value for kv in node.diagnostics().values}
        assert float(values['input_rate_recent_hz']) > 0
    finally:
        harness.close()
