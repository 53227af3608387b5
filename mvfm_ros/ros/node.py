"""``mvfm_perception``: posed camera streams in, multi-view consistent features out.

The lifecycle node publishes features, normals and segments for each keyframe.

configure: read parameters, load the model, create publishers (and the TF listener).
activate: subscribe and start the inference worker. deactivate: unsubscribe, stop the worker,
free GPU memory. Callbacks only convert, check and enqueue; inference runs in the worker thread.
"""

from __future__ import annotations

import collections
import resource
import time
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PointStamped, PoseStamped
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
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
from mvfm_ros.pipeline.outputs import OUTPUTS, topic_name
from mvfm_ros.ros.assemble import frame_from_messages
from mvfm_ros.ros.params import all_parameters, validate
from mvfm_ros.ros.pose_sources import PoseNotYet, TfPoseSource, TopicPoseSource

NODE_NAME = 'mvfm_perception'
MAX_PENDING = 64


class PerceptionNode(LifecycleNode):
    """The perception lifecycle node (see the module docstring and README)."""

    def __init__(self, **kwargs: Any) -> None:
        """Declare every parameter (defaults: :mod:`mvfm_ros.ros.params`)."""
        super().__init__(NODE_NAME, **kwargs)
        for name, (default, text) in all_parameters().items():
            self.declare_parameter(name, default, ParameterDescriptor(description=text))
        self.values: dict[str, Any] = {}
        self.engine: Engine | None = None
        self.pipeline: Pipeline | None = None
        self.worker: AsyncPipeline | None = None
        self.pose_sources: dict[str, Any] = {}
        self.output_pubs: dict[str, Any] = {}  # full topic -> publisher
        self.messages = None  # MessageFactory over the rclpy classes
        self.diagnostics_pub = None
        self.last_problem: dict[str, str] = {}
        self._subs: list[Any] = []
        self._timers: list[Any] = []
        self._infos: dict[str, Any] = {}
        self._pending: collections.deque = collections.deque()
        self._last_log: dict[str, float] = {}
        self._reported: dict[str, float] = {}
        self.device_name = 'none'

    # ---------------------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Read parameters, load the model, create publishers."""
        values = {name: self.get_parameter(name).value for name in all_parameters()}
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
        self.device_name = str(self.engine.device)
        self.get_logger().info(
            f'model: {description}; device {self.engine.device}, precision '
            f'{self.engine.precision}, input {self.engine.input_size[1]}x'
            f'{self.engine.input_size[0]}, window {config.window_size}')
        qos = self._qos('output')
        cameras = values['cameras']
        for output in OUTPUTS:
            kind = self.messages.types[output.msgtype]
            for camera in cameras if output.per_view else ['']:
                topic = topic_name(values['output_namespace'], output, camera, len(cameras))
                self.output_pubs[topic] = self.create_lifecycle_publisher(kind, topic, qos)
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
        qos = self._qos('input')
        cameras = self.values['cameras']
        for camera in cameras:
            self._subs.append(self.create_subscription(
                CameraInfo, f'{camera}/camera_info',
                lambda msg, c=camera: self._infos.__setitem__(c, msg), qos))
            self._subs.append(self.create_subscription(
                Image, f'{camera}/image', lambda msg, c=camera: self._on_image(c, msg), qos))
            if self.values['pose_source'] == 'topic':
                topic = self.values['pose_topic']
                if len(cameras) > 1:
                    topic = f'{camera}/{topic}'
                kind = PoseStamped if self.values['pose_type'] == 'pose' else Odometry
                self._subs.append(self.create_subscription(
                    kind, topic, lambda msg, c=camera: self._on_pose(c, msg), qos))
        if self.values['prompt_topic']:
            self._subs.append(self.create_subscription(
                PointStamped, self.values['prompt_topic'], self._on_prompt, 10))
        # Pending images are retried when a pose arrives (topic) and on this timer (TF,
        # deadlines); a slow period keeps the timer from crowding out the subscriptions.
        self._timers.append(self.create_timer(0.1, self._retry_pending))
        self._timers.append(self.create_timer(self.values['diagnostics_period'],
                                              self._publish_diagnostics))
        self.get_logger().info('active: waiting for images on ' + ', '.join(
            self.resolve_topic_name(f'{c}/image') for c in cameras))
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
        for sub in self._subs:
            self.destroy_subscription(sub)
        for timer in self._timers:
            self.destroy_timer(timer)
        self._subs, self._timers = [], []
        self._pending.clear()
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def _release(self) -> None:
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

    # ------------------------------------------------------------------------------- inputs
    def _qos(self, which: str) -> QoSProfile:
        reliability = (ReliabilityPolicy.RELIABLE
                       if self.values[f'{which}_reliability'] == 'reliable'
                       else ReliabilityPolicy.BEST_EFFORT)
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.values[f'{which}_depth'],
                          reliability=reliability)

    def problem(self, kind: str, message: str, counted: bool = False) -> None:
        """Count a bad input (unless the pipeline already did) and log it, throttled."""
        if not counted and self.pipeline is not None:
            self.pipeline.stats.count(kind)
        self.last_problem[kind] = message
        now = time.monotonic()
        if now - self._last_log.get(kind, -1e9) >= self.values.get('log_throttle', 5.0):
            self._last_log[kind] = now
            self.get_logger().warning(f'[{kind}] {message}')

    def _on_image(self, camera: str, msg: Image) -> None:
        if self.pipeline is None:
            return
        try:
            frame = frame_from_messages(camera, msg, self._infos.get(camera))
        except FrameError as err:
            self.pipeline.stats.count('frames_received')
            where = self.resolve_topic_name(f'{camera}/camera_info')
            self.problem(err.kind, f'camera {camera} ({where}): {err}')
            return
        deadline = time.monotonic() + self.values['tf_timeout']
        if not self._try_submit(frame, msg.header.frame_id, deadline):
            if len(self._pending) >= MAX_PENDING:
                old_frame, _, _ = self._pending.popleft()
                self.pipeline.stats.count('frames_received')
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
        try:
            self.worker.submit(frame)
        except FrameError as err:
            self.problem(err.kind, f'camera {frame.camera}: {err}', counted=True)
        return True

    def _retry_pending(self) -> None:
        for _ in range(len(self._pending)):
            frame, frame_id, deadline = self._pending.popleft()
            if not self._try_submit(frame, frame_id, deadline):
                self._pending.append((frame, frame_id, deadline))

    def _on_pose(self, camera: str, msg: Any) -> None:
        try:
            self.pose_sources[camera].add(msg)
        except FrameError as err:
            self.problem(err.kind, f'camera {camera}: {err}')
            return
        self._retry_pending()

    def _on_prompt(self, msg: PointStamped) -> None:
        point = np.array([msg.point.x, msg.point.y, msg.point.z])
        frame = msg.header.frame_id.lstrip('/')
        try:
            if frame and frame != self.values['world_frame'].lstrip('/'):
                raise FrameError('bad_prompt', f"prompt point is in frame '{frame}', expected "
                                 f"world_frame '{self.values['world_frame']}'")
            self.pipeline.set_prompt(point)
        except FrameError as err:
            self.problem(err.kind, str(err))
            return
        self.get_logger().info(f'prompt set at {point.round(3).tolist()} in {frame or "world"}')

    # ------------------------------------------------------------------------------ outputs
    def _worker_error(self, err: Exception) -> None:
        self.problem('inference_errors', f'window failed: {err!r}', counted=True)

    def _publish_results(self, window: WindowResult) -> None:
        """Publish every output of a window (worker thread); per-view ones by camera."""
        cameras = len(self.values['cameras'])
        for output, camera, msg in self.messages.outputs(window, self.engine.identity,
                                                         self.values['world_frame']):
            topic = topic_name(self.values['output_namespace'], output, camera, cameras)
            pub = self.output_pubs.get(topic)
            if pub is not None:
                pub.publish(msg)

    def diagnostics(self) -> DiagnosticStatus:
        """Return the current diagnostics status (also published on /diagnostics)."""
        snap = self.pipeline.stats.snapshot() if self.pipeline is not None else {}
        problems = {k: int(snap.get(k, 0)) for k in PROBLEMS}
        new = {k: v - self._reported.get(k, 0) for k, v in problems.items()
               if v > self._reported.get(k, 0)}
        self._reported = problems
        level = DiagnosticStatus.OK
        message = 'ok'
        if new:
            level = DiagnosticStatus.ERROR if 'inference_errors' in new else DiagnosticStatus.WARN
            message = 'since last report: ' + ', '.join(f'{k} +{v}' for k, v in new.items())
        values = {**{k: f'{v:.4g}' if isinstance(v, float) else str(v) for k, v in snap.items()},
                  **{k: str(v) for k, v in problems.items()}, 'device': self.device_name,
                  'queue': str(self.worker.pending() if self.worker else 0)}
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


def main(args: list[str] | None = None) -> None:
    """Console script ``perception_node``: spin the node until Ctrl-C or shutdown."""
    rclpy.init(args=args)
    node = PerceptionNode()
    try:
        if node.get_parameter('autostart').value:
            if node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                node.trigger_activate()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.close()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
