"""Build ``rosbags`` messages (header, Image, CameraInfo) for bags the package writes.

Shared by the bag processor's output writer and the demo bag generator; the field values come
from :mod:`mvfm_ros.ros.conversions`, as for the node's rclpy messages.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mvfm_ros.ros.conversions import image_fields, ns_to_stamp, scaled_camera_info_fields


def header_msg(types: dict[str, Any], stamp_ns: int, frame_id: str) -> Any:
    """std_msgs/Header at ``stamp_ns`` in ``frame_id``."""
    sec, nanosec = ns_to_stamp(stamp_ns)
    return types['std_msgs/msg/Header'](
        stamp=types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nanosec), frame_id=frame_id)


def image_msg(types: dict[str, Any], header: Any, array: np.ndarray, encoding: str) -> Any:
    """sensor_msgs/Image holding ``array`` (see :func:`image_fields`)."""
    fields = image_fields(array, encoding)
    fields['data'] = np.frombuffer(fields['data'], dtype=np.uint8)
    return types['sensor_msgs/msg/Image'](header=header, **fields)


def camera_info_msg(types: dict[str, Any], header: Any, k: np.ndarray, height: int,
                    width: int) -> Any:
    """sensor_msgs/CameraInfo of an undistorted ``height`` x ``width`` image with matrix K."""
    fields = scaled_camera_info_fields(k, height, width)
    roi = types['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0, width=0,
                                                    do_rectify=False)
    return types['sensor_msgs/msg/CameraInfo'](
        header=header, height=height, width=width, distortion_model=fields['distortion_model'],
        d=np.asarray(fields['d']), k=np.asarray(fields['k']), r=np.asarray(fields['r']),
        p=np.asarray(fields['p']), binning_x=0, binning_y=0, roi=roi)
