"""The ROS 2 layer: the perception node, message conversions and offline bag processing."""
