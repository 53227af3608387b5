"""``mvfm_perception``: posed camera streams in, multi-view consistent features out.

configure: read the settings, load the model, create publishers (and the TF listener).
activate: subscribe, start the intake and inference threads. deactivate: unsubscribe, stop the
threads, free GPU memory. A transition that fails says why and leaves nothing half-made.

Threads: the executor (one thread, ``rclpy.spin``) only takes messages and queues them; the
intake thread (:mod:`.intake`) assembles posed frames and hands them to the inference worker
(:class:`~mvfm_ros.pipeline.worker.AsyncPipeline`), which runs the model and publishes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped, PoseStamped
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, Image

from mvfm_ros.pipeline.frame import FrameError
from mvfm_ros.pipeline.settings import WHEN_LAUNCH, WHEN_LIVE, Settings, SettingsError
from mvfm_ros.ros import params
from mvfm_ros.ros.health import Health
from mvfm_ros.ros.inputs import Inputs
from mvfm_ros.ros.lifecycle import guard_change_state, says_why

NODE_NAME = 'mvfm_perception'
MAX_PROMPT_M = 1e6  # a prompt point further than this from the world origin is refused
QOS_MATCH_PERIOD = 2.0  # seconds between re-matching input reliability to the publishers
POSE_DEPTH = 100  # history depth of pose subscriptions (seconds of poses, as tf2's /tf)


class PerceptionNode(LifecycleNode):
    """The perception lifecycle node (see the module docstring and README)."""

    def __init__(self, **kwargs: Any) -> None:
        """Declare every setting as a parameter; the launch-only ones are fixed from here on."""
        super().__init__(NODE_NAME, **kwargs)
        self.launch = params.declare(self)
        self.settings: Settings | None = None
        self.engine = self.pipeline = self.worker = self.intake = self.inputs = None
        self.out = self.tf = None
        self.health = Health(self, f'{NODE_NAME}: pipeline')
        self._made_timers: list[Any] = []
        self._made_subs: list[Any] = []
        self._made_services: list[Any] = []
        self.diagnostics_pub = None
        self.add_pre_set_parameters_callback(self._before_set_parameters)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        guard_change_state(self, self.problem)

    def problem(self, kind: str, message: str, counted: bool = False) -> None:
        """Count a problem (unless already counted) and log it, throttled."""
        self.health.problem(kind, message, counted)

    # ---------------------------------------------------------------------------- lifecycle
    @says_why
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Read the settings, load the model, create publishers and services."""
        from mvfm_ros.pipeline import Engine, Pipeline
        from mvfm_ros.ros.publishing import Publishers, rclpy_factory

        settings = params.settings(self, self.launch)
        self.health.throttle = settings.log_throttle
        factory = rclpy_factory()
        self.engine, description = Engine.from_settings(settings)
        self.out = Publishers(self, settings, self.engine.lifting.names, factory)
        self.pipeline = Pipeline(self.engine, settings, self.out.wanted)
        self.pipeline.on_event = lambda kind, message: self.problem(kind, message, True)
        self.settings = settings
        from std_srvs.srv import Trigger

        self._made_services.append(self.create_service(Trigger, '~/reset_map', self._on_reset_map))
        self.diagnostics_pub = self.create_lifecycle_publisher(DiagnosticArray, '/diagnostics',
                                                               10)
        if settings.pose_source == 'tf':
            from mvfm_ros.ros.tf_source import TfPoseSource

            self.tf = TfPoseSource(self, settings.world_frame)
        self.get_logger().info(
            f'model: {description}; device {self.engine.device}, precision '
            f'{self.engine.precision}, input {self.engine.input_size[1]}x'
            f'{self.engine.input_size[0]}, window {settings.window_size}')
        return super().on_configure(state)

    @says_why
    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe, start the intake and inference threads."""
        from mvfm_ros.pipeline import AsyncPipeline
        from mvfm_ros.ros.intake import Intake

        s = self.settings
        self.engine.restore()
        self.worker = AsyncPipeline(self.pipeline, self._publish, self._worker_error)
        self.intake = Intake(s, self.worker, lambda: self.get_clock().now().nanoseconds,
                             self.problem, self.tf)
        self.worker.start()
        self.intake.start()
        self.inputs = Inputs(self, s.input_reliability, s.input_depth, self.problem)
        for camera in s.cameras:
            for name, kind in (('camera_info', CameraInfo), ('image', Image)) + (
                    (('depth', Image),) if s.use_depth else ()):
                self.inputs.add(self._input_topic(camera, name), kind,
                                lambda msg, c=camera, n=name: self.intake.put(n, c, msg))
            if s.pose_source == 'topic':
                kind = PoseStamped if s.pose_type == 'pose' else Odometry
                self.inputs.add(self._input_topic(camera, s.pose_topic), kind,
                                lambda msg, c=camera: self._on_pose(c, msg),
                                min_depth=POSE_DEPTH)
        if s.prompt_topic:
            self._made_subs.append(self.create_subscription(PointStamped, s.prompt_topic,
                                                       self._on_prompt, 10))
        self.get_logger().info('inputs: ' + self.inputs.describe())
        self._made_timers += [self.create_timer(QOS_MATCH_PERIOD, self._match_qos),
                         self.create_timer(s.diagnostics_period, self._publish_diagnostics)]
        if s.use_depth and s.map_period > 0:
            self._made_timers.append(self.create_timer(s.map_period, self._publish_map))
        self.get_logger().info('active: waiting for images on ' + ', '.join(
            self.resolve_topic_name(self._input_topic(c, 'image')) for c in s.cameras))
        return super().on_activate(state)

    @says_why
    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unsubscribe, stop the threads, free GPU memory."""
        self._stop_inputs()
        self.engine.release()
        self.pipeline.reset()
        return super().on_deactivate(state)

    @says_why
    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release publishers, services, the model and the TF listener."""
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop everything."""
        self.close()
        return super().on_shutdown(state)

    def abort_transition(self, name: str) -> None:
        """Undo what a failed transition created (``says_why`` calls it)."""
        if name == 'configure':
            self._release()
        elif name == 'activate':
            self._stop_inputs()

    def close(self) -> None:
        """Stop the threads and release everything (shutdown without a transition too)."""
        self._stop_inputs()
        self._release()

    def _stop_inputs(self) -> None:
        if self.inputs is not None:
            self.inputs.close()
            self.inputs = None
        for sub in self._made_subs:
            self.destroy_subscription(sub)
        for timer in self._made_timers:
            self.destroy_timer(timer)
        self._made_subs, self._made_timers = [], []
        if self.intake is not None:
            self.intake.stop()
            self.intake = None
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def _release(self) -> None:
        for service in self._made_services:
            self.destroy_service(service)
        self._made_services = []
        if self.out is not None:
            self.out.destroy()
            self.out = None
        if self.diagnostics_pub is not None:
            self.destroy_lifecycle_publisher(self.diagnostics_pub)
            self.diagnostics_pub = None
        if self.tf is not None:
            self.tf.close()
            self.tf = None
        if self.engine is not None:
            self.engine.release()
        self.engine = self.pipeline = self.settings = None

    # ------------------------------------------------------------------- runtime requests
    def _before_set_parameters(self, parameters: list[Any]) -> list[Any]:
        """Count and explain a change of a setting fixed at launch (rclpy refuses it)."""
        specs = Settings.specs()
        for param in parameters:
            spec = specs.get(param.name)
            if spec is not None and spec.when == WHEN_LAUNCH:
                self.problem('parameter_refused', f'{param.name} is fixed when the process is '
                             'launched (it decides which code the node runs); refused')
        return parameters

    def _on_set_parameters(self, parameters: list[Any]) -> SetParametersResult:
        """Validate a run-time change of the whole settings; refuse it with the reason.

        ``log_throttle`` acts at once; the others take effect at the next configure.
        """
        changes = {p.name: p.value for p in parameters if p.name in Settings.specs()}
        try:
            settings = params.settings(self, self.launch, changes)
            if settings.device.startswith('cuda'):
                from mvfm_ros.models.device import resolve_device

                resolve_device(settings.device)
        except (SettingsError, RuntimeError) as err:
            self.problem('parameter_refused', f'set parameters refused: {err}')
            return SetParametersResult(successful=False, reason=str(err))
        self.health.throttle = settings.log_throttle
        for name in changes:
            if Settings.specs()[name].when != WHEN_LIVE and self.engine is not None:
                self.get_logger().info(f'{name} = {changes[name]!r} takes effect at the next '
                                       'configure (deactivate, cleanup, configure, activate)')
        return SetParametersResult(successful=True)

    def _input_topic(self, camera: str, name: str) -> str:
        """Return an input's topic as image_pipeline names them, prefixed per camera in a rig."""
        rig = len(self.settings.cameras) > 1
        return f'{camera}/{name}' if rig and not name.startswith('/') else name

    def _on_pose(self, camera: str, msg: Any) -> None:
        now = self.get_clock().now().nanoseconds
        pipeline = self.pipeline
        if pipeline is not None and now > 0:
            pipeline.stats.record_pose_delay((now - msg.header.stamp.sec * 10**9
                                              - msg.header.stamp.nanosec) / 1e9)
        intake = self.intake
        if intake is not None:
            intake.put('pose', camera, msg)

    def _match_qos(self) -> None:
        if self.inputs is not None:
            for change in self.inputs.match():
                self.get_logger().info(f'input reliability matched to the publishers: {change}')

    def _on_prompt(self, msg: PointStamped) -> None:
        point = np.array([msg.point.x, msg.point.y, msg.point.z])
        frame = msg.header.frame_id.lstrip('/')
        world = self.settings.world_frame.lstrip('/')
        try:
            if frame != world:
                raise FrameError('bad_prompt', f"prompt point is in frame '{frame}', expected "
                                 f"world_frame '{world}'")
            if np.all(np.isfinite(point)) and np.abs(point).max() > MAX_PROMPT_M:
                raise FrameError('bad_prompt', f'prompt point {point.tolist()} is more than '
                                 f'{MAX_PROMPT_M:g} m from the world origin')
            self.pipeline.set_prompt(point)
        except FrameError as err:
            self.problem(err.kind, str(err))
            return
        self.get_logger().info(f'prompt set at {point.round(3).tolist()} in {frame}')

    # ------------------------------------------------------------------------------ outputs
    def _worker_error(self, err: BaseException) -> None:
        self.problem('inference_errors', f'window failed: {err!r}', counted=True)

    def _publish(self, window: Any) -> None:
        """Publish a window's outputs (worker thread)."""
        publishers = self.out
        if publishers is not None:
            publishers.publish(window, self.engine.identity)

    def _publish_map(self) -> None:
        pipeline, publishers = self.pipeline, self.out
        if pipeline is not None and publishers is not None:
            publishers.publish_map(pipeline.map_cloud(), self.get_clock().now().nanoseconds)

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

    def diagnostics(self) -> Any:
        """Return the current diagnostics status (also published on /diagnostics)."""
        return self.health.status()

    def _publish_diagnostics(self) -> None:
        self.health.watch()
        if self.diagnostics_pub is not None:
            self.diagnostics_pub.publish(self.health.message(self.get_clock().now().to_msg()))

