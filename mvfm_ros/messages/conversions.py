"""Conversions between ROS messages and arrays, written against message fields only.

They read and fill the fields of sensor_msgs/geometry_msgs/nav_msgs messages, so the same code
serves rclpy messages in the node and ``rosbags`` messages in the bag processor (cv_bridge is not
installable without a ROS install and would tie the bag path to one).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mvfm_ros.geometry.interpolation import pose_matrix
from mvfm_ros.pipeline.frame import FrameError

CHANNELS = {'rgb8': 3, 'bgr8': 3, 'rgba8': 4, 'bgra8': 4, 'mono8': 1}


class ConversionError(FrameError):
    """A message that cannot be turned into arrays (kinds: :data:`~mvfm_ros.pipeline.PROBLEMS`)."""


# Stamps may run ahead of the receiving clock by this much (clock offsets between machines);
# further ahead, the message is refused as an outlier.
FUTURE_TOLERANCE_NS = 5_000_000_000
QUATERNION_TOLERANCE = 1e-3


def check_not_future(stamp_ns: int, now_ns: int, what: str) -> None:
    """Raise ``future_stamp`` for a stamp too far ahead of ``now_ns`` (0: clock unknown)."""
    if now_ns > 0 and stamp_ns > now_ns + FUTURE_TOLERANCE_NS:
        raise ConversionError('future_stamp', f'{what} stamp {stamp_ns / 1e9:.3f} s is '
                              f'{(stamp_ns - now_ns) / 1e9:.1f} s ahead of the clock; refused '
                              f'(tolerance {FUTURE_TOLERANCE_NS / 1e9:g} s)')


def quaternion_norm_error(q: Any) -> float:
    """``| ||q|| - 1 |`` of a geometry_msgs/Quaternion (NaN-safe: NaN stays NaN)."""
    return abs(float(np.sqrt(q.x * q.x + q.y * q.y + q.z * q.z + q.w * q.w)) - 1.0)


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time to integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> tuple[int, int]:
    """Integer nanoseconds to (sec, nanosec)."""
    return ns // 1_000_000_000, ns % 1_000_000_000


def image_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) to an ``(H, W, 3)`` uint8 RGB array.

    Raises:
        ConversionError: unsupported encoding (``unsupported_encoding``) or a data size that
            does not match height, width and step (``bad_image``).
    """
    encoding = str(msg.encoding).lower()
    if encoding not in CHANNELS:
        raise ConversionError('unsupported_encoding', f"image encoding '{msg.encoding}' is not "
                              f'supported; use one of {", ".join(CHANNELS)}')
    channels = CHANNELS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data,
                         dtype=np.uint8)
    if height <= 0 or width <= 0 or step < width * channels or data.size < height * step:
        raise ConversionError('bad_image', f'image data of {data.size} bytes does not fit '
                              f'{height}x{width} {encoding} with step {step}')
    rows = data[:height * step].reshape(height, step)[:, :width * channels]
    pixels = rows.reshape(height, width, channels)
    if encoding == 'mono8':
        return np.repeat(pixels, 3, axis=2)
    if encoding.startswith('bgr'):
        pixels = pixels[:, :, 2::-1]
    return np.ascontiguousarray(pixels[:, :, :3])


DEPTH_SCALE = {'16uc1': 1e-3, 'mono16': 1e-3, '32fc1': 1.0}  # encoding -> metres per unit
DEPTH_TYPES = {'16uc1': np.uint16, 'mono16': np.uint16, '32fc1': np.float32}


def depth_to_metres(msg: Any, image_shape: tuple[int, int]) -> np.ndarray:
    """Convert registered depth (16UC1 mm or 32FC1 m) to ``(H, W)`` float32 metres.

    The depth must have the aspect ratio of its image (it may be smaller or larger: REP 118
    registered depth at another resolution); 0 and NaN mean no measurement.

    Raises:
        ConversionError: ``bad_depth`` for another encoding, a data size that does not fit, or
            an aspect ratio unlike the image's.
    """
    encoding = str(msg.encoding).lower()
    if encoding not in DEPTH_SCALE:
        raise ConversionError('bad_depth', f"depth encoding '{msg.encoding}' is not supported; "
                              'use 16UC1 (millimetres) or 32FC1 (metres)')
    dtype = np.dtype(DEPTH_TYPES[encoding]).newbyteorder('>' if msg.is_bigendian else '<')
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data,
                         dtype=np.uint8)
    if height <= 0 or width <= 0 or step < width * dtype.itemsize or data.size < height * step:
        raise ConversionError('bad_depth', f'depth data of {data.size} bytes does not fit '
                              f'{height}x{width} {encoding} with step {step}')
    if abs(width / height - image_shape[1] / image_shape[0]) > 0.01 * image_shape[1] / \
            image_shape[0]:
        raise ConversionError('bad_depth', f'depth {width}x{height} does not have the aspect '
                              f'ratio of its image {image_shape[1]}x{image_shape[0]} (it must '
                              'be registered to the image)')
    rows = data[:height * step].reshape(height, step)[:, :width * dtype.itemsize]
    depth = rows.copy().view(dtype).reshape(height, width).astype(np.float32)
    depth *= DEPTH_SCALE[encoding]
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    return depth


PLAUSIBLE_DEPTH_M = (0.1, 50.0)  # a camera's median depth outside this is a unit error


