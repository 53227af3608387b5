"""The node's own health: how consistent the features it publishes are, measured live.

Every ``consistency_every`` keyframes with depth, the new keyframe's published features are
matched against those of an earlier keyframe that is no longer in the window (so the pair was
computed in different windows, as a planner fusing over time meets them) at corresponding
pixels from depth: the paper's location error (hard argmax, unit coordinates), for the
multi-view features and for the frozen backbone's. A model that does not fit the scene shows
as multi-view no better than base; the node reports it on ``/diagnostics``.
"""

from __future__ import annotations

import collections
import statistics
from dataclasses import dataclass

import torch

from mvfm_ros.data.correspondence import corresponding_pixels
from mvfm_ros.geometry.matching import hard_argmax, location_errors
from mvfm_ros.geometry.sampling import to_unit
from mvfm_ros.models.mvfm import MultiViewModel
from mvfm_ros.pipeline.frame import ViewResult
from mvfm_ros.pipeline.window import Prepared

MATCHES = 200  # correspondences per check
MIN_MATCHES = 30  # fewer: the two views hardly overlap, no check
REFERENCES = 6  # earlier keyframes kept to compare with
HISTORY = 20  # checks the reported medians are taken over


@dataclass
class _Reference:
    uid: int
    multiview: torch.Tensor  # (C, h, w) as published
    base: torch.Tensor  # (C, h, w)
    depth: torch.Tensor  # (H, W) at the model input size
    intrinsics: torch.Tensor  # (3, 3) at the model input size
    pose: torch.Tensor  # (4, 4)


class ConsistencyCheck:
    """Location errors of published features between windows, multi-view against base.

    Args:
        model: the model (its frozen backbone gives the base features).
        every: check every this many keyframes with depth (0: never).
    """

    def __init__(self, model: MultiViewModel, every: int) -> None:
        """Nothing measured yet."""
        self.model = model
        self.every = every
        self.references: collections.deque[_Reference] = collections.deque(maxlen=REFERENCES)
        self.results: collections.deque[tuple[float, float]] = collections.deque(maxlen=HISTORY)
        self._seen = 0
        self._rng = torch.Generator().manual_seed(0)

    @torch.inference_mode()
    def observe(self, result: ViewResult, prepared: Prepared, window_uids: set[int],
                ) -> tuple[float, float] | None:
        """Take a keyframe with depth; every ``every``-th one, check it; returns the errors.

        Keyframes are kept as references three times as often as checks are made, so a check
        finds an earlier window's keyframe that sees the same surfaces.
        """
        if not self.every or prepared.depth is None:
            return None
        self._seen += 1
        keep, check = self._seen % max(1, self.every // 3) == 0, self._seen % self.every == 0
        if not (keep or check):
            return None
        new = _Reference(result.frame.uid,
                         torch.from_numpy(result.features).permute(2, 0, 1).float(),
                         self._base(prepared), prepared.depth.cpu(),
                         prepared.intrinsics.cpu().float(), prepared.pose.cpu().float())
        errors = None
        # The earlier keyframe (not in this window: what a consumer fusing over time meets)
        # that sees most of the same surfaces.
        candidates = [(self._pairs(new, old), old) for old in self.references
                      if check and old.uid not in window_uids]
        if candidates:
            pairs, old = max(candidates, key=lambda item: len(item[0][0]))
            errors = self._errors(new, old, pairs)
            if errors is not None:
                self.results.append(errors)
        if keep:
            self.references.append(new)
        return errors

    def _base(self, prepared: Prepared) -> torch.Tensor:
        """Return the backbone's features (from the cached tokens where they are the trunk)."""
        try:
            return self.model.base_from_state(prepared.tokens, 1)[0, 0].float().cpu()
        except ValueError:
            return self.model.base_features(prepared.image[None, None])[0, 0].float().cpu()

    @staticmethod
    def _pairs(new: _Reference, old: _Reference) -> tuple[torch.Tensor, torch.Tensor]:
        return corresponding_pixels(new.depth, old.depth, new.intrinsics, old.intrinsics,
                                    new.pose, old.pose)

    def _errors(self, new: _Reference, old: _Reference,
                pairs: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float] | None:
        ia, ib = pairs
        if len(ia) < MIN_MATCHES:
            return None
        pick = torch.randperm(len(ia), generator=self._rng)[:MATCHES]
        height, width = new.depth.shape
        pixels_a = torch.stack((ia[pick] % width, ia[pick] // width), 1).float()
        pixels_b = torch.stack((ib[pick] % width, ib[pick] // width), 1).float()
        unit_a, unit_b = to_unit(pixels_a, height, width), to_unit(pixels_b, height, width)
        return tuple(float(location_errors(hard_argmax(a, b, unit_a), unit_b).mean())
                     for a, b in ((new.multiview, old.multiview), (new.base, old.base)))

    def summary(self) -> dict[str, float]:
        """Medians over the recent checks: ``consistency_{multiview,base}``, their ratio."""
        if not self.results:
            return {}
        multiview = statistics.median(r[0] for r in self.results)
        base = statistics.median(r[1] for r in self.results)
        return {'consistency_multiview': multiview, 'consistency_base': base,
                'consistency_ratio': multiview / max(base, 1e-9),
                'consistency_checks': len(self.results)}
