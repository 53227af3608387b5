"""Pinhole intrinsics: building K from ROS CameraInfo fields and rescaling it.

Pixel convention (OpenCV / ROS ``image_geometry``): integer pixel coordinates are pixel
*centres*, so pixel ``(0, 0)`` covers ``[-0.5, 0.5]^2``. Every resize or binning below keeps
that convention exact, which is what makes rays and correspondences land on the right pixel.
"""

from __future__ import annotations

from typing import Sequence

import torch


def intrinsics_from_camera_info(
    k: Sequence[float],
    binning_x: int = 0,
    binning_y: int = 0,
    roi: tuple[int, int, int, int] | None = None,
) -> torch.Tensor:
    """Return the 3x3 K of the image actually published, from CameraInfo fields.

    CameraInfo's ``k`` describes the full-resolution sensor; the published image is first cropped
    to ``roi`` (x_offset, y_offset, height, width; all zero = full image) and then binned.
    Binning factors of 0 and 1 both mean "no binning", as in sensor_msgs/CameraInfo.

    Args:
        k: the 9 row-major entries of CameraInfo.k.
        binning_x: horizontal binning factor.
        binning_y: vertical binning factor.
        roi: optional (x_offset, y_offset, height, width) of the region of interest.

    Returns:
        ``(3, 3)`` float64 tensor.
    """
    values = [float(v) for v in k]
    if len(values) != 9:
        raise ValueError(f'CameraInfo.k must have 9 entries, got {len(values)}')
    mat = torch.tensor(values, dtype=torch.float64).reshape(3, 3)
    if not torch.isfinite(mat).all() or mat[0, 0] <= 0 or mat[1, 1] <= 0:
        raise ValueError(f'CameraInfo.k is not a valid pinhole matrix: {values}')
    if roi is not None:
        x_off, y_off = roi[0], roi[1]
        mat[0, 2] -= x_off
        mat[1, 2] -= y_off
    bx = max(int(binning_x), 1)
    by = max(int(binning_y), 1)
    # A binned pixel i averages raw pixels b*i .. b*i + b - 1, whose centre is b*i + (b - 1) / 2.
    mat[0, 0] /= bx
    mat[0, 1] /= bx
    mat[0, 2] = (mat[0, 2] - (bx - 1) / 2.0) / bx
    mat[1, 1] /= by
    mat[1, 2] = (mat[1, 2] - (by - 1) / 2.0) / by
    return mat


def scale_intrinsics(intrinsics: torch.Tensor, scale_x: float, scale_y: float) -> torch.Tensor:
    """Rescale K for an image resized by (scale_x, scale_y), pixel centres kept exact.

    A resize maps x to ``(x + 0.5) * s - 0.5``; this is what ``torch.nn.functional.interpolate``
    with ``align_corners=False`` and OpenCV's ``cv2.resize`` do.

    Args:
        intrinsics: ``(..., 3, 3)`` K matrices.
        scale_x: new width / old width.
        scale_y: new height / old height.

    Returns:
        ``(..., 3, 3)`` rescaled K, same dtype.
    """
    out = intrinsics.clone()
    out[..., 0, 0] = intrinsics[..., 0, 0] * scale_x
    out[..., 0, 1] = intrinsics[..., 0, 1] * scale_x
    out[..., 0, 2] = (intrinsics[..., 0, 2] + 0.5) * scale_x - 0.5
    out[..., 1, 1] = intrinsics[..., 1, 1] * scale_y
    out[..., 1, 2] = (intrinsics[..., 1, 2] + 0.5) * scale_y - 0.5
    return out


def pixel_grid(
    height: int, width: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Pixel-centre coordinates of an image.

    Returns:
        ``(height, width, 2)`` tensor of (u, v) = (column, row).
    """
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype),
        torch.arange(width, device=device, dtype=dtype),
        indexing='ij',
    )
    return torch.stack((u, v), dim=-1)


def invert_intrinsics(intrinsics: torch.Tensor) -> torch.Tensor:
    """Closed-form inverse of pinhole K matrices ``(..., 3, 3)`` (upper triangular, skew allowed).

    Written out instead of ``torch.linalg.inv`` so the model exports to ONNX (which has no
    general matrix inverse) and stays exact for the triangular case.
    """
    fx, s, cx = intrinsics[..., 0, 0], intrinsics[..., 0, 1], intrinsics[..., 0, 2]
    fy, cy = intrinsics[..., 1, 1], intrinsics[..., 1, 2]
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    rows = (
        torch.stack((1 / fx, -s / (fx * fy), (s * cy - cx * fy) / (fx * fy)), dim=-1),
        torch.stack((zero, 1 / fy, -cy / fy), dim=-1),
        torch.stack((zero, zero, one), dim=-1),
    )
    return torch.stack(rows, dim=-2)


def cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cross product over the last dimension (written out: ONNX export has no cross operator)."""
    ax, ay, az = a.unbind(-1)
    bx, by, bz = b.unbind(-1)
    return torch.stack((ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx), dim=-1)
