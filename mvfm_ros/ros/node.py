"""``mvfm_perception``: posed camera streams in, multi-view consistent features out.

The lifecycle node publishes features, normals and segments for each keyframe.

configure: read parameters, load the model, create publishers (and the TF listener).
activate: subscribe and start the inference worker. deactivate: unsubscribe, stop the worker,
free GPU memory. Callbacks only convert, check and enqueue; inference runs in the worker thread.

Threads: the executor (one thread, ``rclpy.spin``) only takes messages: an image callback
queues the raw message and returns, so pose and camera_info callbacks are never stuck behind
image conversion. An intake thread converts and checks images, waits (up to ``tf_timeout``) for
the pose at each image stamp and hands keyframes to the inference worker thread. A lock guards
what the executor and the intake share (pose buffers, the pipeline's intake).
"""

from __future__ import annotations

import collections
import resource
import threading
import time
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PointStamped, PoseStamped
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from mvfm_ros.pipeline import (
    PROBLEMS,
    AsyncPipeline,
    Engine,
    Frame,
    FrameError,
    Pipeline,
    PipelineConfig,
    WindowResult,
)
from mvfm_ros.pipeline.outputs import MAP_OUTPUT, OUTPUTS, topic_name
from mvfm_ros.ros.assemble import frame_from_messages, nearest_in_time
from mvfm_ros.ros.conversions import depth_to_metres, stamp_to_ns
from mvfm_ros.ros.inputs import Inputs
from mvfm_ros.ros.params import LIVE, all_parameters, validate
from mvfm_ros.ros.pose_sources import PoseNotYet, TfPoseSource, TopicPoseSource

NODE_NAME = 'mvfm_perception'
MAX_PENDING = 64
MAX_PROMPT_M = 1e6  # a prompt point further than this from the world origin is refused
QOS_MATCH_PERIOD = 2.0  # seconds between re-matching input reliability to the publishers
POSE_DEPTH = 100  # history depth of pose subscriptions
DEPTH_KEEP = 30  # depth images kept per camera to pair with images by stamp


