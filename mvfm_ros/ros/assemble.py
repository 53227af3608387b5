"""Image + camera_info messages to a pipeline frame: one assembly for the node and bags.

Works on message fields only, so rclpy messages (node) and ``rosbags`` messages (bags) both fit,
and stays free of ROS imports. Every refusal is a :class:`~mvfm_ros.pipeline.FrameError` whose
``kind`` is one of :data:`~mvfm_ros.pipeline.PROBLEMS`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from mvfm_ros.pipeline.frame import Frame
from mvfm_ros.ros.conversions import (
    ConversionError,
    camera_info_matrix,
    check_not_future,
    image_to_rgb,
    stamp_to_ns,
)


def frame_from_messages(camera: str, image: Any, info: Any | None,
                        received: float | None = None, now_ns: int = 0) -> Frame:
    """Check and convert one image with its camera's latest camera_info.

    The frame's pose is the identity until the caller sets ``cam_to_world`` from its pose
    source (TF, a pose topic or a bag's transforms), at the image stamp.

    Args:
        camera: camera name.
        image: sensor_msgs/Image.
        info: the camera's latest sensor_msgs/CameraInfo, or None if none arrived yet.
        received: ``time.monotonic()`` of arrival (default: now).
        now_ns: the receiver's clock (0: unknown, as in a bag): an image stamped far ahead of
            it is refused, so one bad stamp cannot make every later image "out of order".

    Raises:
        ConversionError: ``missing_camera_info``, ``missing_frame_id``, ``future_stamp``,
            ``unsupported_encoding``, ``bad_image``, ``bad_camera_info`` or ``size_mismatch``.
    """
    received = time.monotonic() if received is None else received
    if info is None:
        raise ConversionError('missing_camera_info', 'no camera_info received yet for camera '
                              f'{camera!r}; image skipped')
    if not str(image.header.frame_id).strip('/'):
        raise ConversionError('missing_frame_id', 'image header has an empty frame_id: its '
                              'pose and the outputs would name no frame')
    check_not_future(stamp_to_ns(image.header.stamp), now_ns, 'image')
    rgb = image_to_rgb(image)
    k = camera_info_matrix(info, rgb.shape[:2])
    frame = Frame(rgb, k, np.eye(4), stamp_to_ns(image.header.stamp), camera, image.header,
                  received=received)
    frame.conversion_s = time.monotonic() - received
    return frame


def nearest_in_time(stamped: Iterable[tuple[int, Any]], stamp_ns: int,
                    tolerance_ns: int) -> Any | None:
    """Return the message of ``(stamp_ns, message)`` pairs nearest to ``stamp_ns``.

    None when none is within ``tolerance_ns``: how an image finds its registered depth (the
    node's recent depth images, the bag tool's).
    """
    best = min(stamped, key=lambda item: abs(item[0] - stamp_ns), default=None)
    if best is None or abs(best[0] - stamp_ns) > tolerance_ns:
        return None
    return best[1]
