"""Output messages built once for both message libraries: rclpy (the node) and rosbags (bags).

:class:`MessageFactory` fills the fields of std_msgs/Header, sensor_msgs/Image, CameraInfo,
geometry_msgs/Pose and the package's FeatureWindow from arrays, given the message classes of one
library by type name. The two libraries differ only in how they take a ``uint8[]`` payload
(rclpy: bytes, fast; rosbags: a numpy array). The demo bag writer uses the same factory; the
node's rclpy classes are given to it by :func:`mvfm_ros.ros.publishing.rclpy_factory`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mvfm_ros.geometry.interpolation import matrix_to_quat
from mvfm_ros.messages.conversions import (
    image_fields,
    ns_to_stamp,
    scaled_camera_info_fields,
)
from mvfm_ros.pipeline.frame import Frame, WindowResult
from mvfm_ros.pipeline.outputs import (
    CAMERA_INFO,
    POINT_CLOUD,
    WINDOW,
    WINDOW_OUTPUT,
    Output,
    Wanted,
    image_encoding,
)
from mvfm_ros.pipeline.render import view_arrays
from mvfm_ros.resources import data_places

# Message definitions of the package's interfaces (msg/), for libraries that register types
# from text (rosbags) and for bags that embed them.
MSG_FILES = {'mvfm_ros/msg/FeatureView': 'FeatureView.msg',
             'mvfm_ros/msg/FeatureWindow': 'FeatureWindow.msg'}


# numpy type (without byte order) -> sensor_msgs/PointField datatype constant.
POINT_FIELD_TYPES = {'i1': 1, 'u1': 2, 'i2': 3, 'u2': 4, 'i4': 5, 'u4': 6, 'f4': 7, 'f8': 8}


class MessageFactory:
    """Builds messages from arrays.

    Args:
        types: type name (``sensor_msgs/msg/Image``) -> message class.
        payload_as_bytes: give ``uint8[]`` fields as bytes (rclpy) instead of numpy (rosbags).
    """

    def __init__(self, types: dict[str, Any], payload_as_bytes: bool) -> None:
        """Keep the classes."""
        self.types = types
        self.payload_as_bytes = payload_as_bytes

    def header(self, stamp_ns: int, frame_id: str) -> Any:
        """std_msgs/Header at ``stamp_ns`` in ``frame_id``."""
        sec, nanosec = ns_to_stamp(stamp_ns)
        return self.types['std_msgs/msg/Header'](
            stamp=self.types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nanosec),
            frame_id=frame_id)

    def frame_header(self, frame: Frame) -> Any:
        """Return the header of the source image of a frame (stamp, optical frame)."""
        return self.header(frame.stamp_ns, frame.header.frame_id if frame.header else '')

    def image(self, header: Any, array: np.ndarray, encoding: str | None = None) -> Any:
        """sensor_msgs/Image holding ``array`` (encoding from its dtype unless given)."""
        fields = image_fields(array, encoding or image_encoding(array))
        if not self.payload_as_bytes:
            fields['data'] = np.frombuffer(fields['data'], dtype=np.uint8)
        return self.types['sensor_msgs/msg/Image'](header=header, **fields)

    def camera_info(self, header: Any, k: np.ndarray, height: int, width: int) -> Any:
        """sensor_msgs/CameraInfo of an undistorted ``height`` x ``width`` image with matrix K."""
        fields = scaled_camera_info_fields(k, height, width)
        roi = self.types['sensor_msgs/msg/RegionOfInterest'](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        return self.types[CAMERA_INFO](
            header=header, height=height, width=width,
            distortion_model=fields['distortion_model'], d=np.asarray(fields['d']),
            k=np.asarray(fields['k']), r=np.asarray(fields['r']), p=np.asarray(fields['p']),
            binning_x=0, binning_y=0, roi=roi)

    def pose(self, matrix: np.ndarray) -> Any:
        """geometry_msgs/Pose of a ``(4, 4)`` rigid transform."""
        x, y, z = (float(v) for v in matrix[:3, 3])
        qx, qy, qz, qw = (float(v) for v in matrix_to_quat(matrix[:3, :3]))
        return self.types['geometry_msgs/msg/Pose'](
            position=self.types['geometry_msgs/msg/Point'](x=x, y=y, z=z),
            orientation=self.types['geometry_msgs/msg/Quaternion'](x=qx, y=qy, z=qz, w=qw))

    def point_cloud(self, header: Any, cloud: np.ndarray) -> Any:
        """sensor_msgs/PointCloud2 of a structured array (one field per named column)."""
        field_type = self.types['sensor_msgs/msg/PointField']
        fields = [field_type(name=name, offset=cloud.dtype.fields[name][1],
                             datatype=POINT_FIELD_TYPES[cloud.dtype[name].str[1:]], count=1)
                  for name in cloud.dtype.names]
        data = np.ascontiguousarray(cloud).view(np.uint8).reshape(-1)
        return self.types[POINT_CLOUD](
            header=header, height=1, width=len(cloud), fields=fields, is_bigendian=False,
            point_step=cloud.dtype.itemsize, row_step=cloud.dtype.itemsize * len(cloud),
            data=data.tobytes() if self.payload_as_bytes else data, is_dense=True)

    def window(self, window: WindowResult, identity: dict[str, str], world_frame: str) -> Any:
        """mvfm_ros/FeatureWindow of a processed window (see msg/FeatureWindow.msg)."""
        views = []
        h, w = window.features.shape[1:3]
        for frame, features, k in zip(window.frames, window.features, window.feature_intrinsics):
            header = self.frame_header(frame)
            views.append(self.types['mvfm_ros/msg/FeatureView'](
                header=header, camera=frame.camera, keyframe_id=frame.uid,
                features=self.image(header, features), feature_info=self.camera_info(
                    header, k, h, w), pose=self.pose(frame.cam_to_world)))
        new = window.frames[window.new_view]
        return self.types[WINDOW](
            header=self.header(new.stamp_ns, world_frame), window_id=window.window_id,
            new_view=window.new_view, views=views, **identity)

    def outputs(self, window: WindowResult, identity: dict[str, str], world_frame: str,
                wanted: Wanted | None = None) -> Iterator[tuple[Output, str, str, Any]]:
        """Every wanted output message of a window: ``(output, topic, camera, message)``.

        Per-view messages carry their source image's header; the arrays behind them are made
        only for wanted topics (:func:`mvfm_ros.pipeline.render.view_arrays`).
        """
        wanted = wanted or Wanted.everything()
        for result, output, topic, value in view_arrays(window, wanted):
            header = self.frame_header(result.frame)
            if output.msgtype == CAMERA_INFO:
                h, w = result.features.shape[:2]
                msg = self.camera_info(header, value, h, w)
            else:
                msg = self.image(header, value)
            yield output, topic, result.frame.camera, msg
        if WINDOW_OUTPUT.topic in wanted:
            yield (WINDOW_OUTPUT, WINDOW_OUTPUT.topic, '',
                   self.window(window, identity, world_frame))


def rosbags_typestore() -> Any:
    """Return the rosbags Jazzy typestore with the package's interfaces registered from msg/."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    found: dict[str, Any] = {}
    for name, text in msg_definitions().items():
        found.update(get_types_from_msg(text, name))
    store.register(found)
    return store


def rosbags_factory(store: Any) -> MessageFactory:
    """Return a factory over the classes of a rosbags typestore."""
    return MessageFactory(store.types, payload_as_bytes=False)


def msg_folder() -> Path:
    """Return the package's ``msg/`` folder: in this checkout, or installed under ``share``.

    ``pip install .`` and ``colcon build`` both install it as ``share/mvfm_ros/msg``.
    """
    candidates = data_places('msg')
    for folder in candidates:
        if all((folder / name).is_file() for name in MSG_FILES.values()):
            return folder
    raise FileNotFoundError('the message definitions of mvfm_ros (msg/FeatureWindow.msg) were '
                            f"not found in {', '.join(map(str, candidates))}; reinstall mvfm_ros")


def msg_definitions() -> dict[str, str]:
    """Type name -> ``.msg`` text of the package's interfaces."""
    folder = msg_folder()
    return {name: (folder / filename).read_text() for name, filename in MSG_FILES.items()}
