"""ROS-free message code: conversions, the message factory, frame assembly, TF tree, bags.

Works on message fields only, so rclpy messages (the node) and ``rosbags`` messages (bags)
both fit; nothing here imports ROS.
"""
