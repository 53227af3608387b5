"""The output edge: the array each per-view output topic carries, made only when wanted.

Colour pictures (the window's feature PCA, normals and segments as colours, lifted operator
ids) serve people looking at RViz, not planners; like image_proc, the node makes them only for
topics somebody subscribed to (and the bag tool for the topics asked for).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from mvfm_ros.pipeline.frame import ViewResult, WindowResult
from mvfm_ros.pipeline.outputs import OP, VIEW_OUTPUTS, Output, Wanted
from mvfm_ros.viz.colors import label_colors, normal_colors, pca_colors, segment_colors, to_uint8


class WindowPictures:
    """Pictures of one window, each made on first use (the PCA is shared by every view)."""

    def __init__(self, window: WindowResult) -> None:
        """Nothing made yet."""
        self.window = window
        self._pca: torch.Tensor | None = None

    def pca(self, view: int) -> np.ndarray:
        """``(h, w, 3)`` uint8 PCA colours of a window view, one PCA over the window."""
        if self._pca is None:
            feats = torch.from_numpy(self.window.features).permute(0, 3, 1, 2)
            self._pca = pca_colors(feats)
        return to_uint8(self._pca[view])

    def array(self, result: ViewResult, source: str, name: str = '') -> np.ndarray | None:
        """Return the array of a view output (``source``: the output table's), or None."""
        if source == 'pca':
            return self.pca([f.uid for f in self.window.frames].index(result.frame.uid))
        if source == 'normals_color':
            return None if result.normals is None else to_uint8(normal_colors(
                torch.from_numpy(result.normals).permute(2, 0, 1)))
        if source == 'segments_color':
            if result.segments is None:
                return None
            return to_uint8(segment_colors(torch.from_numpy(result.segments).long(),
                                           result.model_image.cpu()))
        if source == 'ops':
            return result.ops.get(name)
        if source == 'ops_color':
            value = result.ops.get(name)
            return None if value is None else op_colors(value, self.window.op_kinds[name])
        return getattr(result, source)


def op_colors(value: np.ndarray, kind: str) -> np.ndarray:
    """rgb8 picture of a lifted output: a fixed colour per id, normals as colours, else PCA."""
    if kind == 'labels':
        return label_colors(value)
    tensor = torch.from_numpy(value).permute(2, 0, 1)
    if kind == 'normals':
        return to_uint8(normal_colors(tensor))
    if tensor.shape[0] == 1:
        low, high = float(tensor.min()), float(tensor.max())
        return to_uint8(((tensor - low) / max(high - low, 1e-12)).expand(3, -1, -1))
    return to_uint8(pca_colors(tensor[None])[0])


def view_arrays(window: WindowResult, wanted: Wanted | None = None,
                ) -> Iterator[tuple[ViewResult, Output, str, np.ndarray]]:
    """Every wanted per-view output of a window: ``(result, output, topic, array)``.

    Outputs a view does not have (no normal head, an operator that failed) are skipped.
    """
    wanted = wanted or Wanted.everything()
    pictures = WindowPictures(window)
    for result in window.views:
        for output in VIEW_OUTPUTS:
            names = list(window.op_kinds) if OP in output.topic else ['']
            for name in names:
                topic = output.topic.replace(OP, name)
                if topic not in wanted:
                    continue
                array = pictures.array(result, output.source, name)
                if array is not None:
                    yield result, output, topic, array
