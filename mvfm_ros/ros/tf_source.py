"""Poses from TF (tf2_ros): ``world_frame`` <- image frame at the image stamp, never "latest".

The lookup never blocks: it asks the buffer without a timeout and the frame assembly retries
until its deadline (``tf_timeout``), which is what a blocking lookup with that timeout would do
without holding a thread. It answers like every pose source
(:mod:`mvfm_ros.messages.poses`): :class:`~mvfm_ros.messages.poses.PoseNotYet` with the kind
to count if the transform never comes (``tf_frame_unknown``, ``tf_not_connected``,
``pose_lookup_failed`` for one that is late), a ``pose_extrapolation`` error for a stamp
older than the buffer holds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mvfm_ros.messages.conversions import ConversionError, transform_to_matrix
from mvfm_ros.messages.poses import PoseNotYet

TF_CACHE_S = 30.0


class TfPoseSource:
    """tf2_ros buffer and listener on a node.

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
                '(apt install ros-$ROS_DISTRO-tf2-ros; in a development checkout `make '
                'ros-tools` builds it into .venv); or set pose_source: topic') from err
        from rclpy.duration import Duration

        self.world_frame = world_frame.lstrip('/')
        self.buffer = Buffer(cache_time=Duration(seconds=TF_CACHE_S), node=node)
        self.listener = TransformListener(self.buffer, node, spin_thread=False)

    def lookup(self, frame_id: str, stamp_ns: int) -> np.ndarray:
        """Pose of ``frame_id`` in the world frame at the stamp."""
        import tf2_ros
        from rclpy.time import Time

        try:
            msg = self.buffer.lookup_transform(self.world_frame, frame_id.lstrip('/'),
                                               Time(nanoseconds=stamp_ns))
        except tf2_ros.ExtrapolationException as err:
            if 'past' in str(err):  # older than the buffer holds: it will never come
                raise ConversionError('pose_extrapolation', f'TF: {err}') from err
            raise PoseNotYet('pose_lookup_failed', f'TF: {err}') from err
        except tf2_ros.ConnectivityException as err:
            raise PoseNotYet('tf_not_connected', f'TF {self.world_frame} <- {frame_id}: '
                             f'{err}') from err
        except tf2_ros.LookupException as err:
            raise PoseNotYet('tf_frame_unknown', f'TF {self.world_frame} <- {frame_id}: '
                             f'{err}') from err
        return transform_to_matrix(msg.transform)

    def close(self) -> None:
        """Stop listening."""
        unregister = getattr(self.listener, 'unregister', None)
        if unregister is not None:
            unregister()
