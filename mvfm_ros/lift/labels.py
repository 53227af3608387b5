"""Per-view label images (arbitrary ids per view) made into ids shared across views and time.

Each view's regions (pixels of one label) are linked across views by their corresponding
pixels: a region is joined to the region of another view that receives at least ``min_share``
of its corresponding pixels. Links are merged strongest first, and a merge is refused when the
two groups' mean multi-view features differ (cosine below ``min_similarity``): a superpixel
that leaks over two objects in one view cannot glue the two objects together. Each merged
group is one surface and gets one id. Ids persist: a region of a keyframe that was in the
previous window votes for the id it had, so a surface keeps its id from window to window while
any of its keyframes stays in the window; a surface seen for the first time gets a new id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MIN_SHARE = 0.5  # fraction of a region's corresponding pixels that must land in one region
MIN_PIXELS = 8  # corresponding pixels a region needs before it is linked at all
MIN_SIMILARITY = 0.8  # cosine of two groups' mean features needed to merge them
MIN_SIMILARITY_SAME_VIEW = 0.93  # ... when the merge joins two regions of one view
IGNORE = -1  # label of pixels the operator leaves unlabelled


@dataclass
class IdTable:
    """Persistent ids: which global id each (keyframe, local label) had last."""

    assigned: dict[tuple[int, int], int] = field(default_factory=dict)
    next_id: int = 1

    def new(self) -> int:
        """Return a fresh id."""
        self.next_id += 1
        return self.next_id - 1

    def keep(self, uids: set[int]) -> None:
        """Forget keyframes that left the window."""
        self.assigned = {k: v for k, v in self.assigned.items() if k[0] in uids}


def region_features(inverse: np.ndarray, regions: int, shape: tuple[int, int],
                    features: np.ndarray) -> np.ndarray:
    """Pixel-weighted sums ``(R, C)`` of the patch features under each region.

    Args:
        inverse: ``(H * W,)`` region index of every pixel.
        regions: number of regions R.
        shape: (H, W) of the label image.
        features: ``(C, h, w)`` patch features; each pixel takes its patch's (nearest).
    """
    c, h, w = features.shape
    height, width = shape
    rows = np.arange(height) * h // height
    cols = np.arange(width) * w // width
    patch = (rows[:, None] * w + cols[None, :]).reshape(-1)
    # Pixels per (region, patch), then one matrix product: no per-pixel feature copies.
    counts = np.bincount(inverse * (h * w) + patch, minlength=regions * h * w)
    return counts.reshape(regions, h * w).astype(np.float64) @ features.reshape(c, -1).T


def vote(ids: list[np.ndarray], matches: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]],
         ) -> list[np.ndarray]:
    """Give each pixel the id most of the views that see its surface give it.

    Region ids follow each view's own boundaries; where the views' partitions disagree (a
    surface split in one view, whole in others) the majority of the views decides, so the
    same surface point ends up with the same id in every view. Ties keep the pixel's own id.

    Args:
        ids: ``(H * W,)`` ids per view.
        matches: flat corresponding pixel indices per view pair.
    """
    views = len(ids)
    out = []
    for i in range(views):
        table = np.full((len(ids[i]), views), IGNORE - 1, np.int64)  # no observation
        table[:, i] = ids[i]
        for (a, b), (pa, pb) in matches.items():
            if a == i:
                table[pa, b] = ids[b][pb]
            elif b == i:
                table[pb, a] = ids[a][pa]
        seen = (table >= 0)
        counts = np.stack([((table == table[:, [c]]) & seen).sum(1) for c in range(views)], 1)
        counts[~seen] = 0
        order = [i] + [c for c in range(views) if c != i]  # argmax: the first wins ties
        best = np.asarray(order)[counts[:, order].argmax(1)]
        voted = table[np.arange(len(table)), best]
        out.append(np.where(ids[i] >= 0, voted, ids[i]).astype(np.int32))
    return out


class LabelLifter:
    """Make label images consistent across the views of each window and over windows.

    Args:
        min_share: fraction of a region's corresponding pixels that must fall in one region of
            another view to link the two.
        min_pixels: corresponding pixels a region needs to be linked.
        min_similarity: cosine of the groups' mean features below which a link is refused.
        min_similarity_same_view: the same for a link that joins two regions of one view.
        vote: give each pixel the id most views give its surface (see :func:`vote`).
    """

    def __init__(self, min_share: float = MIN_SHARE, min_pixels: int = MIN_PIXELS,
                 min_similarity: float = MIN_SIMILARITY,
                 min_similarity_same_view: float = MIN_SIMILARITY_SAME_VIEW,
                 vote: bool = True) -> None:
        """Keep the thresholds (the ids live in an :class:`IdTable` the caller owns)."""
        self.vote = vote
        self.min_similarity_same_view = min_similarity_same_view
        self.min_similarity = min_similarity
        self.min_share = min_share
        self.min_pixels = min_pixels

    def lift(self, labels: list[np.ndarray], uids: list[int],
             matches: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]],
             features: list[np.ndarray] | None, table: IdTable) -> list[np.ndarray]:
        """Return ``(H, W)`` int32 ids per view, shared across views and stable over windows.

        Args:
            labels: ``(H, W)`` integer labels per view (any ids; negative: unlabelled).
            uids: keyframe id per view.
            matches: ``(i, j) -> (pixels of i, pixels of j)``, flat indices of corresponding
                pixels, for the view pairs that have any.
            features: ``(C, h, w)`` unit features per view (a patch grid over the image), for
                the similarity check; None links by overlap alone.
            table: the ids the keyframes had (read, then updated with the new assignment).
        """
        local, offsets = [], [0]
        for view in labels:
            flat = view.reshape(-1)
            values, inverse = np.unique(flat, return_inverse=True)
            inverse = inverse.astype(np.int64)
            local.append((values, inverse, flat < 0))
            offsets.append(offsets[-1] + len(values))
        total = offsets[-1]
        descriptors = None
        if features is not None:
            descriptors = np.concatenate([region_features(inv, len(vals), view.shape, feat)
                                          for (vals, inv, _), view, feat
                                          in zip(local, labels, features)])
        candidates = []
        for (i, j), (pix_i, pix_j) in matches.items():
            for a, b, pa, pb in ((i, j, pix_i, pix_j), (j, i, pix_j, pix_i)):
                keep = ~(local[a][2][pa] | local[b][2][pb])
                ra, rb = local[a][1][pa][keep], local[b][1][pb][keep]
                na, nb = len(local[a][0]), len(local[b][0])
                counts = np.bincount(ra * nb + rb, minlength=na * nb).reshape(na, nb)
                totals = counts.sum(1)
                best = counts.argmax(1)
                hits = counts[np.arange(na), best]
                linked = (totals >= self.min_pixels) & (hits >= self.min_share * totals)
                for r in np.nonzero(linked)[0]:
                    candidates.append((int(hits[r]), offsets[a] + int(r),
                                       offsets[b] + int(best[r])))
        # Regions that shared an id in the last window stay one surface (the view that linked
        # them may have left the window): they are linked before anything else.
        by_id: dict[int, list[int]] = {}
        for v, (values, _, _) in enumerate(local):
            for r, label in enumerate(values):
                previous = table.assigned.get((uids[v], int(label)))
                if previous is not None and label >= 0:
                    by_id.setdefault(previous, []).append(offsets[v] + r)
        for nodes in by_id.values():
            candidates += [(np.iinfo(np.int64).max, nodes[0], n) for n in nodes[1:]]
        view_of = np.repeat(np.arange(len(labels)), np.diff(offsets))
        component = self._merge(total, candidates, descriptors, view_of)
        ids = self._assign(component, local, offsets, uids, table)
        out = []
        for view, (_, inverse, _) in enumerate(local):  # unlabelled regions have id IGNORE
            out.append(ids[offsets[view]:offsets[view + 1]][inverse].astype(np.int32))
        if self.vote:
            out = vote(out, matches)
        return [o.reshape(view.shape) for o, view in zip(out, labels)]

    def _merge(self, total: int, candidates: list[tuple[int, int, int]],
               descriptors: np.ndarray | None, view_of: np.ndarray) -> np.ndarray:
        """Union regions along the links, strongest first, refusing dissimilar merges.

        A merge that would put two regions of the same view under one id (the view split what
        another view joins) changes what that view's ids separate, so it needs the stricter
        ``min_similarity_same_view``; joining regions of different views needs
        ``min_similarity``.
        """
        parent = np.arange(total)
        sums = None if descriptors is None else descriptors.copy()
        views = [1 << int(v) for v in view_of]  # bit set of the views each group spans

        def root(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for _, a, b in sorted(candidates, reverse=True):
            ra, rb = root(a), root(b)
            if ra == rb:
                continue
            if sums is not None:
                ua, ub = sums[ra], sums[rb]
                cos = float(ua @ ub) / max(float(np.linalg.norm(ua) * np.linalg.norm(ub)), 1e-12)
                needed = (self.min_similarity_same_view if views[ra] & views[rb]
                          else self.min_similarity)
                if cos < needed:
                    continue
                sums[ra] += sums[rb]
            parent[rb] = ra
            views[ra] |= views[rb]
        return np.array([root(x) for x in range(total)])

    @staticmethod
    def _assign(component: np.ndarray, local: list, offsets: list[int], uids: list[int],
                table: IdTable) -> np.ndarray:
        """Global id per region: the id its component held before (most pixels), else new."""
        sizes = np.concatenate([np.bincount(inv, minlength=len(vals)) for vals, inv, _ in local])
        keys = [(uids[v], int(label)) for v, (vals, _, _) in enumerate(local) for label in vals]
        votes: dict[int, dict[int, int]] = {}
        for node, key in enumerate(keys):
            previous = table.assigned.get(key)
            if previous is not None:
                ballot = votes.setdefault(int(component[node]), {})
                ballot[previous] = ballot.get(previous, 0) + int(sizes[node])
        # Components claim their previous ids, largest support first; an id goes to one only.
        claims = sorted(((n, c, i) for c, ballot in votes.items() for i, n in ballot.items()),
                        reverse=True)
        chosen: dict[int, int] = {}
        taken: set[int] = set()
        for _, comp, old in claims:
            if comp not in chosen and old not in taken:
                chosen[comp] = old
                taken.add(old)
        ids = np.empty(len(keys), np.int64)
        for node, key in enumerate(keys):
            if key[1] < 0:  # unlabelled pixels keep no id
                ids[node] = IGNORE
                continue
            comp = int(component[node])
            if comp not in chosen:
                chosen[comp] = table.new()
            ids[node] = chosen[comp]
            table.assigned[key] = ids[node]
        table.keep(set(uids))
        return ids
