"""Operators run once per frame, their outputs lifted across each window.

:class:`Lifting` is what was chosen (the operators and how they are lifted) and holds no state;
:class:`LiftMemory` is what lifting remembers about the keyframes of a window (ids, maps fused
over time, depth matches); the pipeline's window owns it and prunes it with its keyframes.
"""

from __future__ import annotations

import numpy as np
import torch

from mvfm_ros.lift.correspond import pixel_matches
from mvfm_ros.lift.fuse import fuse_maps
from mvfm_ros.lift.labels import IdTable, LabelLifter
from mvfm_ros.lift.operators import Operator, OperatorError
from mvfm_ros.lift.view import LiftView


class LiftMemory:
    """What lifting keeps about the keyframes still in the window."""

    def __init__(self) -> None:
        """Remember nothing yet."""
        self.tables: dict[str, IdTable] = {}  # operator -> persistent ids
        self.fused: dict[tuple[int, str], np.ndarray] = {}  # (uid, operator) -> fused map
        # Depth matches of a keyframe pair do not change while both stay in the window (feature
        # matches do: the features depend on the window).
        self.matches: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def table(self, operator: str) -> IdTable:
        """Return the id table of an operator."""
        return self.tables.setdefault(operator, IdTable())

    def keep(self, uids: set[int]) -> None:
        """Forget keyframes that left the window."""
        for table in self.tables.values():
            table.keep(uids)
        self.fused = {k: v for k, v in self.fused.items() if k[0] in uids}
        self.matches = {k: m for k, m in self.matches.items() if k[0] in uids and k[1] in uids}


class Lifting:
    """The operators of a pipeline and how their outputs are lifted (no state).

    Args:
        operators: loaded operators.

    Attributes:
        lifters: per label operator, the thresholds of its :class:`LabelLifter`.
        recursive: float maps are fused over time (an older keyframe enters with its previous
            fusion); False fuses each window afresh (tools/lift_sweep.py compares the two).
    """

    def __init__(self, operators: list[Operator]) -> None:
        """One label lifter per operator."""
        self.operators = operators
        self.lifters = {op.name: LabelLifter() for op in operators}
        self.recursive = True

    @property
    def names(self) -> list[str]:
        """The operators' names (their output topics' ``<name>``)."""
        return [op.name for op in self.operators]

    def kind(self, name: str) -> str:
        """Return the kind (``labels``, ``float``, ``normals``) of the operator called ``name``."""
        return next(op.kind for op in self.operators if op.name == name)

    def per_frame(self, image: np.ndarray) -> tuple[dict[str, np.ndarray], list[str]]:
        """Run every operator on one ``(H, W, 3)`` uint8 image; outputs and error messages."""
        outputs, errors = {}, []
        for op in self.operators:
            try:
                outputs[op.name] = op(image)
            except OperatorError as err:
                errors.append(str(err))
        return outputs, errors

    def lift(self, views: list[LiftView], outputs: list[dict[str, np.ndarray]],
             size: tuple[int, int], wanted: list[int],
             memory: LiftMemory) -> list[dict[str, np.ndarray]]:
        """Lift every operator over a window; returns the lifted outputs of the ``wanted`` views.

        Args:
            views: the window's views (oldest first).
            outputs: each view's per-frame operator outputs (an operator that failed on a view
                is absent from its dict; that view then takes no part for that operator).
            size: (H, W) of the outputs.
            wanted: indices of the views whose lifted outputs are returned.
            memory: the window's lifting memory (read and updated).
        """
        if not self.operators:
            return [{} for _ in wanted]
        memory.keep({v.uid for v in views})
        matches = {}
        for i in range(len(views)):
            for j in range(i + 1, len(views)):
                key = (views[i].uid, views[j].uid)
                found = memory.matches.get(key)
                if found is None:
                    found = pixel_matches(views[i], views[j], size)
                    if views[i].depth is not None and views[j].depth is not None:
                        memory.matches[key] = found
                matches[(i, j)] = found
        result: list[dict[str, np.ndarray]] = [{} for _ in wanted]
        for op in self.operators:
            have = [i for i, out in enumerate(outputs) if op.name in out]
            if not any(i in have for i in wanted):
                continue
            index = {v: k for k, v in enumerate(have)}
            sub = {(index[i], index[j]): m for (i, j), m in matches.items()
                   if i in index and j in index}
            values = [outputs[i][op.name] for i in have]
            if op.kind == 'labels':
                feats = [views[i].features.float().cpu().numpy() for i in have]
                lifted = self.lifters[op.name].lift(
                    values, [views[i].uid for i in have],
                    {k: (a.cpu().numpy(), b.cpu().numpy()) for k, (a, b) in sub.items()}, feats,
                    memory.table(op.name))
            else:
                rotations = ([views[i].cam_to_world[:3, :3].cpu() for i in have]
                             if op.kind == 'normals' else None)
                # Older keyframes enter with what they were fused to before (a running
                # average over time, not only over this window), the new one with its own.
                keys = [(views[i].uid, op.name) for i in have]
                if self.recursive:
                    values = [memory.fused.get(k, v) for k, v in zip(keys, values)]
                lifted = [t.numpy() for t in fuse_maps(
                    [torch.from_numpy(v) for v in values],
                    {k: (a.cpu(), b.cpu()) for k, (a, b) in sub.items()}, rotations)]
                memory.fused.update(zip(keys, lifted))
            for slot, view in enumerate(wanted):
                if view in index:
                    result[slot][op.name] = lifted[index[view]]
        return result
