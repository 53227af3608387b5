"""Rotations as quaternions and time interpolation of rigid poses (for pose topics and bag TF).

Written with NumPy on single poses: poses arrive one message at a time in the node's callbacks
and the bag reader, where a tensor library's batching buys nothing. Quaternions are (x, y, z, w),
the order of geometry_msgs/Quaternion.
"""

from __future__ import annotations

import numpy as np


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrix ``(3, 3)`` of a quaternion (x, y, z, w), normalised first.

    Raises:
        ValueError: the quaternion is not finite or has (near) zero norm.
    """
    q = np.asarray(q, dtype=np.float64)
    norm = np.linalg.norm(q)
    if not np.all(np.isfinite(q)) or norm < 1e-6:
        raise ValueError(f'degenerate quaternion {q.tolist()}')
    x, y, z, w = q / norm
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quat(rotation: np.ndarray) -> np.ndarray:
    """Quaternion (x, y, z, w) with w >= 0 of a rotation matrix (Shepperd's method)."""
    m = np.asarray(rotation, dtype=np.float64)
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
        q[i] = s / 4
        q[j] = (m[j, i] + m[i, j]) / s
        q[k] = (m[k, i] + m[i, k]) / s
    q = np.array(q)
    return q if q[3] >= 0 else -q


def pose_matrix(translation: np.ndarray, quaternion: np.ndarray) -> np.ndarray:
    """``(4, 4)`` transform from a translation and a quaternion (x, y, z, w)."""
    out = np.eye(4)
    out[:3, :3] = quat_to_matrix(quaternion)
    out[:3, 3] = translation
    if not np.all(np.isfinite(out)):
        raise ValueError(f'pose has non-finite values: {np.asarray(translation).tolist()}')
    return out


def slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    """Spherical linear interpolation between unit quaternions, shortest path."""
    q0, q1 = np.asarray(q0, float), np.asarray(q1, float)
    dot = float(np.dot(q0, q1))
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly parallel: lerp is exact to float precision and avoids 0/0
        out = q0 + t * (q1 - q0)
        return out / np.linalg.norm(out)
    theta = np.arccos(dot)
    return (np.sin((1 - t) * theta) * q0 + np.sin(t * theta) * q1) / np.sin(theta)


def interpolate_pose(pose0: np.ndarray, pose1: np.ndarray, t: float) -> np.ndarray:
    """Pose at fraction ``t`` in [0, 1] between two ``(4, 4)`` transforms (slerp + lerp)."""
    out = np.eye(4)
    out[:3, :3] = quat_to_matrix(slerp(matrix_to_quat(pose0[:3, :3]),
                                       matrix_to_quat(pose1[:3, :3]), t))
    out[:3, 3] = (1 - t) * pose0[:3, 3] + t * pose1[:3, 3]
    return out


def rotation_angle(rotation: np.ndarray) -> float:
    """Angle in radians of a ``(3, 3)`` rotation."""
    return float(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1.0, 1.0)))


def invert_pose(pose: np.ndarray) -> np.ndarray:
    """Inverse of a ``(4, 4)`` rigid transform (transpose rotation, rotate translation back)."""
    out = np.eye(4)
    out[:3, :3] = pose[:3, :3].T
    out[:3, 3] = -pose[:3, :3].T @ pose[:3, 3]
    return out
