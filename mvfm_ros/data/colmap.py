"""COLMAP sparse models (text or binary) and track-based correspondences, as the paper uses.

The reader is hand-written from COLMAP's documented file formats rather than taken from
``pycolmap``: it is a few dozen lines for three files, while pycolmap is a large compiled
package that would be the only reason to carry COLMAP's C++ build on a robot.

Conventions: COLMAP places the centre of the top-left pixel at (0.5, 0.5); this package (like
OpenCV and ROS) at (0, 0). The reader converts principal points and 2D observations. COLMAP
stores world-to-camera poses; the reader returns camera-to-world.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# model id -> (name, number of parameters); the pinhole part is always the leading f / fx fy cx cy.
CAMERA_MODELS = {
    0: ('SIMPLE_PINHOLE', 3), 1: ('PINHOLE', 4), 2: ('SIMPLE_RADIAL', 4), 3: ('RADIAL', 5),
    4: ('OPENCV', 8), 5: ('OPENCV_FISHEYE', 8), 6: ('FULL_OPENCV', 12), 7: ('FOV', 5),
    8: ('SIMPLE_RADIAL_FISHEYE', 4), 9: ('RADIAL_FISHEYE', 5), 10: ('THIN_PRISM_FISHEYE', 12),
}
MODEL_IDS = {name: (mid, n) for mid, (name, n) in CAMERA_MODELS.items()}
SINGLE_FOCAL = {'SIMPLE_PINHOLE', 'SIMPLE_RADIAL', 'RADIAL', 'FOV', 'SIMPLE_RADIAL_FISHEYE',
                'RADIAL_FISHEYE'}


@dataclass
class ColmapCamera:
    """One COLMAP camera."""

    camera_id: int
    model: str
    width: int
    height: int
    params: np.ndarray

    @property
    def intrinsics(self) -> np.ndarray:
        """3x3 K in this package's pixel convention (pixel centres at integers)."""
        p = self.params
        fx, fy, cx, cy = (p[0], p[0], p[1], p[2]) if self.model in SINGLE_FOCAL else p[:4]
        return np.array([[fx, 0.0, cx - 0.5], [0.0, fy, cy - 0.5], [0.0, 0.0, 1.0]])

    @property
    def is_distorted(self) -> bool:
        """Whether the model has distortion terms (the loader does not undistort)."""
        return self.model not in ('SIMPLE_PINHOLE', 'PINHOLE') and bool(
            np.any(self.params[3 if self.model in SINGLE_FOCAL else 4:] != 0))


@dataclass
class ColmapImage:
    """One registered image: pose, camera and 2D observations."""

    image_id: int
    name: str
    camera_id: int
    cam_to_world: np.ndarray
    xys: np.ndarray  # (P, 2) observations, this package's pixel convention
    point3d_ids: np.ndarray  # (P,) -1 = no 3D point


@dataclass
class ColmapModel:
    """Cameras, images and 3D point ids of a sparse reconstruction."""

    cameras: dict[int, ColmapCamera]
    images: dict[int, ColmapImage]
    points3d: dict[int, np.ndarray]  # id -> xyz


def quat_to_rot(qw: float, qx: float, qy: float, qz: float) -> np.ndarray:
    """Rotation matrix of a (normalised) Hamilton quaternion."""
    q = np.array([qw, qx, qy, qz], dtype=np.float64)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def _cam_to_world(qvec, tvec) -> np.ndarray:
    rot = quat_to_rot(*qvec)
    pose = np.eye(4)
    pose[:3, :3] = rot.T
    pose[:3, 3] = -rot.T @ np.asarray(tvec, dtype=np.float64)
    return pose


def _data_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.startswith('#')]


