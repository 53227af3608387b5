"""Start the mvfm_perception node: ``ros2 launch mvfm_ros perception.launch.py``.

Arguments (``ros2 launch mvfm_ros perception.launch.py --show-args``): config, namespace,
image, camera_info, pose_topic, depth, use_sim_time, autostart, log_level. With autostart true (the
default) the node configures and activates itself; with false it waits in the unconfigured state
for a lifecycle manager (``ros2 lifecycle set /mvfm_perception configure``).
"""

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

ARGUMENTS = {
    'config': (PathJoinSubstitution([FindPackageShare('mvfm_ros'), 'config', 'perception.yaml']),
               'parameter file (defaults of every parameter: README, Parameters)'),
    'namespace': ('', 'namespace of the node and its topics'),
    'image': ('image', 'image topic of the camera'),
    'camera_info': ('camera_info', 'camera_info topic of the camera'),
    'pose_topic': ('pose', 'PoseStamped/Odometry topic (pose_source: topic)'),
    'depth': ('depth', 'registered depth topic of the camera (use_depth: true)'),
    'use_sim_time': ('false', 'use /clock (bag playback)'),
    'autostart': ('true', 'configure and activate on start-up'),
    'log_level': ('info', 'ROS log level'),
}


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments and the node."""
    args = [DeclareLaunchArgument(name, default_value=default, description=text)
            for name, (default, text) in ARGUMENTS.items()]
    node = Node(
        package='mvfm_ros',
        executable='perception_node',
        name='mvfm_perception',
        namespace=LaunchConfiguration('namespace'),
        parameters=[
            LaunchConfiguration('config'),
            {'use_sim_time': ParameterValue(LaunchConfiguration('use_sim_time'), value_type=bool),
             'autostart': ParameterValue(LaunchConfiguration('autostart'), value_type=bool)},
        ],
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
    return LaunchDescription([*args, node])
