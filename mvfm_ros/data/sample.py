"""The multi-view sample: posed views of one scene, with whatever ground truth the source has."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch


@dataclass
class MultiViewSample:
    """V posed views of one scene.

    Attributes:
        images: ``(V, 3, H, W)`` float in [0, 1].
        intrinsics: ``(V, 3, 3)`` K in pixels of ``images``.
        cam_to_world: ``(V, 4, 4)`` poses, OpenCV optical convention.
        depth: ``(V, H, W)`` z-depth in metres, 0 where unknown.
        normals: ``(V, 3, H, W)`` unit normals in each camera's optical frame, 0 where unknown.
        instances: ``(V, H, W)`` int64 instance ids, consistent across views; -1 unknown.
        matches: sparse correspondences (COLMAP tracks), ``(N, 6)`` float rows
            ``(view_a, u_a, v_a, view_b, u_b, v_b)`` in pixels.
        name: where the sample came from (scene and frame ids), for logs.
    """

    images: torch.Tensor
    intrinsics: torch.Tensor
    cam_to_world: torch.Tensor
    depth: torch.Tensor | None = None
    normals: torch.Tensor | None = None
    instances: torch.Tensor | None = None
    matches: torch.Tensor | None = None
    name: str = ''
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check that the shapes agree."""
        if self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f'images must be (V, 3, H, W), got {tuple(self.images.shape)}')
        v, _, h, w = self.images.shape
        expected = {'intrinsics': (v, 3, 3), 'cam_to_world': (v, 4, 4), 'depth': (v, h, w),
                    'normals': (v, 3, h, w), 'instances': (v, h, w)}
        for name, shape in expected.items():
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != shape:
                raise ValueError(f'{name} must be {shape}, got {tuple(value.shape)}')
        if self.matches is not None and (self.matches.ndim != 2 or self.matches.shape[1] != 6):
            raise ValueError(f'matches must be (N, 6), got {tuple(self.matches.shape)}')

    @property
    def num_views(self) -> int:
        """V."""
        return int(self.images.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W)."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    def to(self, device: torch.device | str) -> 'MultiViewSample':
        """Return a copy with every tensor on ``device``."""
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            values[f.name] = value.to(device) if isinstance(value, torch.Tensor) else value
        return MultiViewSample(**values)

    def select(self, views: list[int]) -> 'MultiViewSample':
        """Return the sample of the given views only, in that order (matches: among them)."""
        index = torch.as_tensor(views, dtype=torch.long)
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == 'matches' and value is not None:
                lookup = torch.full((self.num_views,), -1, dtype=torch.long)
                lookup[index] = torch.arange(len(views))
                a, b = lookup[value[:, 0].long()], lookup[value[:, 3].long()]
                keep = (a >= 0) & (b >= 0)
                value = value[keep].clone()
                value[:, 0], value[:, 3] = a[keep].float(), b[keep].float()
            elif isinstance(value, torch.Tensor):
                value = value[index]
            values[f.name] = value
        return MultiViewSample(**values)