def _read_text(root: Path) -> ColmapModel:
    cameras = {}
    for line in _data_lines(root / 'cameras.txt'):
        parts = line.split()
        cam = ColmapCamera(int(parts[0]), parts[1], int(parts[2]), int(parts[3]),
                           np.array([float(v) for v in parts[4:]]))
        cameras[cam.camera_id] = cam
    images = {}
    lines = [line.strip() for line in (root / 'images.txt').read_text().splitlines()
             if not line.startswith('#')]
    for header, points in zip(lines[0::2], lines[1::2]):
        if not header:
            continue
        parts = header.split()
        values = np.array(points.split(), dtype=np.float64).reshape(-1, 3)
        images[int(parts[0])] = ColmapImage(
            int(parts[0]), ' '.join(parts[9:]), int(parts[8]),
            _cam_to_world([float(v) for v in parts[1:5]], [float(v) for v in parts[5:8]]),
            values[:, :2] - 0.5, values[:, 2].astype(np.int64))
    points = {}
    for line in _data_lines(root / 'points3D.txt'):
        parts = line.split()
        points[int(parts[0])] = np.array([float(v) for v in parts[1:4]])
    return ColmapModel(cameras, images, points)


def _read_binary(root: Path) -> ColmapModel:
    cameras = {}
    with open(root / 'cameras.bin', 'rb') as f:
        for _ in range(struct.unpack('<Q', f.read(8))[0]):
            cid, mid, width, height = struct.unpack('<iiQQ', f.read(24))
            name, n = CAMERA_MODELS[mid]
            params = np.array(struct.unpack(f'<{n}d', f.read(8 * n)))
            cameras[cid] = ColmapCamera(cid, name, width, height, params)
    images = {}
    with open(root / 'images.bin', 'rb') as f:
        for _ in range(struct.unpack('<Q', f.read(8))[0]):
            iid, *rest = struct.unpack('<i7di', f.read(64))
            qvec, tvec, cid = rest[:4], rest[4:7], rest[7]
            name = b''
            while (char := f.read(1)) != b'\x00':
                name += char
            count = struct.unpack('<Q', f.read(8))[0]
            data = np.frombuffer(f.read(24 * count), dtype=np.dtype(
                [('x', '<f8'), ('y', '<f8'), ('id', '<i8')]))
            xys = np.stack((data['x'], data['y']), 1) - 0.5
            images[iid] = ColmapImage(iid, name.decode(), cid, _cam_to_world(qvec, tvec), xys,
                                      data['id'].astype(np.int64))
    points = {}
    with open(root / 'points3D.bin', 'rb') as f:
        for _ in range(struct.unpack('<Q', f.read(8))[0]):
            pid, x, y, z, _r, _g, _b, _err, track = struct.unpack('<Q3d3BdQ', f.read(51))
            f.read(8 * track)
            points[pid] = np.array([x, y, z])
    return ColmapModel(cameras, images, points)


def read_model(root: str | Path) -> ColmapModel:
    """Read a COLMAP sparse model folder (``cameras``, ``images``, ``points3D``; .txt or .bin)."""
    root = Path(root)
    if (root / 'cameras.bin').is_file():
        return _read_binary(root)
    if (root / 'cameras.txt').is_file():
        return _read_text(root)
    raise FileNotFoundError(f"no COLMAP model in '{root}' (expected cameras.txt or cameras.bin)")


def track_matches(model: ColmapModel, image_ids: list[int]) -> np.ndarray:
    """Correspondences between the given images from shared 3D points.

    Returns:
        ``(N, 6)`` rows ``(view_a, u_a, v_a, view_b, u_b, v_b)``, views indexed by position in
        ``image_ids``, pixels in this package's convention, every ordered pair a != b.
    """
    observations = []  # per view: {point id: (u, v)}
    for iid in image_ids:
        img = model.images[iid]
        keep = img.point3d_ids >= 0
        observations.append(dict(zip(img.point3d_ids[keep].tolist(), img.xys[keep].tolist())))
    rows = []
    for a, obs_a in enumerate(observations):
        for b, obs_b in enumerate(observations):
            if a == b:
                continue
            for pid in sorted(obs_a.keys() & obs_b.keys()):
                rows.append((a, *obs_a[pid], b, *obs_b[pid]))
    return np.array(rows, dtype=np.float64).reshape(-1, 6)
