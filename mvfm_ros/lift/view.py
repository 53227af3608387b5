"""What lifting needs to know about one view of a window."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LiftView:
    """One view at the operators' resolution (the model input size).

    Attributes:
        uid: keyframe id (stable while the frame stays in the window).
        intrinsics: ``(3, 3)`` K at the operators' resolution.
        cam_to_world: ``(4, 4)`` pose of the optical frame.
        features: ``(C, h, w)`` multi-view features of the view (unit length per patch).
        depth: ``(H, W)`` metres (0: unknown), or None without a depth input.
    """

    uid: int
    intrinsics: torch.Tensor
    cam_to_world: torch.Tensor
    features: torch.Tensor
    depth: torch.Tensor | None = None
