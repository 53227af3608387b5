"""Float maps (probabilities, embeddings, normals) fused across the views of a window."""

from __future__ import annotations

import torch


def fuse_maps(values: list[torch.Tensor], matches: dict[tuple[int, int], tuple[torch.Tensor,
                                                                                torch.Tensor]],
              rotations: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """Average each pixel's value with the values at its corresponding pixels in other views.

    Args:
        values: ``(H, W, C)`` per view.
        matches: ``(i, j) -> (pixels of i, pixels of j)``, flat indices of corresponding pixels.
        rotations: ``(3, 3)`` camera-to-world rotation per view when the values are directions
            in each camera's optical frame (normals): they are averaged in the world frame,
            renormalised and rotated back.

    Returns:
        ``(H, W, C)`` fused values per view.
    """
    shape = values[0].shape
    flat = [v.reshape(-1, v.shape[-1]).float() for v in values]
    if rotations is not None:
        flat = [f @ r.float().T for f, r in zip(flat, rotations)]
    sums = [f.clone() for f in flat]
    counts = [torch.ones(f.shape[0], 1, dtype=f.dtype, device=f.device) for f in flat]
    for (i, j), (pix_i, pix_j) in matches.items():
        for a, b, pa, pb in ((i, j, pix_i, pix_j), (j, i, pix_j, pix_i)):
            pa, pb = torch.as_tensor(pa), torch.as_tensor(pb)
            sums[a].index_add_(0, pa, flat[b][pb])
            counts[a].index_add_(0, pa, torch.ones_like(counts[a][:len(pa)]))
    out = []
    for index, (total, count) in enumerate(zip(sums, counts)):
        mean = total / count
        if rotations is not None:
            mean = torch.nn.functional.normalize(mean, dim=1) @ rotations[index].float()
        out.append(mean.reshape(shape[:-1] + (mean.shape[-1],)))
    return out
