"""The ROS-free pipeline: poses over time, keyframes, checks, streaming engine, worker."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch
from conftest import TINY_ADAPTER

from mvfm_ros import build_model
from mvfm_ros.geometry.interpolation import (
    interpolate_pose,
    matrix_to_quat,
    pose_matrix,
    quat_to_matrix,
    rotation_angle,
    slerp,
)
from mvfm_ros.pipeline import (
    AsyncPipeline,
    Engine,
    Frame,
    FrameError,
    Pipeline,
    PoseBuffer,
    PoseLookupError,
    Settings,
    Wanted,
    Window,
)
from mvfm_ros.pipeline.keyframes import KeyframeSelector
from mvfm_ros.pipeline.render import view_arrays


def rotation_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def test_quaternion_round_trip_and_slerp_midpoint(generator) -> None:
    from conftest import random_rotation

    for _ in range(20):
        rot = random_rotation(generator).numpy()
        back = quat_to_matrix(matrix_to_quat(rot))
        assert np.allclose(back, rot, atol=1e-9)
    q0, q1 = matrix_to_quat(rotation_z(0.0)), matrix_to_quat(rotation_z(1.0))
    assert np.allclose(quat_to_matrix(slerp(q0, q1, 0.5)), rotation_z(0.5), atol=1e-9)
    with pytest.raises(ValueError, match='degenerate'):
        quat_to_matrix([0, 0, 0, 0])
    with pytest.raises(ValueError):
        pose_matrix([0, math.nan, 0], [0, 0, 0, 1])


def test_pose_buffer_interpolates_and_never_extrapolates() -> None:
    buffer = PoseBuffer(max_gap=1.0)
    a = pose_matrix([0, 0, 0], matrix_to_quat(rotation_z(0.0)))
    b = pose_matrix([2, 0, 0], matrix_to_quat(rotation_z(0.8)))
    buffer.add(2_000_000_000, b)  # out of order on purpose
    buffer.add(1_000_000_000, a)
    mid = buffer.lookup(1_250_000_000)
    assert np.allclose(mid[:3, 3], [0.5, 0, 0])
    assert math.isclose(rotation_angle(mid[:3, :3]), 0.2, abs_tol=1e-9)
    assert np.allclose(buffer.lookup(2_000_000_000), b)
    with pytest.raises(PoseLookupError) as err:
        buffer.lookup(2_000_000_001)
    assert err.value.kind == 'pose_extrapolation'
    buffer.add(5_000_000_000, b)
    with pytest.raises(PoseLookupError) as err:
        buffer.lookup(3_000_000_000)
    assert err.value.kind == 'pose_gap'
    assert np.allclose(interpolate_pose(a, b, 0.0), a) and np.allclose(
        interpolate_pose(a, b, 1.0), b)


def test_keyframes_need_motion_rotation_or_time() -> None:
    selector = KeyframeSelector(min_translation=0.5, min_rotation_deg=10, max_interval=2.0)
    pose = np.eye(4)
    assert selector.is_keyframe('c', 0, pose)
    moved = pose.copy()
    moved[0, 3] = 0.3
    assert not selector.is_keyframe('c', 100, moved)
    moved[0, 3] = 0.6
    assert selector.is_keyframe('c', 200, moved)
    turned = moved.copy()
    turned[:3, :3] = rotation_z(math.radians(12))
    assert selector.is_keyframe('c', 300, turned)
    assert not selector.is_keyframe('c', 400, turned)
    assert selector.is_keyframe('c', 300 + 2_000_000_000, turned)
    assert selector.is_keyframe('other', 0, pose)  # per camera


@pytest.fixture
def tiny_engine() -> Engine:
    model = build_model('vit_small_patch16_224', pretrained=False,
                        backbone_kwargs=dict(patch_size=8, embed_dim=32, depth=3, num_heads=2),
                        adapter_blocks=(1, 2), normal_head=8, **TINY_ADAPTER)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.1)
    return Engine(model, 'cpu', input_size=(32, 48), num_segments=3)


def frames(count: int, seed: int = 0, size=(40, 60)) -> list[Frame]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        pose = np.eye(4)
        pose[:3, :3] = rotation_z(0.1 * i)
        pose[:3, 3] = [0.2 * i, 0, 0]
        k = np.array([[50.0, 0, size[1] / 2], [0, 50.0, size[0] / 2], [0, 0, 1]])
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        out.append(Frame(image, k, pose, (i + 1) * 100_000_000, 'cam'))
    return out


def test_streaming_engine_equals_the_full_forward_pass(tiny_engine) -> None:
    config = Settings(window_size=3, window_anchor=0, min_translation=0, min_rotation_deg=0,
                      max_interval=0)
    pipeline = Pipeline(tiny_engine, config)
    windows = [pipeline.add(f) for f in frames(5)]
    # The first keyframe is a one-view window: it gets outputs too.
    assert [len(w.frames) for w in windows] == [1, 2, 3, 3, 3]
    assert [w.window_id for w in windows] == [0, 1, 2, 3, 4]
    assert all(len(w.views) == 1 and w.views[0].frame is w.frames[w.new_view] for w in windows)
    results = [w.views for w in windows]
    assert results[-1][0].window == (2, 3, 4)
    # The window holds keyframes 2, 3, 4 and the work cached for them only.
    assert [k.frame.uid for k in pipeline.window.keyframes] == [2, 3, 4]
    assert all(k.prepared is not None and k.prepared.tokens is not None
               for k in pipeline.window.keyframes)
    streamed, _ = tiny_engine.features(pipeline.window)
    window = pipeline.window.frames
    prepared = [tiny_engine.prepare(f) for f in window]
    with torch.no_grad():
        full = tiny_engine.model(torch.stack([p.image for p in prepared])[None],
                                 torch.stack([p.intrinsics for p in prepared])[None],
                                 torch.stack([p.pose for p in prepared])[None])[0]
    assert torch.allclose(streamed, full, atol=1e-5)
    # The window carries every view's features as computed together, the new one's included.
    assert np.allclose(windows[-1].features, full.permute(0, 2, 3, 1).numpy(), atol=1e-5)
    assert windows[-1].feature_intrinsics.shape == (3, 3, 3)
    last = results[-1][0]
    assert last.features.shape == (4, 6, 32)
    assert last.normals.shape == (32, 48, 3)
    assert np.allclose(np.linalg.norm(last.normals, axis=-1), 1, atol=1e-4)
    assert last.segments.shape == (32, 48) and last.segments.max() < 3
    arrays = {topic: array for _, _, topic, array in view_arrays(windows[-1])}
    assert arrays['features/pca'].dtype == np.uint8
    assert arrays['segmentation/color'].shape == (32, 48, 3)
    # Feature-grid K: the source K scaled by grid/size with the pixel-centre rule.
    k = window[-1].intrinsics
    assert math.isclose(last.feature_intrinsics[0, 0], k[0, 0] * 6 / 60)
    assert math.isclose(last.feature_intrinsics[0, 2], (k[0, 2] + 0.5) * 6 / 60 - 0.5)


def test_pipeline_refuses_bad_frames_with_their_kind(tiny_engine) -> None:
    pipeline = Pipeline(tiny_engine, Settings(min_translation=0, min_rotation_deg=0,
                                                    max_interval=0))
    good = frames(3)
    assert pipeline.accept(good[1])

    def refused(frame: Frame) -> str:
        with pytest.raises(FrameError) as err:
            pipeline.accept(frame)
        return err.value.kind

    dup = frames(3)[1]
    assert refused(dup) == 'duplicate_stamp'
    assert refused(good[0]) == 'out_of_order_stamp'
    nan_pose = frames(3)[2]
    nan_pose.cam_to_world[0, 3] = np.nan
    assert refused(nan_pose) == 'bad_pose'
    skew = frames(3)[2]
    skew.cam_to_world[:3, :3] *= 2
    assert refused(skew) == 'bad_pose'
    bad_k = frames(3)[2]
    bad_k.intrinsics[0, 0] = 0
    assert refused(bad_k) == 'bad_camera_info'
    grey = frames(3)[2]
    grey.image = grey.image[..., 0]
    assert refused(grey) == 'bad_image'
    counts = pipeline.stats.counts
    assert counts['duplicate_stamp'] == counts['out_of_order_stamp'] == 1
    assert counts['bad_pose'] == 2
    assert pipeline.accept(good[2])  # keeps working


def test_prompt_selects_the_object_under_a_world_point(tiny_engine) -> None:
    pipeline = Pipeline(tiny_engine, Settings(min_translation=0, min_rotation_deg=0,
                                                    max_interval=0))
    for f in frames(2):
        results = pipeline.add(f).views
    assert 255 not in results[0].segments
    pipeline.set_prompt([0.2, 0.0, 2.0])  # in front of the cameras
    results = pipeline.add(frames(3)[2]).views
    assert (results[0].segments == 255).any()
    with pytest.raises(FrameError):
        pipeline.set_prompt([math.nan, 0, 0])


def test_async_pipeline_drops_oldest_when_the_model_is_busy(tiny_engine) -> None:
    config = Settings(min_translation=0, min_rotation_deg=0, max_interval=0,
                            queue_size=1)
    pipeline = Pipeline(tiny_engine, config)
    release, entered = threading.Event(), threading.Event()
    got = []
    original = pipeline.process

    def slow_process(frame):
        entered.set()
        release.wait(10)  # hold the worker on the first keyframe
        return original(frame)

    pipeline.process = slow_process
    worker = AsyncPipeline(pipeline, lambda window: got.extend(window.views))
    worker.start()
    try:
        items = frames(5)
        assert worker.submit(items[0])
        assert entered.wait(10)
        for f in items[1:]:
            assert worker.submit(f)
        # Worker holds frame 0; the queue (size 1) kept only the newest: 1, 2, 3 dropped.
        assert pipeline.stats.counts['frames_dropped'] == 3
        release.set()
        assert worker.wait_idle(30)
        assert [r.frame.uid for r in got] == [0, 4]
    finally:
        worker.stop()


def window_of(items: list[Frame]) -> Window:
    window = Window(len(items))
    for uid, item in enumerate(items):
        item.uid = uid
        window.push(item)
    return window


def test_results_for_some_views_equal_those_of_the_whole_window(tiny_engine) -> None:
    window = window_of(frames(3))
    whole = tiny_engine.run(window)
    window.centres = None  # the same k-means start as the first run
    newest = tiny_engine.run(window, outputs=[2])
    assert len(whole.views) == 3 and len(newest.views) == 1
    every = {topic: array for result, _, topic, array in view_arrays(whole)
             if result.frame.uid == 2}
    new = {topic: array for _, _, topic, array in view_arrays(newest)}
    assert set(every) == set(new) == {'features', 'features/camera_info', 'features/pca',
                                      'normals', 'normals/color', 'segmentation',
                                      'segmentation/color'}
    # The normal head runs on 3 views in one case and 1 in the other: batched convolutions
    # differ in the last float bits, so unit normals get a 1e-4 tolerance.
    for topic in every:
        atol = 1e-4 if topic == 'normals' else 1e-5
        assert np.allclose(new[topic].astype(float), every[topic].astype(float),
                           atol=atol), topic


def test_outputs_nobody_wants_are_not_computed(tiny_engine) -> None:
    window = window_of(frames(3))
    planner = tiny_engine.run(window, outputs=[2], wanted=Wanted(frozenset({'features'})))
    view = planner.views[0]
    assert view.normals is None and view.segments is None and view.ops == {}
    assert window.centres is None  # no k-means ran
    assert [t for _, _, t, _ in view_arrays(planner, Wanted(frozenset({'features'})))] == [
        'features']
    everything = tiny_engine.run(window, outputs=[2])
    assert np.array_equal(everything.views[0].features, view.features)
    assert everything.views[0].normals is not None and window.centres is not None


@pytest.mark.parametrize('queue_size', [1, 4])
def test_a_time_jump_during_processing_leaves_no_old_keyframe_in_the_next_window(
        tiny_engine, queue_size) -> None:
    """A bag loop arrives while the worker is inside process().

    Queued or dropped, no keyframe of the old window reaches the output of the first keyframe
    after the jump.
    """
    settings = Settings(min_translation=0, min_rotation_deg=0, max_interval=0,
                        queue_size=queue_size)
    pipeline = Pipeline(tiny_engine, settings)
    busy, release = threading.Event(), threading.Event()
    original = pipeline.process

    def slow_process(frame):
        if frame.uid == 1:
            busy.set()
            release.wait(10)
        return original(frame)

    pipeline.process = slow_process
    got = []
    worker = AsyncPipeline(pipeline, got.append)
    worker.start()
    try:
        old = frames(3)
        for item in old:
            item.stamp_ns += 100 * 10**9  # 100.1 s, 100.2 s, 100.3 s
        assert worker.submit(old[0]) and worker.submit(old[1])
        assert busy.wait(10)  # the worker is processing keyframe 1
        assert worker.submit(old[2])
        restart = frames(1, seed=1)[0]  # 0.1 s: the stamps jumped 100 s back
        assert worker.submit(restart)
        assert pipeline.stats.counts['time_jump'] == 1
        release.set()
        assert worker.wait_idle(30)
    finally:
        worker.stop()
    after = [w for w in got if w.frames[w.new_view] is restart]
    assert len(after) == 1
    assert [f.uid for f in after[0].frames] == [restart.uid]
    dropped = pipeline.stats.counts['frames_dropped']  # by design when the queue is full
    assert len(got) + dropped == 4 and (queue_size == 1 or dropped == 0)


def test_worker_reports_node_overhead_beyond_inference(tiny_engine) -> None:
    config = Settings(min_translation=0, min_rotation_deg=0, max_interval=0)
    pipeline = Pipeline(tiny_engine, config)
    got = []
    worker = AsyncPipeline(pipeline, lambda window: got.extend(window.views))
    worker.start()
    try:
        for item in frames(3):
            item.conversion_s = 0.25  # as if the message took this long to convert
            assert worker.submit(item)
            assert worker.wait_idle(30)
    finally:
        worker.stop()
    assert len(got) == 3 and all(0 < r.inference <= r.latency for r in got)
    snap = pipeline.stats.snapshot()
    # Conversion counts as overhead; the model's time does not.
    assert 0.25 <= snap['overhead_p50_s'] < 0.25 + snap['latency_max_s']
    assert snap['overhead_fraction'] == pytest.approx(
        snap['overhead_p50_s'] / snap['inference_p50_s'])


def test_an_anchored_window_keeps_its_reference_for_its_span() -> None:
    from mvfm_ros.pipeline.window import Window, slide

    members, age, seen = [], 0, []
    for i in range(14):
        members, age = slide(members, i, 4, 6, age)
        seen.append(members)
    assert seen[3] == [0, 1, 2, 3] and seen[5] == [0, 3, 4, 5]  # 0 stays, the rest slide
    assert seen[6] == [3, 4, 5, 6]  # span over: the next oldest becomes the reference
    assert seen[11] == [3, 9, 10, 11] and seen[12] == [9, 10, 11, 12]
    assert all(len(m) <= 4 and m[-1] == i for i, m in enumerate(seen))
    plain = []
    for i in range(6):
        plain = slide(plain, i, 4)[0]
    assert plain == [2, 3, 4, 5]
    window = Window(3, anchor_span=4)
    k = np.eye(3)
    for uid in range(5):
        window.push(Frame(np.zeros((4, 4, 3), np.uint8), k, np.eye(4), uid, uid=uid))
    assert [f.uid for f in window.frames] == [2, 3, 4]  # 0 kept 3 keyframes, then left
    window.reset(1)
    window.push(Frame(np.zeros((4, 4, 3), np.uint8), k, np.eye(4), 9, uid=9))
    assert [f.uid for f in window.frames] == [9] and window.anchor_age == 0