def check_depth(depth: np.ndarray, msg: Any, image_frame: str, depth_frame: str = '') -> None:
    """Refuse depth that is not registered to its image, empty, or in the wrong unit.

    Args:
        depth: the converted depth (:func:`depth_to_metres`).
        msg: the depth message (its frame_id and encoding).
        image_frame: the image's frame_id.
        depth_frame: a frame_id declared equivalent (``depth_frame_id``; empty: none).

    Raises:
        ConversionError: ``depth_not_registered``, ``depth_empty`` or ``depth_implausible``.
    """
    frame = str(msg.header.frame_id).strip('/')
    if frame != str(image_frame).strip('/') and (not depth_frame or frame != depth_frame.strip(
            '/')):
        raise ConversionError('depth_not_registered', f"depth is in frame '{frame}', its image "
                              f"in '{image_frame}': depth must be registered to the image (or "
                              'set depth_frame_id to its frame)')
    valid = depth[depth > 0]
    if not valid.size:
        raise ConversionError('depth_empty', 'depth image has no valid measurement (all zero '
                              'or NaN)')
    median = float(np.median(valid))
    low, high = PLAUSIBLE_DEPTH_M
    if not low <= median <= high:
        unit = 'metres' if str(msg.encoding).lower() == '32fc1' else 'millimetres'
        raise ConversionError('depth_implausible', f'depth median {median:.4g} m is outside '
                              f'{low:g}-{high:g} m: is this {msg.encoding} image really in '
                              f'{unit}?')


def image_fields(array: np.ndarray, encoding: str) -> dict[str, Any]:
    """Fields of a sensor_msgs/Image holding ``array`` (uint8 or float32, little-endian).

    ``encoding`` is e.g. ``rgb8``, ``mono8``, ``16UC1``, ``32FC3`` or ``32FC384``.
    """
    array = np.ascontiguousarray(array)
    if array.dtype == np.float32 or array.dtype == np.uint16:
        array = array.astype(array.dtype.newbyteorder('<'), copy=False)
    height, width = array.shape[:2]
    return {'height': height, 'width': width, 'encoding': encoding, 'is_bigendian': 0,
            'step': int(array.strides[0]), 'data': array.tobytes()}


def float_encoding(channels: int) -> str:
    """Return the encoding of a float32 image with ``channels`` channels (``32FC<C>``)."""
    return f'32FC{channels}'


def camera_info_matrix(msg: Any, image_shape: tuple[int, int] | None = None) -> np.ndarray:
    """K of the published image from sensor_msgs/CameraInfo (binning and ROI applied).

    Args:
        msg: the CameraInfo.
        image_shape: (H, W) of the image it is used with, checked against the info.

    Raises:
        ConversionError: all-zero, non-finite or non-pinhole K or a zero size
            (``bad_camera_info``), or an image whose size does not match the info
            (``size_mismatch``).
    """
    from mvfm_ros.geometry.camera import intrinsics_from_camera_info

    k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise ConversionError('bad_camera_info', 'camera_info has no valid K (fx, fy must be '
                              'positive): is the camera calibrated?')
    if not np.array_equal(k[2], [0.0, 0.0, 1.0]) or k[1, 0] != 0:
        raise ConversionError('bad_camera_info', f'camera_info K is not a pinhole matrix (last '
                              f'row must be 0 0 1, k[1][0] 0): {k.tolist()}')
    if int(msg.width) <= 0 or int(msg.height) <= 0:
        raise ConversionError('bad_camera_info', f'camera_info has size {msg.width}x'
                              f'{msg.height}: the resolution K refers to is unknown')
    roi = msg.roi
    roi_tuple = (int(roi.x_offset), int(roi.y_offset), int(roi.height), int(roi.width))
    bx, by = max(1, int(msg.binning_x)), max(1, int(msg.binning_y))
    full_h, full_w = (roi_tuple[2], roi_tuple[3]) if roi_tuple[2] and roi_tuple[3] else (
        int(msg.height), int(msg.width))
    expected = (full_h // by, full_w // bx)
    if image_shape is not None and tuple(image_shape) != expected:
        raise ConversionError('size_mismatch', f'image is {image_shape[1]}x{image_shape[0]} but '
                              f'camera_info describes {expected[1]}x{expected[0]} (after '
                              'binning/ROI); is camera_info from the same camera and mode?')
    return intrinsics_from_camera_info(k.reshape(-1).tolist(), bx, by, roi_tuple).numpy()


def scaled_camera_info_fields(k: np.ndarray, height: int, width: int) -> dict[str, Any]:
    """CameraInfo fields (plumb_bob, no distortion) for an image of the given size and K."""
    p = np.zeros((3, 4))
    p[:, :3] = k
    return {'height': height, 'width': width, 'distortion_model': 'plumb_bob',
            'd': [0.0] * 5, 'k': k.reshape(-1).tolist(), 'r': np.eye(3).reshape(-1).tolist(),
            'p': p.reshape(-1).tolist(), 'binning_x': 0, 'binning_y': 0}


def _rigid(point: Any, quaternion: Any, what: str) -> np.ndarray:
    try:
        return pose_matrix([point.x, point.y, point.z],
                           [quaternion.x, quaternion.y, quaternion.z, quaternion.w])
    except ValueError as err:
        raise ConversionError('bad_pose', f'{what} rejected: {err}') from err


def pose_to_matrix(pose: Any) -> np.ndarray:
    """geometry_msgs/Pose to a ``(4, 4)`` transform.

    Raises:
        ConversionError: NaN/inf or a zero quaternion (``bad_pose``).
    """
    return _rigid(pose.position, pose.orientation, 'pose')


def transform_to_matrix(transform: Any) -> np.ndarray:
    """geometry_msgs/Transform to a ``(4, 4)`` matrix (same checks as :func:`pose_to_matrix`)."""
    return _rigid(transform.translation, transform.rotation, 'transform')
