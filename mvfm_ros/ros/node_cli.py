"""Console script ``perception_node`` (``ros2 run mvfm_ros perception_node``).

``--help`` prints usage and the parameter table without loading ROS or PyTorch. Otherwise the
node is created and spun on one executor thread (its callbacks only take messages; see
:mod:`mvfm_ros.ros.node`). With ``-p autostart:=true`` (the launch file's default) it
configures and activates itself and exits with status 1 if configure fails; without it, it
waits unconfigured for a lifecycle manager and says how to start it.
"""

from __future__ import annotations

import sys

from mvfm_ros.pipeline.settings import Settings, coerce

SIGNAL_CHECK_S = 0.2  # longest time a signal waits for the executor to let Python run

USAGE = """usage: perception_node [--help] [--ros-args ...]

The mvfm_perception lifecycle node: posed camera images in, multi-view consistent features,
normals and segments out (topics: README, The node).

Start it configured and active:
  perception_node --ros-args -p autostart:=true -p pose_source:=topic -r image:=/cam/image_raw \\
      -r camera_info:=/cam/camera_info -r pose:=/cam/pose
  ros2 launch mvfm_ros perception.launch.py image:=/cam/image_raw camera_info:=/cam/camera_info
Without autostart it waits unconfigured: ros2 lifecycle set /mvfm_perception configure, then
activate.

Inputs (one camera; a rig with cameras:=[left,right] prefixes them: left/image, ...):
  image (sensor_msgs/Image), camera_info (sensor_msgs/CameraInfo),
  pose (PoseStamped/Odometry, pose_source topic) or /tf (pose_source tf).

Parameters (-p name:=value; defaults also in config/perception.yaml):"""


def help_text() -> str:
    """Return the usage and the parameter table."""
    defaults = Settings.defaults()
    rows = [f'  {name:<22} {defaults[name]!r:<16} {spec.help}'
            for name, spec in Settings.specs().items()]
    return USAGE + '\n' + '\n'.join(rows)


def choose_transport(environ: dict[str, str]) -> str:
    """Use Fast DDS's UDP transport unless the user configured transports; say so.

    Measured here (Fast DDS 2.14, Jazzy wheels): with 640x480 rgb8 images at 15 Hz from the
    same publisher process, the default shared-memory transport delivered small reliable pose
    messages 0.9 to 3 s late (repaired losses); with UDPv4 on the subscriber alone every pose
    arrived within 4 ms (docs/benchmarks.md, Pose delivery). The node cannot use a pose that
    comes seconds after its image, so UDPv4 is its default; a profile file or an explicit
    ``FASTDDS_BUILTIN_TRANSPORTS`` wins, and other RMWs are left alone.
    """
    if environ.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp') != 'rmw_fastrtps_cpp':
        return ''
    if environ.get('FASTDDS_BUILTIN_TRANSPORTS') or environ.get(
            'FASTRTPS_DEFAULT_PROFILES_FILE') or environ.get('FASTDDS_DEFAULT_PROFILES_FILE'):
        return ''
    environ['FASTDDS_BUILTIN_TRANSPORTS'] = 'UDPv4'
    return ('Fast DDS transport: UDPv4 (shared memory delayed poses behind large images; set '
            'FASTDDS_BUILTIN_TRANSPORTS or a profile file to choose another)')


def main(args: list[str] | None = None) -> int:
    """Run the node until Ctrl-C or shutdown; returns the exit status."""
    argv = sys.argv[1:] if args is None else list(args)
    own = argv[:argv.index('--ros-args')] if '--ros-args' in argv else argv
    if '-h' in own or '--help' in own:
        print(help_text())
        return 0
    import os
    import signal

    transport_note = choose_transport(os.environ)

    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.signals import SignalHandlerOptions

    from mvfm_ros.ros.node import PerceptionNode

    # rclpy's own signal handler shuts the context down at once, while the inference thread
    # may still publish (a crash at exit): Ctrl-C and SIGTERM become KeyboardInterrupt in this
    # thread instead, and the node stops its worker before the context goes.
    try:
        rclpy.init(args=None if args is None else ['perception_node', *argv],
                   signal_handler_options=SignalHandlerOptions.NO)
    except RuntimeError as err:  # rclpy's RCLError: the ROS arguments do not parse
        print(f'perception_node: the ROS arguments could not be parsed: {err}\n'
              "A -p value is YAML: quote list items that hold ':' (operators:=\"['a', "
              "'pkg.mod:fn']\").", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        node = PerceptionNode()
        autostart = coerce('autostart', node.launch['autostart'])
    except Exception as err:  # a parameter rclpy or the settings refuse: say which, no traceback
        print(f'perception_node: {err}', file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    if transport_note:
        node.get_logger().info(transport_note)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    code = 0
    try:
        if autostart:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().error('autostart: configure failed (reason above); exiting')
                return 1
            node.trigger_activate()
        else:
            node.get_logger().info(
                'unconfigured, waiting for a lifecycle manager: start it with '
                f'`ros2 lifecycle set {node.get_fully_qualified_name()} configure` then '
                '`activate`, or run with -p autostart:=true (`ros2 launch mvfm_ros '
                'perception.launch.py` drives it through configure and activate itself)')
        # Spin in slices: Python runs signal handlers only between them, so Ctrl-C and SIGTERM
        # end the node at once in every lifecycle state (an unconfigured node has no timer
        # that would otherwise wake the executor).
        while rclpy.ok():
            executor.spin_once(timeout_sec=SIGNAL_CHECK_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.close()  # stops the inference thread first
        executor.shutdown(timeout_sec=5)
        node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == '__main__':
    sys.exit(main())
