"""Procedural indoor scenes with exact ground truth, deterministic from a seed.

Each scene is a room (floor, walls, ceiling) furnished with crates, tables, shelves and balls,
textured with real photographs. Cameras follow robot-like trajectories (driving forward while
turning, turning on the spot, circling the room) at robot heights, optionally as a rig of several
cameras. Every view comes with depth, normals, instance ids and exact intrinsics and poses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from mvfm_ros.data.correspondence import window_overlap
from mvfm_ros.data.raycast import Primitives, render
from mvfm_ros.data.sample import MultiViewSample
from mvfm_ros.data.textures import texture_bank

TRAJECTORIES = ('forward', 'turn', 'orbit')
# Small-baseline robot motions: creeping forward a few cm per frame, hovering (an arm camera
# holding still, mm-cm jitter and a few degrees).
SMALL_MOTIONS = ('creep', 'hover')
MOTIONS = TRAJECTORIES + SMALL_MOTIONS
STEREO_BASELINES = (0.05, 0.25)  # metres: the range of calibrated stereo rigs generated
RIGS = {
    'mono': ((0.0, 0.0),),
    'stereo': ((0.0, -0.06), (0.0, 0.06)),
    'ring': ((0.0, 0.0), (math.radians(50), 0.0), (math.radians(-50), 0.0)),
}


def look_pose(position: np.ndarray, yaw: float, pitch: float) -> np.ndarray:
    """Camera-to-world pose (optical frame) at ``position`` looking along yaw/pitch (z-up world).

    Args:
        position: (3,) camera centre.
        yaw: heading about world z, radians (0 looks along +x).
        pitch: downward tilt, radians.
    """
    forward = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw),
                        -math.sin(pitch)])
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack((right, down, forward), axis=1)
    pose[:3, 3] = position
    return pose


@dataclass
class SceneConfig:
    """Knobs of the generator."""

    height: int = 224
    width: int = 224
    fov_deg: float = 70.0
    supersample: int = 2
    min_objects: int = 5
    max_objects: int = 10
    min_overlap: float = 0.25


class SceneGenerator:
    """Deterministic generator of multi-view samples: ``generator.sample(i)`` is always the same.

    Args:
        seed: base seed; sample i uses the seed sequence (seed, i).
        config: image size, field of view and scene statistics.
    """

    def __init__(self, seed: int = 0, config: SceneConfig | None = None) -> None:
        """Load the texture bank once."""
        self.seed = seed
        self.config = config or SceneConfig()
        self.textures = texture_bank()

    # ------------------------------------------------------------------------------- scenes
    def scene(self, rng: np.random.Generator) -> tuple[Primitives, dict]:
        """Build a random furnished room; returns the primitives and its layout facts."""
        n_tex = self.textures.shape[0]
        size = np.array([rng.uniform(4.5, 8.0), rng.uniform(4.5, 8.0), rng.uniform(2.5, 3.2)])
        boxes = []  # (centre, yaw, half extents, ids per face, textures per face, tex scale)
        room_ids = [3, 4, 5, 6, 1, 2]  # walls -x, +x, -y, +y, floor, ceiling
        boxes.append((np.array([0.0, 0.0, size[2] / 2]), 0.0, size / 2, room_ids,
                      list(rng.integers(0, n_tex, 6)), rng.uniform(0.8, 1.6)))
        spheres = []
        next_id = 7
        free_radius = 1.2  # the centre of the room stays free for the cameras
        for _ in range(int(rng.integers(self.config.min_objects, self.config.max_objects + 1))):
            kind = rng.choice(['crate', 'table', 'shelf', 'ball'], p=[0.4, 0.25, 0.2, 0.15])
            angle = rng.uniform(0, 2 * math.pi)
            limit = np.min(size[:2] / 2 - 0.6)
            dist = rng.uniform(free_radius + 0.5, max(free_radius + 0.6, limit))
            cx, cy = dist * math.cos(angle), dist * math.sin(angle)
            yaw = rng.uniform(0, math.pi)
            tex = int(rng.integers(0, n_tex))
            scale = rng.uniform(0.4, 1.0)
            if kind == 'crate':
                half = rng.uniform([0.15, 0.15, 0.15], [0.45, 0.45, 0.5])
                boxes.append((np.array([cx, cy, half[2]]), yaw, half, [next_id] * 6,
                              [tex] * 6, scale))
            elif kind == 'shelf':
                half = rng.uniform([0.2, 0.4, 0.6], [0.35, 0.8, 1.0])
                boxes.append((np.array([cx, cy, half[2]]), yaw, half, [next_id] * 6,
                              [tex] * 6, scale))
            elif kind == 'table':
                top_h = rng.uniform(0.6, 0.85)
                half_top = np.array([rng.uniform(0.35, 0.7), rng.uniform(0.3, 0.5), 0.03])
                boxes.append((np.array([cx, cy, top_h]), yaw, half_top, [next_id] * 6,
                              [tex] * 6, scale))
                leg_half = np.array([0.03, 0.03, (top_h - 0.03) / 2])
                rot = np.array([[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]])
                for sx in (-1, 1):
                    for sy in (-1, 1):
                        off = rot @ (np.array([sx, sy]) * (half_top[:2] - 0.05))
                        boxes.append((np.array([cx + off[0], cy + off[1], leg_half[2]]), yaw,
                                      leg_half, [next_id] * 6, [tex] * 6, scale))
            else:
                radius = rng.uniform(0.15, 0.35)
                spheres.append((np.array([cx, cy, radius]), radius, next_id, tex))
            next_id += 1
        light = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), 1.0])
        prims = self._to_tensors(boxes, spheres, light / np.linalg.norm(light))
        return prims, {'size': size, 'free_radius': free_radius, 'num_instances': next_id}

    @staticmethod
    def _to_tensors(boxes: list, spheres: list, light: np.ndarray) -> Primitives:
        def rot_z(yaw: float) -> np.ndarray:
            c, s = math.cos(yaw), math.sin(yaw)
            return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])

        f32 = torch.float32
        return Primitives(
            box_centre=torch.tensor(np.stack([b[0] for b in boxes]), dtype=f32),
            box_rot=torch.tensor(np.stack([rot_z(b[1]) for b in boxes]), dtype=f32),
            box_half=torch.tensor(np.stack([b[2] for b in boxes]), dtype=f32),
            box_inside=torch.tensor([i == 0 for i in range(len(boxes))]),
            box_ids=torch.tensor([b[3] for b in boxes], dtype=torch.long),
            box_tex=torch.tensor(np.array([b[4] for b in boxes]), dtype=torch.long),
            box_tex_scale=torch.tensor([b[5] for b in boxes], dtype=f32),
            sphere_centre=torch.tensor(np.array([s[0] for s in spheres]).reshape(-1, 3),
                                       dtype=f32),
            sphere_radius=torch.tensor([s[1] for s in spheres], dtype=f32),
            sphere_ids=torch.tensor([s[2] for s in spheres], dtype=torch.long),
            sphere_tex=torch.tensor([s[3] for s in spheres], dtype=torch.long),
            light=torch.tensor(light, dtype=f32),
        )

    # --------------------------------------------------------------------------- trajectories
    def trajectory(self, rng: np.random.Generator, num_frames: int, kind: str,
                   rig: str = 'mono', free_radius: float = 1.2, speed: float = 1.0,
                   rigs: dict | None = None) -> np.ndarray:
        """Robot-like camera poses ``(num_frames * len(rig), 4, 4)``, rig cameras interleaved.

        ``speed`` scales the motion per frame (below 1: a camera running at a higher rate).
        """
        if kind not in MOTIONS:
            raise ValueError(f'unknown trajectory {kind!r}; choose from {MOTIONS}')
        height = rng.uniform(0.6, 1.5)
        pitch0 = rng.uniform(0.0, 0.35)
        yaw0 = rng.uniform(0, 2 * math.pi)
        step = rng.uniform(0.1, 0.3) * speed  # metres or radians-ish per frame
        turn = rng.uniform(-0.25, 0.25) * speed
        start = rng.uniform(-0.3, 0.3, size=2)
        poses = []
        for i in range(num_frames):
            if kind == 'forward':
                yaw = yaw0 + turn * i
                heading = np.array([math.cos(yaw), math.sin(yaw)])
                xy = start + heading * step * i
            elif kind == 'creep':  # forward by 1-5 cm per frame
                yaw = yaw0 + 0.1 * turn * i
                heading = np.array([math.cos(yaw), math.sin(yaw)])
                xy = start + heading * step * 0.15 * i
            elif kind == 'hover':  # holding still: mm-cm jitter, a few degrees
                jitter = rng.normal(0.0, 0.01, size=2)
                yaw = yaw0 + rng.normal(0.0, 0.03)
                xy = start + jitter
            elif kind == 'turn':
                yaw = yaw0 + (0.15 * speed + abs(turn)) * i * np.sign(turn or 1.0)
                xy = start + 0.05 * speed * i * np.array([math.cos(yaw0), math.sin(yaw0)])
            else:  # orbit: circle around the room centre, looking outwards-and-across
                angle = yaw0 + 0.25 * speed * i
                xy = 0.6 * free_radius * np.array([math.cos(angle), math.sin(angle)])
                yaw = angle + math.pi / 2 + turn
            norm = np.linalg.norm(xy)
            if norm > free_radius * 0.85:  # stay in the free centre of the room
                xy = xy / norm * free_radius * 0.85
            pitch = pitch0 + 0.05 * math.sin(0.7 * speed * i)
            for yaw_off, lateral in (rigs or RIGS)[rig]:
                y = yaw + yaw_off
                side = np.array([math.sin(y), -math.cos(y)]) * lateral
                pos = np.array([xy[0] + side[0], xy[1] + side[1], height])
                poses.append(look_pose(pos, y, pitch))
        return np.stack(poses)

    # -------------------------------------------------------------------------------- samples
    def intrinsics(self) -> torch.Tensor:
        """``(3, 3)`` K of the generated images."""
        h, w = self.config.height, self.config.width
        f = 0.5 * w / math.tan(math.radians(self.config.fov_deg) / 2)
        return torch.tensor([[f, 0.0, (w - 1) / 2], [0.0, f, (h - 1) / 2], [0.0, 0.0, 1.0]])

    def render_views(self, prims: Primitives, poses: torch.Tensor) -> dict[str, torch.Tensor]:
        """Render ``(V, 4, 4)`` poses; returns stacked images, depth, normals, instances."""
        k = self.intrinsics()
        views = [render(prims, self.textures, k, pose, self.config.height, self.config.width,
                        self.config.supersample) for pose in poses]
        return {key: torch.stack([v[key] for v in views]) for key in views[0]}

    def sample(self, index: int, num_views: int = 4, trajectory: str | None = None,
               rig: str = 'mono', max_tries: int = 8,
               baseline: float | None = None) -> MultiViewSample:
        """Return multi-view sample ``index``: V overlapping views of one scene.

        Views are drawn from one trajectory; samples whose views overlap view 0 by less than
        ``config.min_overlap`` (fraction of pixels with a depth-checked correspondence) are
        redrawn, up to ``max_tries`` times. ``rig='stereo'`` interleaves the left and right
        camera of a rig ``baseline`` metres wide (default: drawn from
        :data:`STEREO_BASELINES`); the small motions (``creep``, ``hover``) keep every frame.
        """
        rng = np.random.default_rng([self.seed, index])
        prims, layout = self.scene(rng)
        k = self.intrinsics()
        best = None
        rigs = dict(RIGS)
        if rig == 'stereo':
            width = baseline if baseline is not None else float(rng.uniform(*STEREO_BASELINES))
            rigs['stereo'] = ((0.0, -width / 2), (0.0, width / 2))
        for _ in range(max_tries):
            kind = trajectory or str(rng.choice(TRAJECTORIES))
            frames = -(-num_views // len(RIGS[rig]))
            stride = 1 if kind in SMALL_MOTIONS else int(rng.integers(1, 4))
            poses = self.trajectory(rng, frames * stride, kind, rig, layout['free_radius'],
                                    rigs=rigs)
            poses = poses.reshape(frames * stride, len(RIGS[rig]), 4, 4)[::stride]
            poses = torch.tensor(poses.reshape(-1, 4, 4)[:num_views], dtype=torch.float32)
            views = self.render_views(prims, poses)
            overlap = window_overlap(views['depth'], k.expand(len(poses), 3, 3), poses)
            if best is None or overlap > best[0]:
                best = (overlap, poses, views, kind)
            if overlap >= self.config.min_overlap:
                break
        overlap, poses, views, kind = best
        return MultiViewSample(
            images=views['image'], intrinsics=k.expand(num_views, 3, 3).clone(),
            cam_to_world=poses, depth=views['depth'], normals=views['normals'],
            instances=views['instances'], name=f'procedural/{self.seed}/{index}/{kind}',
            extra={'overlap': float(overlap)})

    def sequence(self, index: int, num_frames: int, trajectory: str = 'orbit',
                 speed: float = 0.3) -> MultiViewSample:
        """Return a continuous camera stream: consecutive frames of one trajectory.

        For bags and the demo; unlike :meth:`sample`, views are not redrawn for overlap.
        """
        rng = np.random.default_rng([self.seed, index, 7])
        prims, layout = self.scene(rng)
        poses = torch.tensor(self.trajectory(rng, num_frames, trajectory,
                                             free_radius=layout['free_radius'], speed=speed),
                             dtype=torch.float32)
        views = self.render_views(prims, poses)
        k = self.intrinsics()
        return MultiViewSample(
            images=views['image'], intrinsics=k.expand(num_frames, 3, 3).clone(),
            cam_to_world=poses, depth=views['depth'], normals=views['normals'],
            instances=views['instances'], name=f'procedural/{self.seed}/{index}/{trajectory}')
