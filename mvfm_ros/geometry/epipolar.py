"""Epipolar geometry of two calibrated views: the cross-product matrix and the fundamental matrix.

For pixels ``x_a`` of view A and ``x_b`` of view B that see the same point,
``x_b^T F x_a = 0`` with ``F = K_b^-T [t]_x R K_a^-1`` where ``(R, t)`` takes A's camera frame
to B's.
"""

from __future__ import annotations

import torch

from mvfm_ros.geometry.camera import invert_intrinsics
from mvfm_ros.geometry.pose import invert_rigid


def skew(vector: torch.Tensor) -> torch.Tensor:
    """Return ``[v]_x`` ``(3, 3)``, the matrix with ``[v]_x @ u == cross(v, u)``."""
    zero = vector.new_zeros(())
    return torch.stack((torch.stack((zero, -vector[2], vector[1])),
                        torch.stack((vector[2], zero, -vector[0])),
                        torch.stack((-vector[1], vector[0], zero))))


def relative_pose(cam_to_world_a: torch.Tensor, cam_to_world_b: torch.Tensor) -> torch.Tensor:
    """Return the ``(4, 4)`` transform from A's camera frame to B's."""
    return invert_rigid(cam_to_world_b) @ cam_to_world_a


def fundamental_matrix(k_a: torch.Tensor, k_b: torch.Tensor, a_to_b: torch.Tensor,
                       ) -> torch.Tensor:
    """Return the ``(3, 3)`` fundamental matrix of two views (see the module docstring).

    Args:
        k_a: ``(3, 3)`` K of view A.
        k_b: ``(3, 3)`` K of view B.
        a_to_b: ``(4, 4)`` transform from A's camera frame to B's (:func:`relative_pose`).
    """
    rot, t = a_to_b[:3, :3], a_to_b[:3, 3]
    return invert_intrinsics(k_b).T @ skew(t) @ rot @ invert_intrinsics(k_a)