class PerceptionNode(LifecycleNode):
    """The perception lifecycle node (see the module docstring and README)."""

    def __init__(self, **kwargs: Any) -> None:
        """Declare every parameter (defaults: :mod:`mvfm_ros.ros.params`)."""
        super().__init__(NODE_NAME, **kwargs)
        for name, (default, text) in all_parameters().items():
            # An empty list does not say its element type: declare string arrays by type.
            value = Parameter.Type.STRING_ARRAY if default == [] else default
            self.declare_parameter(name, value, ParameterDescriptor(description=text))
        self.values: dict[str, Any] = {}
        self.engine: Engine | None = None
        self.pipeline: Pipeline | None = None
        self.worker: AsyncPipeline | None = None
        self.pose_sources: dict[str, Any] = {}
        self.output_pubs: dict[str, Any] = {}  # full topic -> publisher
        self.messages = None  # MessageFactory over the rclpy classes
        self.diagnostics_pub = None
        self.last_problem: dict[str, str] = {}
        self.inputs: Inputs | None = None
        self._subs: list[Any] = []
        self._timers: list[Any] = []
        self._infos: dict[str, Any] = {}
        self._depths: dict[str, collections.deque] = {}  # camera -> (stamp_ns, Image)
        self._reset_srv = None
        self._raw: collections.deque = collections.deque()  # (camera, Image, arrival)
        self._pending: collections.deque = collections.deque()  # (frame, frame_id, deadline)
        self._intake_cond = threading.Condition()
        self._intake_thread: threading.Thread | None = None
        self._intake_stop = False
        self._last_log: dict[str, float] = {}
        self._reported: dict[str, float] = {}
        self.node_counts: collections.Counter[str] = collections.Counter()  # when unconfigured
        self.device_name = 'none'
        self._lock = threading.RLock()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        # rclpy's change_state service raises (and kills the process) for a transition id that
        # is invalid in the current state (ros2/rclpy#1209): check it first.
        self._change_state = self._service_change_state.callback
        self._service_change_state.callback = self._on_change_state

    def parameter_values(self) -> dict[str, Any]:
        """Every parameter's current value (an unset string array is its empty default)."""
        return {name: self.get_parameter_or(name, Parameter(name, value=default)).value
                for name, (default, _) in all_parameters().items()}

    # ---------------------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Read parameters, load the model, create publishers."""
        values = self.parameter_values()
        try:
            validate(values)
            config = PipelineConfig.from_dict(values)
            self.messages = _message_factory()
            self.engine, description = Engine.from_config(config)
        except Exception as err:  # any reason the model cannot load: say it and stay unconfigured
            self.get_logger().error(f'configure failed: {err}')
            return TransitionCallbackReturn.FAILURE
        self.values = values
        self.pipeline = Pipeline(self.engine, config)
        self.pipeline.on_event = lambda kind, message: self.problem(kind, message, counted=True)
        self.device_name = str(self.engine.device)
        self.get_logger().info(
            f'model: {description}; device {self.engine.device}, precision '
            f'{self.engine.precision}, input {self.engine.input_size[1]}x'
            f'{self.engine.input_size[0]}, window {config.window_size}')
        qos = self._output_qos()
        cameras = values['cameras']
        operators = [op.name for op in self.engine.lifting.operators]
        for output in OUTPUTS:
            kind = self.messages.types[output.msgtype]
            for camera in cameras if output.per_view else ['']:
                for name in output.topics(operators):
                    topic = topic_name(values['output_namespace'], output, camera, len(cameras),
                                       name)
                    self.output_pubs[topic] = self.create_lifecycle_publisher(kind, topic, qos)
        from std_srvs.srv import Trigger

        self._reset_srv = self.create_service(Trigger, '~/reset_map', self._on_reset_map)
        self.diagnostics_pub = self.create_lifecycle_publisher(DiagnosticArray, '/diagnostics',
                                                               10)
        try:
            self._make_pose_sources()
        except RuntimeError as err:
            self.get_logger().error(f'configure failed: {err}')
            return TransitionCallbackReturn.FAILURE
        return super().on_configure(state)

    def _make_pose_sources(self) -> None:
        cameras = self.values['cameras']
        if self.values['pose_source'] == 'tf':
            source = TfPoseSource(self, self.values['world_frame'])
            self.pose_sources = {camera: source for camera in cameras}
        else:
            self.pose_sources = {camera: TopicPoseSource(self.values['world_frame'],
                                                         self.values['max_pose_gap'])
                                 for camera in cameras}

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe and start the worker."""
        self.engine.restore()
        self.worker = AsyncPipeline(self.pipeline, self._publish_results, self._worker_error)
        self.worker.start()
        cameras = self.values['cameras']
        self.inputs = Inputs(self, self.values['input_reliability'], self.values['input_depth'],
                             self.problem)
        for camera in cameras:
            self.inputs.add(self._input_topic(camera, 'camera_info'), CameraInfo,
                            lambda msg, c=camera: self._infos.__setitem__(c, msg))
            self.inputs.add(self._input_topic(camera, 'image'), Image,
                            lambda msg, c=camera: self._on_image(c, msg))
            if self.values['use_depth']:
                self._depths[camera] = collections.deque(maxlen=DEPTH_KEEP)
                self.inputs.add(self._input_topic(camera, 'depth'), Image,
                                lambda msg, c=camera: self._on_depth(c, msg))
            if self.values['pose_source'] == 'topic':
                kind = PoseStamped if self.values['pose_type'] == 'pose' else Odometry
                # Poses are small and must not be lost while an image callback runs: keep
                # seconds of them, as tf2's listener does (/tf depth 100).
                self.inputs.add(self._input_topic(camera, self.values['pose_topic']), kind,
                                lambda msg, c=camera: self._on_pose(c, msg),
                                min_depth=POSE_DEPTH)
        if self.values['prompt_topic']:
            self._subs.append(self.create_subscription(
                PointStamped, self.values['prompt_topic'], self._on_prompt, 10))
        self.get_logger().info('inputs: ' + self.inputs.describe())
        # The intake thread converts queued images and retries those waiting for a pose when
        # one arrives (topic) or every 50 ms while any wait (TF, deadlines).
        self._intake_stop = False
        self._intake_thread = threading.Thread(target=self._intake_loop, name='mvfm-intake',
                                               daemon=True)
        self._intake_thread.start()
        self._timers.append(self.create_timer(QOS_MATCH_PERIOD, self._match_qos))
        self._timers.append(self.create_timer(self.values['diagnostics_period'],
                                              self._publish_diagnostics))
        if self.values['use_depth'] and self.values['map_period'] > 0:
            self._timers.append(self.create_timer(self.values['map_period'], self._publish_map))
        self.get_logger().info('active: waiting for images on ' + ', '.join(
            self.resolve_topic_name(self._input_topic(c, 'image')) for c in cameras))
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unsubscribe, stop the worker, free GPU memory."""
        self._stop_inputs()
        self.engine.release()
        self.pipeline.reset()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release publishers, the model and the TF listener."""
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop everything."""
        self._stop_inputs()
        self._release()
        return super().on_shutdown(state)

    def close(self) -> None:
        """Stop the worker and release everything (for shutdown without a transition)."""
        self._stop_inputs()
        self._release()

    def _stop_inputs(self) -> None:
        if self.inputs is not None:
            self.inputs.close()
            self.inputs = None
        for sub in self._subs:
            self.destroy_subscription(sub)
        for timer in self._timers:
            self.destroy_timer(timer)
        self._subs, self._timers = [], []
        with self._intake_cond:
            self._intake_stop = True
            self._intake_cond.notify_all()
        if self._intake_thread is not None:
            self._intake_thread.join(timeout=10)
            self._intake_thread = None
        with self._lock:
            self._raw.clear()
            self._pending.clear()
            self._depths.clear()
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def _release(self) -> None:
        if self._reset_srv is not None:
            self.destroy_service(self._reset_srv)
            self._reset_srv = None
        for pub in self.output_pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self.output_pubs = {}
        if self.diagnostics_pub is not None:
            self.destroy_lifecycle_publisher(self.diagnostics_pub)
            self.diagnostics_pub = None
        # One TF source may serve every camera: close each distinct source once.
        for source in {id(s): s for s in self.pose_sources.values()}.values():
            if hasattr(source, 'close'):
                source.close()
        self.pose_sources = {}
        if self.engine is not None:
            self.engine.release()
        self.engine = self.pipeline = None

    # ------------------------------------------------------------------- runtime requests
    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        """Validate a run-time change of the whole parameter set; refuse it with the reason.

        ``log_throttle`` acts at once; the others take effect at the next configure, and the
        node says so.
        """
        declared = all_parameters()
        values = self.parameter_values()
        values.update({p.name: p.value for p in params if p.name in declared})
        try:
            validate(values)
            if str(values['device']).startswith('cuda'):
                from mvfm_ros.pipeline.engine import resolve_device

                resolve_device(values['device'])
        except (ValueError, RuntimeError) as err:
            self.problem('parameter_refused', f'set parameters refused: {err}')
            return SetParametersResult(successful=False, reason=str(err))
        for param in params:
            if param.name not in declared:
                continue
            if param.name in LIVE and self.values:
                self.values[param.name] = param.value
            elif self.engine is not None:
                self.get_logger().info(f'{param.name} = {param.value!r} takes effect at the '
                                       'next configure (deactivate, cleanup, configure, activate)')
        return SetParametersResult(successful=True)

    def _on_change_state(self, request: Any, response: Any) -> Any:
        """Serve lifecycle change_state, refusing transitions invalid in the current state."""
        # rclpy keeps the state machine private; its transitions list is what
        # get_available_transitions answers with: (id, label, start id, start, goal id, goal).
        machine = self._state_machine
        available = {t[0]: t[1] for t in machine.available_transitions}
        wanted = request.transition.label or request.transition.id
        valid = (request.transition.label in available.values() if request.transition.label
                 else request.transition.id in available)
        if not valid:
            self.problem('lifecycle_refused', f'transition {wanted!r} is not available in '
                         f'state {machine.current_state[1]!r}; available: '
                         f'{sorted(available.values())}')
            response.success = False
            return response
        return self._change_state(request, response)

    # ------------------------------------------------------------------------------- inputs
    def _output_qos(self) -> QoSProfile:
        reliability = (ReliabilityPolicy.RELIABLE
                       if self.values['output_reliability'] == 'reliable'
                       else ReliabilityPolicy.BEST_EFFORT)
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.values['output_depth'],
                          reliability=reliability)

    def _input_topic(self, camera: str, name: str) -> str:
        """Return an input's topic: as image_pipeline names them, prefixed per camera in a rig.

        One camera: ``image``, ``camera_info``, ``pose``; a rig: ``left/image``, ...
        """
        return name if len(self.values['cameras']) == 1 else f'{camera}/{name}'

    def problem(self, kind: str, message: str, counted: bool = False) -> None:
        """Count a bad input (unless the pipeline already did) and log it, throttled."""
        if not counted:
            pipeline = self.pipeline
            if pipeline is not None:
                pipeline.stats.count(kind)
            else:
                self.node_counts[kind] += 1
        self.last_problem[kind] = message
        now = time.monotonic()
        if now - self._last_log.get(kind, -1e9) >= self.values.get('log_throttle', 5.0):
            self._last_log[kind] = now
            self.get_logger().warning(f'[{kind}] {message}')

    def _on_image(self, camera: str, msg: Image) -> None:
        """Queue the raw image for the intake thread (the executor thread does no work)."""
        if self.pipeline is None:
            return
        with self._intake_cond:
            self._raw.append((camera, msg, time.monotonic()))
            self._intake_cond.notify()

    def _intake_loop(self) -> None:
        """Convert queued images, attach their poses when they come, submit keyframes."""
        while True:
            with self._intake_cond:
                # Woken by a new image or pose; polls pending images for their deadlines.
                self._intake_cond.wait_for(lambda: self._raw or self._intake_stop,
                                           timeout=0.05 if self._pending else 0.5)
                if self._intake_stop:
                    return
                raw = list(self._raw)
                self._raw.clear()
            if len(raw) > MAX_PENDING:  # far behind: keep the newest, count the rest
                for camera, _, _ in raw[:-MAX_PENDING]:
                    self.pipeline.stats.count('frames_received')
                    self.problem('frames_dropped', f'camera {camera}: image intake behind; '
                                 'oldest raw images dropped')
                raw = raw[-MAX_PENDING:]
            for camera, msg, arrived in raw:
                self._convert(camera, msg, arrived)
            self._retry_pending()

    def _convert(self, camera: str, msg: Image, arrived: float) -> None:
        pipeline = self.pipeline
        try:
            frame = frame_from_messages(camera, msg, self._infos.get(camera), received=arrived,
                                        now_ns=self.get_clock().now().nanoseconds)
        except FrameError as err:
            pipeline.stats.count('frames_received')
            where = ''
            if err.kind == 'missing_camera_info':
                topic = self.resolve_topic_name(self._input_topic(camera, 'camera_info'))
                where = f' (subscribed to {topic})'
            self.problem(err.kind, f'camera {camera}: {err}{where}')
            return
        deadline = arrived + self.values['tf_timeout']
        with self._lock:
            if self._try_submit(frame, msg.header.frame_id, deadline):
                return
            if len(self._pending) >= MAX_PENDING:
                old_frame, _, _ = self._pending.popleft()
                pipeline.stats.count('frames_received')
                self.problem('pose_lookup_failed', f'camera {old_frame.camera}: too many images '
                             'waiting for poses; oldest dropped')
            self._pending.append((frame, msg.header.frame_id, deadline))

    def _try_submit(self, frame: Frame, frame_id: str, deadline: float) -> bool:
        """Look up the pose and submit; False if the pose may still come."""
        try:
            frame.cam_to_world = self.pose_sources[frame.camera].lookup(frame_id, frame.stamp_ns)
        except PoseNotYet as err:
            if time.monotonic() < deadline:
                return False
            self.pipeline.stats.count('frames_received')
            self.problem('pose_lookup_failed', f'camera {frame.camera}: no pose within '
                         f"tf_timeout {self.values['tf_timeout']} s: {err}")
            return True
        except FrameError as err:
            self.pipeline.stats.count('frames_received')
            self.problem(err.kind, f'camera {frame.camera}: {err}')
            return True
        if self.values['use_depth'] and not self._attach_depth(frame, deadline):
            return False
        try:
            self.worker.submit(frame)
        except FrameError as err:
            self.problem(err.kind, f'camera {frame.camera}: {err}', counted=True)
        return True

    def _attach_depth(self, frame: Frame, deadline: float) -> bool:
        """Pair the frame with the depth of its stamp; False while it may still come."""
        found = nearest_in_time(self._depths.get(frame.camera, ()), frame.stamp_ns,
                                int(self.values['depth_tolerance'] * 1e9))
        if found is None:
            if time.monotonic() < deadline:
                return False
            self.problem('depth_missing', f'camera {frame.camera}: no depth within '
                         f"{self.values['depth_tolerance']} s of the image stamp after "
                         f"tf_timeout {self.values['tf_timeout']} s; frame served without depth")
            return True
        try:
            frame.depth = depth_to_metres(found, frame.image.shape[:2])
        except FrameError as err:
            self.problem(err.kind, f'camera {frame.camera}: {err}; frame served without depth')
        return True

    def _on_depth(self, camera: str, msg: Image) -> None:
        with self._lock:
            self._depths[camera].append((stamp_to_ns(msg.header.stamp), msg))
        with self._intake_cond:  # images waiting for this depth
            self._intake_cond.notify()

    def _retry_pending(self) -> None:
        with self._lock:
            if self.worker is None:
                return
            for _ in range(len(self._pending)):
                frame, frame_id, deadline = self._pending.popleft()
                if not self._try_submit(frame, frame_id, deadline):
                    self._pending.append((frame, frame_id, deadline))

    def _on_pose(self, camera: str, msg: Any) -> None:
        now = self.get_clock().now().nanoseconds
        pipeline = self.pipeline
        if pipeline is not None and now > 0:
            pipeline.stats.record_pose_delay((now - stamp_to_ns(msg.header.stamp)) / 1e9)
        try:
            with self._lock:
                notes = self.pose_sources[camera].add(msg, now)
        except FrameError as err:
            self.problem(err.kind, f'camera {camera}: {err}')
            return
        for kind, message in notes:
            self.problem(kind, f'camera {camera}: {message}')
        with self._intake_cond:  # images waiting for this pose
            self._intake_cond.notify()

    def _match_qos(self) -> None:
        if self.inputs is not None:
            for change in self.inputs.match():
                self.get_logger().info(f'input reliability matched to the publishers: {change}')

    def _on_prompt(self, msg: PointStamped) -> None:
        point = np.array([msg.point.x, msg.point.y, msg.point.z])
        frame = msg.header.frame_id.lstrip('/')
        try:
            if frame != self.values['world_frame'].lstrip('/'):
                raise FrameError('bad_prompt', f"prompt point is in frame '{frame}', expected "
                                 f"world_frame '{self.values['world_frame']}'")
            if np.all(np.isfinite(point)) and np.abs(point).max() > MAX_PROMPT_M:
                raise FrameError('bad_prompt', f'prompt point {point.tolist()} is more than '
                                 f'{MAX_PROMPT_M:g} m from the world origin')
            self.pipeline.set_prompt(point)
        except FrameError as err:
            self.problem(err.kind, str(err))
            return
        self.get_logger().info(f'prompt set at {point.round(3).tolist()} in {frame}')

    # ------------------------------------------------------------------------------ outputs
    def _worker_error(self, err: Exception) -> None:
        self.problem('inference_errors', f'window failed: {err!r}', counted=True)

    def _publish_results(self, window: WindowResult) -> None:
        """Publish every output of a window (worker thread); per-view ones by camera."""
        cameras = len(self.values['cameras'])
        for output, name, camera, msg in self.messages.outputs(window, self.engine.identity,
                                                               self.values['world_frame']):
            topic = topic_name(self.values['output_namespace'], output, camera, cameras, name)
            pub = self.output_pubs.get(topic)
            if pub is not None:
                pub.publish(msg)

    def _publish_map(self) -> None:
        """Publish the world-frame map (timer, every ``map_period``)."""
        pipeline = self.pipeline
        if pipeline is None:
            return
        header = self.messages.header(self.get_clock().now().nanoseconds,
                                      self.values['world_frame'])
        msg = self.messages.point_cloud(header, pipeline.map_cloud())
        pub = self.output_pubs.get(topic_name(self.values['output_namespace'], MAP_OUTPUT, '',
                                              1))
        if pub is not None:
            pub.publish(msg)

    def _on_reset_map(self, request: Any, response: Any) -> Any:
        """std_srvs/Trigger: empty the map (lifted ids keep counting)."""
        pipeline = self.pipeline
        if pipeline is None:
            response.success, response.message = False, 'not configured'
            return response
        removed = pipeline.reset_map()
        self.get_logger().info(f'map reset: {removed} voxels removed')
        response.success, response.message = True, f'{removed} voxels removed'
        return response

    def diagnostics(self) -> DiagnosticStatus:
        """Return the current diagnostics status (also published on /diagnostics)."""
        snap = self.pipeline.stats.snapshot() if self.pipeline is not None else {}
        problems = {k: int(snap.get(k, 0)) + self.node_counts[k] for k in PROBLEMS}
        new = {k: v - self._reported.get(k, 0) for k, v in problems.items()
               if v > self._reported.get(k, 0)}
        self._reported = problems
        level = DiagnosticStatus.OK
        message = 'ok'
        if new:
            level = DiagnosticStatus.ERROR if 'inference_errors' in new else DiagnosticStatus.WARN
            message = 'since last report: ' + ', '.join(f'{k} +{v}' for k, v in new.items())
        if self.pipeline is not None:
            snap.update(map_voxels=len(self.pipeline.map), map_evicted=self.pipeline.map.evicted,
                        map_mb=self.pipeline.map.nbytes / 2**20)
        values = {**{k: f'{v:.4g}' if isinstance(v, float) else str(v) for k, v in snap.items()},
                  **{k: str(v) for k, v in problems.items()}, 'device': self.device_name,
                  'queue': str(self.worker.pending() if self.worker else 0),
                  'inputs': self.inputs.describe() if self.inputs is not None else ''}
        values.update({f'last_{k}': v for k, v in self.last_problem.items()})
        values.update(_memory(self.device_name))
        return DiagnosticStatus(level=level, name=f'{NODE_NAME}: pipeline', message=message,
                                hardware_id=self.device_name,
                                values=[KeyValue(key=k, value=v) for k, v in values.items()])

    def _publish_diagnostics(self) -> None:
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [self.diagnostics()]
        self.diagnostics_pub.publish(msg)


def _message_factory() -> Any:
    """Return the rclpy message factory; a clear error where the interfaces are not built."""
    from mvfm_ros.ros.messages import rclpy_factory

    try:
        return rclpy_factory()
    except ImportError as err:
        raise RuntimeError(
            f'the mvfm_ros interfaces (mvfm_ros.msg) are not built ({err}): build the package '
            'with colcon (README: Installing into a ROS 2 workspace) or run `make interfaces` '
            'in a development checkout') from err


def _memory(device: str) -> dict[str, str]:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {'process_max_rss_mb': f'{rss:.0f}'}
    if device.startswith('cuda'):
        import torch

        out['cuda_allocated_mb'] = f'{torch.cuda.memory_allocated() / 2**20:.0f}'
        out['cuda_reserved_mb'] = f'{torch.cuda.memory_reserved() / 2**20:.0f}'
    return out


