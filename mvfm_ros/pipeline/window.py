"""The sliding window and everything keyed by its keyframes, owned and pruned in one place.

The worker thread alone changes it (:meth:`mvfm_ros.pipeline.pipeline.Pipeline.process`): a
keyframe entering pushes the oldest out, and with it the work cached for that keyframe (its
prepared tensors and trunk tokens, its per-frame operator outputs), what lifting remembered
about it (ids, fused maps, depth matches), while the k-means centres and the prompt carry over
to the next window. A reset (time jump, deactivation) empties all of it at once.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

import numpy as np
import torch

from mvfm_ros.lift.lifting import LiftMemory
from mvfm_ros.models.trunk import TokenState
from mvfm_ros.pipeline.frame import Frame


@dataclass
class Prepared:
    """A keyframe at the model input size, and the per-frame work done on it once.

    Attributes:
        image: ``(3, H, W)`` float in [0, 1] on the engine's device.
        intrinsics: ``(3, 3)`` K at the model input size.
        pose: ``(4, 4)`` camera-to-world.
        depth: ``(H, W)`` metres at the model input size (0: unknown), or None.
        tokens: the per-frame part of the forward pass (trunk tokens up to the first adapter).
        ops: per-frame operator outputs, once computed.
    """

    image: torch.Tensor
    intrinsics: torch.Tensor
    pose: torch.Tensor
    depth: torch.Tensor | None = None
    tokens: TokenState | None = None
    ops: dict[str, np.ndarray] | None = None


@dataclass
class Keyframe:
    """A frame in the window with what was computed for it."""

    frame: Frame
    prepared: Prepared | None = None


def slide(members: list, new, size: int, anchor_span: int = 0,
          anchor_age: int = 0) -> tuple[list, int]:
    """Return a window's members (oldest first) after ``new`` enters, and the anchor's age.

    Without an anchor (``anchor_span`` 0) the oldest member leaves when the window is full. With
    one, the oldest member is the window's anchor (its reference view, which fixes the frame of
    the pose conditioning) and stays for ``anchor_span`` keyframes after it became the anchor
    while the others slide past it, so keyframes up to ``anchor_span`` apart are computed in the
    same reference frame even when they share no other view; then it leaves and the next
    oldest takes over.

    Args:
        members: the window now, oldest first.
        new: the entering keyframe.
        size: most members.
        anchor_span: keyframes an anchor is kept (0: a plain sliding window).
        anchor_age: keyframes that entered since the current anchor became it.
    """
    members = [*members, new]
    anchor_age = anchor_age + 1 if len(members) > 1 else 0
    if len(members) > size:
        if anchor_span and anchor_age < anchor_span and size > 1:
            del members[1]
        else:
            del members[0]
            anchor_age = 0
    return members, anchor_age


@dataclass
class Window:
    """The keyframes of the sliding window (oldest first) and the state that follows them.

    Attributes:
        size: most keyframes held.
        anchor_span: keyframes the oldest (the reference view) is kept while the others slide
            (0: a plain sliding window; :func:`slide`).
        keyframes: the window, oldest first.
        lift: what lifting remembers about the window's keyframes.
        centres: k-means centres of the last window (warm start: ids stay stable).
        prompt: world point selecting an object to segment, or None.
        epoch: the pipeline epoch the window belongs to (a time jump starts a new one).
    """

    size: int
    anchor_span: int = 0
    keyframes: collections.deque[Keyframe] = field(default_factory=collections.deque)
    lift: LiftMemory = field(default_factory=LiftMemory)
    centres: torch.Tensor | None = None
    prompt: np.ndarray | None = None
    epoch: int = 0
    anchor_age: int = 0

    @property
    def frames(self) -> list[Frame]:
        """The window's frames, oldest first."""
        return [k.frame for k in self.keyframes]

    def push(self, frame: Frame) -> None:
        """Add a keyframe; when the window is full one leaves (:func:`slide`), with its state."""
        members, self.anchor_age = slide(list(self.keyframes), Keyframe(frame), self.size,
                                         self.anchor_span, self.anchor_age)
        self.keyframes = collections.deque(members)
        self.lift.keep({k.frame.uid for k in self.keyframes})

    def reset(self, epoch: int) -> None:
        """Start over (time jump, deactivation): no keyframes, no ids, no centres."""
        self.keyframes.clear()
        self.lift = LiftMemory()
        self.centres = None
        self.epoch = epoch
        self.anchor_age = 0

    def outputs_of(self, uid: int) -> dict[str, np.ndarray]:
        """Per-view (not lifted) operator outputs of a keyframe still in the window."""
        for keyframe in self.keyframes:
            if keyframe.frame.uid == uid and keyframe.prepared is not None:
                return dict(keyframe.prepared.ops or {})
        return {}
