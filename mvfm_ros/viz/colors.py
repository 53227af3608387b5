"""Turn features, normals and segment ids into RGB images."""

from __future__ import annotations

import colorsys

import numpy as np
import torch


def pca_colors(features: torch.Tensor, quantile: float = 0.02) -> torch.Tensor:
    """Project a window's features on their first three principal components, jointly.

    One PCA for all views, so the same 3D point gets the same colour in every view. Component
    signs are fixed (positive skew of the projections) and colours are stretched between the
    ``quantile`` and ``1 - quantile`` of the window, so results are deterministic and do not
    flicker between windows with similar content.

    Args:
        features: ``(V, C, h, w)``.
        quantile: fraction clipped at each end of every component.

    Returns:
        ``(V, 3, h, w)`` colours in [0, 1].
    """
    v, c, h, w = features.shape
    flat = features.float().permute(0, 2, 3, 1).reshape(-1, c)
    flat = flat - flat.mean(dim=0, keepdim=True)
    # Eigenvectors of the C x C covariance (eigh: symmetric, ascending eigenvalues).
    _, vectors = torch.linalg.eigh(flat.T @ flat)
    vh = vectors.flip(1).T
    comps = vh[:3] if c >= 3 else torch.cat((vh, vh.new_zeros(3 - c, c)))
    proj = flat @ comps.T
    # Orient each component so its projections are positively skewed: a property of the data,
    # not of the eigen-solver, so the colours do not flip between similar windows.
    signs = torch.sign(proj.pow(3).sum(dim=0))
    proj = proj * torch.where(signs == 0, 1.0, signs)
    low = torch.quantile(proj, quantile, dim=0)
    high = torch.quantile(proj, 1 - quantile, dim=0)
    colours = ((proj - low) / (high - low).clamp(min=1e-6)).clamp(0, 1)
    return colours.reshape(v, h, w, 3).permute(0, 3, 1, 2)


def normal_colors(normals: torch.Tensor) -> torch.Tensor:
    """Map unit normals ``(..., 3, H, W)`` to colours ``(n + 1) / 2`` (zero vectors: black)."""
    colours = (normals.float() + 1) / 2
    known = normals.abs().sum(dim=-3, keepdim=True) > 0
    return torch.where(known, colours, torch.zeros_like(colours)).clamp(0, 1)


def palette(count: int) -> torch.Tensor:
    """``(count, 3)`` distinct colours (golden-ratio hue steps), the same for every call."""
    colours = [colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.65 + 0.35 * (i % 2),
                                   0.95 - 0.25 * ((i // 2) % 2)) for i in range(count)]
    return torch.tensor(colours, dtype=torch.float32)


def segment_colors(segments: torch.Tensor, image: torch.Tensor | None = None,
                   alpha: float = 0.55) -> torch.Tensor:
    """Colour segment ids ``(..., H, W)``; negative ids are black. Optionally blend over an image.

    Args:
        segments: integer ids.
        image: ``(..., 3, H, W)`` in [0, 1] to overlay on.
        alpha: opacity of the segment colours over the image.

    Returns:
        ``(..., 3, H, W)`` colours in [0, 1].
    """
    ids = segments.long()
    table = palette(int(ids.max().clamp(min=0)) + 1).to(segments.device)
    colours = table[ids.clamp(min=0)] * (ids >= 0).unsqueeze(-1)
    colours = colours.movedim(-1, -3)
    if image is not None:
        colours = alpha * colours + (1 - alpha) * image.float()
    return colours


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` float in [0, 1] to an ``(H, W, 3)`` uint8 array."""
    return (image.detach().float().clamp(0, 1) * 255 + 0.5).byte().permute(1, 2, 0).cpu().numpy()


def label_colors(labels: np.ndarray) -> np.ndarray:
    """``(H, W)`` integer ids to ``(H, W, 3)`` uint8 colours, the same colour for an id always.

    Hue steps by the golden ratio per id (any id, however large, without a table); negative ids
    are black.
    """
    from matplotlib.colors import hsv_to_rgb

    ids = np.asarray(labels, dtype=np.int64)
    hue = (ids * 0.618033988749895) % 1.0
    hsv = np.stack((hue, 0.65 + 0.35 * (ids % 2), 0.95 - 0.25 * ((ids // 2) % 2)), -1)
    rgb = np.rint(hsv_to_rgb(hsv) * 255).astype(np.uint8)
    rgb[ids < 0] = 0
    return rgb
