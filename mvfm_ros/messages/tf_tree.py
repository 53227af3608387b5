"""A time-interpolated transform tree read from ``/tf`` and ``/tf_static`` of a bag.

tf2 (tf2_ros / the tf2 C++ buffer) is not installable without a ROS install, and the bag
processor must run on any machine with ``pip``; so this small tree does what tf2's buffer does for
offline lookups: per edge a time series of transforms, interpolated (slerp + lerp) at the query
stamp, composed along the path between two frames, never extrapolated. The tests check it
against tf2's ``BufferCore`` where tf2 is built.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from mvfm_ros.geometry.interpolation import invert_pose
from mvfm_ros.pipeline.poses import PoseBuffer, PoseLookupError


class FrameUnknown(LookupError):
    """A frame that no transform has named (yet)."""


class NotConnected(LookupError):
    """Both frames are known but no chain of transforms joins them (yet)."""


class TransformTree:
    """Transforms between frames over time, looked up as tf2's buffer does.

    As in tf2, two consecutive transforms of an edge are interpolated however far apart they
    are (``max_pose_gap`` is for pose topics), a stamp outside an edge's data is never
    extrapolated, and a static transform holds at every stamp.
    """

    def __init__(self) -> None:
        """Start empty."""
        self.dynamic: dict[tuple[str, str], PoseBuffer] = {}
        self.static: dict[tuple[str, str], np.ndarray] = {}
        self.neighbours: dict[str, set[str]] = {}

    @property
    def frames(self) -> list[str]:
        """All frame names seen."""
        return sorted(self.neighbours)

    def add(self, parent: str, child: str, stamp_ns: int, transform: np.ndarray,
            static: bool = False) -> None:
        """Add the pose of ``child`` in ``parent`` (a geometry_msgs/TransformStamped)."""
        parent, child = parent.lstrip('/'), child.lstrip('/')
        if static:
            self.static[(parent, child)] = transform
        else:
            self.dynamic.setdefault((parent, child), PoseBuffer(math.inf, max_age=0)).add(
                stamp_ns, transform)
        self.neighbours.setdefault(parent, set()).add(child)
        self.neighbours.setdefault(child, set()).add(parent)

    def _path(self, target: str, source: str) -> list[str]:
        previous = {source: source}
        queue = deque([source])
        while queue:
            frame = queue.popleft()
            if frame == target:
                break
            for other in self.neighbours.get(frame, ()):
                if other not in previous:
                    previous[other] = frame
                    queue.append(other)
        if target not in previous:
            raise NotConnected(f"no transform path from '{source}' to '{target}' (frames "
                               f'known: {", ".join(self.frames) or "none"})')
        path = [target]  # target ... source: T_target_source = T_target_x1 @ ... @ T_xn_source
        while path[-1] != source:
            path.append(previous[path[-1]])
        return path

    def _edge(self, parent: str, child: str, stamp_ns: int) -> np.ndarray:
        if (parent, child) in self.static:
            return self.static[(parent, child)]
        return self.dynamic[(parent, child)].lookup(stamp_ns)

    def lookup(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        """Pose of ``source`` in ``target`` at the stamp, ``(4, 4)`` (tf2's lookup_transform).

        Raises:
            FrameUnknown: a frame is unknown.
            NotConnected: the frames are not connected.
            mvfm_ros.pipeline.poses.PoseLookupError: the stamp is outside an edge's data
                (``ahead`` when it is newer than the edge's latest transform).
        """
        target, source = target.lstrip('/'), source.lstrip('/')
        for frame in (target, source):
            if frame not in self.neighbours:
                raise FrameUnknown(f"frame '{frame}' is not in the TF tree (frames known: "
                                   f'{", ".join(self.frames) or "none"})')
        path = self._path(target, source)
        out = np.eye(4)
        for a, b in zip(path[:-1], path[1:]):
            if (a, b) in self.static or (a, b) in self.dynamic:
                step = self._edge(a, b, stamp_ns)
            else:
                step = invert_pose(self._edge(b, a, stamp_ns))
            out = out @ step
        return out


__all__ = ['FrameUnknown', 'NotConnected', 'PoseLookupError', 'TransformTree']
