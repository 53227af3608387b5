"""Where an image's pose comes from, never "latest": a pose topic or a transform tree.

Every pose source answers ``lookup(frame_id, stamp_ns)`` with a ``(4, 4)`` camera-to-world
pose, raises :class:`PoseNotYet` when the data covering the stamp may still arrive (the frame
assembly retries until its deadline and then counts the error's ``kind``), and a
:class:`~mvfm_ros.pipeline.FrameError` when it never will. The node's TF source (tf2_ros) lives
with the rclpy runtime; these two are ROS-free, for the node's pose topics and for bags.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from mvfm_ros.messages.conversions import (
    QUATERNION_TOLERANCE,
    ConversionError,
    check_not_future,
    pose_to_matrix,
    quaternion_norm_error,
    stamp_to_ns,
)
from mvfm_ros.messages.tf_tree import FrameUnknown, NotConnected, TransformTree
from mvfm_ros.pipeline.poses import PoseBuffer, PoseLookupError


class PoseNotYet(LookupError):
    """The pose for a stamp is not available yet.

    Attributes:
        kind: the problem kind to count if it never comes (``pose_lookup_failed``: late,
            ``tf_frame_unknown``, ``tf_not_connected``).
    """

    def __init__(self, kind: str, message: str) -> None:
        """Record the kind."""
        super().__init__(message)
        self.kind = kind


class PoseSource(Protocol):
    """What the frame assembly asks for each image."""

    def lookup(self, frame_id: str, stamp_ns: int) -> np.ndarray:
        """Pose of ``frame_id`` in the world frame at the stamp (see the module docstring)."""


class TopicPoseSource:
    """Poses from PoseStamped/Odometry messages, interpolated to image stamps.

    Args:
        world_frame: the frame the messages must be expressed in.
        max_gap: seconds between bracketing poses allowed for interpolation.
        max_age: seconds of history kept (0: all, for bags).
    """

    def __init__(self, world_frame: str, max_gap: float, max_age: float = 60.0) -> None:
        """Start with no poses."""
        self.world_frame = world_frame
        self.buffer = PoseBuffer(max_gap=max_gap, max_age=max_age)

    def add(self, msg: Any, now_ns: int = 0) -> list[tuple[str, str]]:
        """Take a PoseStamped or Odometry message.

        Args:
            msg: the message.
            now_ns: the receiver's clock (0: unknown, e.g. sim time before /clock): a pose
                stamped far ahead of it is refused, so one outlier cannot push every real pose
                out of the history.

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
        if latest is not None and self.buffer.max_age_ns and \
                latest - stamp > self.buffer.max_age_ns:
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
            if err.ahead:
                raise PoseNotYet('pose_lookup_failed', str(err)) from err
            raise


class TreePoseSource:
    """Poses from a :class:`~mvfm_ros.messages.tf_tree.TransformTree` filled as a bag plays.

    Args:
        tree: the transform tree (``/tf`` and ``/tf_static`` are added to it as they come).
        world_frame: target frame of every lookup.
    """

    def __init__(self, tree: TransformTree, world_frame: str) -> None:
        """Keep the tree."""
        self.tree = tree
        self.world_frame = world_frame.lstrip('/')

    def lookup(self, frame_id: str, stamp_ns: int) -> np.ndarray:
        """Pose of ``frame_id`` in the world frame at the stamp, as tf2 would give it."""
        try:
            return self.tree.lookup(self.world_frame, frame_id, stamp_ns)
        except FrameUnknown as err:
            raise PoseNotYet('tf_frame_unknown', f'TF: {err}') from err
        except NotConnected as err:
            raise PoseNotYet('tf_not_connected', f'TF: {err}') from err
        except PoseLookupError as err:
            if err.ahead:
                raise PoseNotYet('pose_lookup_failed', f'TF {self.world_frame} <- {frame_id}: '
                                 f'{err}') from err
            raise
