"""Start the mvfm_perception lifecycle node: ``ros2 launch mvfm_ros perception.launch.py``.

Arguments (``ros2 launch mvfm_ros perception.launch.py --show-args``): config, namespace, image,
camera_info, pose_topic, depth, pose_source, use_sim_time, autostart, log_level. With autostart
true (the default) the launch file drives the node through configure and activate (lifecycle
events); a configure that fails ends the launch with the node's reason in the log. With false
the node waits unconfigured for a lifecycle manager (``ros2 lifecycle set /mvfm_perception
configure``, then ``activate``).
"""

from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    LogInfo,
    OpaqueFunction,
    RegisterEventHandler,
)
from launch.conditions import IfCondition
from launch.events import Shutdown
from launch.events.matchers import matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition

from launch import LaunchDescription

ARGUMENTS = {
    'config': (PathJoinSubstitution([FindPackageShare('mvfm_ros'), 'config', 'perception.yaml']),
               'parameter file (defaults of every parameter: README, Parameters)'),
    'namespace': ('', 'namespace of the node and its topics'),
    'image': ('image', 'image topic of the camera'),
    'camera_info': ('camera_info', 'camera_info topic of the camera'),
    'pose_topic': ('pose', 'PoseStamped/Odometry topic (pose_source: topic)'),
    'depth': ('depth', 'registered depth topic of the camera (use_depth: true)'),
    'pose_source': ('', 'tf or topic (empty: the config file decides)'),
    'use_sim_time': ('false', 'use /clock (bag playback)'),
    'autostart': ('true', 'configure and activate the node (lifecycle events)'),
    'log_level': ('info', 'ROS log level'),
}


def _node_and_lifecycle(context) -> list:
    """Return the node, and the events that bring it to active when autostart is true."""
    overrides = {'use_sim_time': ParameterValue(LaunchConfiguration('use_sim_time'),
                                                value_type=bool)}
    pose_source = LaunchConfiguration('pose_source').perform(context)
    if pose_source:
        overrides['pose_source'] = pose_source
    node = LifecycleNode(
        package='mvfm_ros',
        executable='perception_node',
        name='mvfm_perception',
        namespace=LaunchConfiguration('namespace'),
        parameters=[LaunchConfiguration('config'), overrides],
        remappings=[
            ('image', LaunchConfiguration('image')),
            ('camera_info', LaunchConfiguration('camera_info')),
            ('pose', LaunchConfiguration('pose_topic')),
            ('depth', LaunchConfiguration('depth')),
        ],
        arguments=['--ros-args', '--log-level', LaunchConfiguration('log_level')],
        output='screen',
        emulate_tty=True,
    )
    autostart = IfCondition(LaunchConfiguration('autostart'))

    def change(transition: int, condition: IfCondition | None = None) -> EmitEvent:
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                           transition_id=transition), condition=condition)

    return [
        node,
        # After configure succeeds: activate (only then: a later deactivate stays inactive).
        RegisterEventHandler(OnStateTransition(
            target_lifecycle_node=node, start_state='configuring', goal_state='inactive',
            entities=[change(Transition.TRANSITION_ACTIVATE)]), condition=autostart),
        # After configure fails: the node said why; end the launch rather than idle.
        RegisterEventHandler(OnStateTransition(
            target_lifecycle_node=node, start_state='configuring', goal_state='unconfigured',
            entities=[LogInfo(msg='mvfm_perception: configure failed (reason above)'),
                      EmitEvent(event=Shutdown(reason='configure failed'))]),
            condition=autostart),
        change(Transition.TRANSITION_CONFIGURE, autostart),
    ]


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments, the node and its lifecycle events."""
    args = [DeclareLaunchArgument(name, default_value=default, description=text)
            for name, (default, text) in ARGUMENTS.items()]
    return LaunchDescription([*args, OpaqueFunction(function=_node_and_lifecycle)])
