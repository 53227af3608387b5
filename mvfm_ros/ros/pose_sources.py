"""Where the node gets each image's pose: TF (tf2_ros) or a pose topic, never "latest".

Both answer ``lookup(frame_id, stamp_ns)`` with a ``(4, 4)`` camera-to-world pose, raise
:class:`PoseNotYet` when the data covering the stamp may still arrive (the node retries until
``tf_timeout``), and a :class:`~mvfm_ros.pipeline.FrameError` (its ``kind`` a diagnostics
counter) when it never will. Images without a frame_id never get here: the frame assembly
(:mod:`mvfm_ros.ros.assemble`) refuses them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mvfm_ros.pipeline.poses import PoseBuffer, PoseLookupError
from mvfm_ros.ros.conversions import (
    QUATERNION_TOLERANCE,
    ConversionError,
    check_not_future,
    pose_to_matrix,
    quaternion_norm_error,
    stamp_to_ns,
)


class PoseNotYet(LookupError):
    """The pose for this stamp is not available yet; try again later."""


class TopicPoseSource:
    """Poses from PoseStamped/Odometry messages, interpolated to image stamps.

    Args:
        world_frame: the frame the messages must be expressed in.
        max_gap: seconds between bracketing poses allowed for interpolation.
    """

    def __init__(self, world_frame: str, max_gap: float) -> None:
        """Start with no poses."""
        self.world_frame = world_frame
        self.buffer = PoseBuffer(max_gap=max_gap, max_age=60.0)

    def add(self, msg: Any, now_ns: int = 0) -> list[tuple[str, str]]:
        """Take a PoseStamped or Odometry message.

        Args:
            msg: the message.
            now_ns: the node's clock (0: unknown, e.g. sim time before /clock): a pose stamped
                more than :data:`FUTURE_TOLERANCE_NS` ahead of it is refused, so one outlier
                cannot push every real pose out of the history.

        Returns:
            ``(kind, message)`` notes for accepted poses worth a log line and a count: a
            normalised quaternion, a backwards time jump that cleared the history.

        Raises:
            ConversionError: no frame (``missing_frame_id``), another frame
                (``pose_frame_mismatch``), a stamp from the future (``future_stamp``) or a
                degenerate pose (``bad_pose``).
        """
        frame = msg.header.frame_id.lstrip('/')
        if not frame:
            raise ConversionError('missing_frame_id', 'pose has an empty frame_id; expected '
                                  f"world_frame '{self.world_frame}'")
        if frame != self.world_frame.lstrip('/'):
            raise ConversionError('pose_frame_mismatch', f"pose is in frame '{frame}', expected "
                                  f"world_frame '{self.world_frame}'")
        stamp = stamp_to_ns(msg.header.stamp)
        check_not_future(stamp, now_ns, 'pose')
        pose = msg.pose.pose if hasattr(msg.pose, 'covariance') else msg.pose
        notes = []
        norm_error = quaternion_norm_error(pose.orientation)
        matrix = pose_to_matrix(pose)
        if norm_error > QUATERNION_TOLERANCE:
            notes.append(('non_unit_quaternion', f'pose quaternion norm is off by '
                          f'{norm_error:.3g}; normalised and used'))
        latest = self.buffer.latest_stamp()
        if latest is not None and latest - stamp > self.buffer.max_age_ns:
            notes.append(('time_jump', f'pose stamp {stamp / 1e9:.3f} s is '
                          f'{(latest - stamp) / 1e9:.1f} s before the newest pose (bag loop or '
                          'clock reset): pose history cleared'))
            self.buffer.clear()
        self.buffer.add(stamp, matrix)
        return notes

    def lookup(self, frame_id: str, stamp_ns: int) -> np.ndarray:
        """Pose at the stamp (``frame_id`` is not used: the topic is the camera's pose)."""
        try:
            return self.buffer.lookup(stamp_ns)
        except PoseLookupError as err:
            latest = self.buffer.latest_stamp()
            if err.kind == 'pose_extrapolation' and (latest is None or stamp_ns > latest):
                raise PoseNotYet(str(err)) from err
            raise


class TfPoseSource:
    """Poses from TF: ``world_frame`` <- image frame at the image stamp (tf2_ros).

    The lookup never blocks the executor: it asks the buffer without a timeout and the node
    retries until ``tf_timeout``, which is what a blocking lookup with that timeout would do
    without holding a callback thread.

    Args:
        node: the rclpy node (the buffer uses its clock, so ``use_sim_time`` works).
        world_frame: target frame.
    """

    def __init__(self, node: Any, world_frame: str) -> None:
        """Create the tf2 buffer and listener on ``node``."""
        try:
            from tf2_ros.buffer import Buffer
            from tf2_ros.transform_listener import TransformListener
        except ImportError as err:
            raise RuntimeError(
                'pose_source tf needs tf2_ros, which comes with a ROS 2 install '
                '(apt install ros-$ROS_DISTRO-tf2-ros); or set pose_source: topic') from err
        from rclpy.duration import Duration

        self.world_frame = world_frame
        self.buffer = Buffer(cache_time=Duration(seconds=30.0), node=node)
        self.listener = TransformListener(self.buffer, node, spin_thread=False)

    def lookup(self, frame_id: str, stamp_ns: int) -> np.ndarray:
        """Pose of ``frame_id`` in the world frame at the stamp."""
        import tf2_ros
        from rclpy.time import Time

        from mvfm_ros.ros.conversions import transform_to_matrix

        try:
            msg = self.buffer.lookup_transform(self.world_frame, frame_id,
                                               Time(nanoseconds=stamp_ns))
        except tf2_ros.ExtrapolationException as err:
            raise PoseNotYet(f'TF extrapolation: {err}') from err
        except (tf2_ros.LookupException, tf2_ros.ConnectivityException) as err:
            raise PoseNotYet(f'TF lookup {self.world_frame} <- {frame_id}: {err}') from err
        return transform_to_matrix(msg.transform)

    def close(self) -> None:
        """Stop listening."""
        unregister = getattr(self.listener, 'unregister', None)
        if unregister is not None:
            unregister()
