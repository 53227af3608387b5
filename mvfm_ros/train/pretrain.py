"""Single-view pretraining objective for project-trained backbones (the shipped demo model).

No foundation-model weights can be downloaded where the demo model is built, so the project
pretrains a small ViT itself. The objective sees one image at a time: two random crops of the
same image with independent colour changes, and the paper's soft-argmax correspondence loss
between pixels that the crops share. The network learns local descriptors that survive scale,
crop, flip and photometric change, like a DINO-style backbone, and never sees a second viewpoint,
so what it learns about geometry across views is left for the multi-view adapters.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CROP_AREA = (0.3, 1.0)
MAX_ASPECT = 4.0 / 3.0
COLOUR = {'brightness': 0.3, 'contrast': 0.3, 'saturation': 0.4}


def random_affines(n: int, generator: torch.Generator) -> torch.Tensor:
    """Random crops (scale, aspect, position, horizontal flip) as ``affine_grid`` matrices.

    Returns:
        ``(n, 2, 3)`` maps from crop unit coordinates to source unit coordinates.
    """
    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    area = uniform(*CROP_AREA)
    aspect = torch.exp(uniform(-math.log(MAX_ASPECT), math.log(MAX_ASPECT)))
    sx = (area * aspect).sqrt().clamp(max=1.0)
    sy = (area / aspect).sqrt().clamp(max=1.0)
    tx = (1 - sx) * uniform(-1.0, 1.0)
    ty = (1 - sy) * uniform(-1.0, 1.0)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = sx * flip, tx
    theta[:, 1, 1], theta[:, 1, 2] = sy, ty
    return theta


def jitter_colour(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per-image brightness, contrast and saturation changes of ``(N, 3, H, W)`` in [0, 1].

    Written out because torchvision's functional colour ops take one factor per call and would
    need a Python loop over the batch.
    """
    n = images.shape[0]

    def factor(strength: float) -> torch.Tensor:
        return (1 + strength * (2 * torch.rand(n, 1, 1, 1, generator=generator) - 1)).to(images)

    out = images * factor(COLOUR['brightness'])
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * factor(COLOUR['contrast']) + mean
    grey = out.mean(dim=1, keepdim=True)
    out = (out - grey) * factor(COLOUR['saturation']) + grey
    return out.clamp(0.0, 1.0)


def _apply(theta: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    """Map ``(n, M, 2)`` points with ``(n, 2, 3)`` affine matrices."""
    return unit @ theta[:, :, :2].transpose(1, 2) + theta[:, None, :, 2]


def _invert(theta: torch.Tensor) -> torch.Tensor:
    linear_inv = torch.linalg.inv(theta[:, :, :2])
    return torch.cat((linear_inv, -(linear_inv @ theta[:, :, 2:])), dim=2)


def augmented_pairs(images: torch.Tensor, num_points: int, generator: torch.Generator,
                    jitter: bool = True,
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two augmented crops per image and points that correspond between them.

    Args:
        images: ``(N, 3, H, W)`` in [0, 1].
        num_points: points drawn per pair (those outside the second crop are marked invalid).
        generator: CPU generator; the same seed gives the same crops and points.
        jitter: apply the colour changes.

    Returns:
        crops ``(2N, 3, H, W)`` (first crops, then second crops), unit coordinates ``(N, M, 2)``
        in the first and in the second crop, and ``(N, M)`` validity.
    """
    n, _, height, width = images.shape
    theta = random_affines(2 * n, generator).to(images)
    grid = F.affine_grid(theta, [2 * n, 3, height, width], align_corners=False)
    crops = F.grid_sample(images.repeat(2, 1, 1, 1), grid, mode='bilinear',
                          padding_mode='border', align_corners=False)
    if jitter:
        crops = jitter_colour(crops, generator)
    unit_a = (2 * torch.rand(n, num_points, 2, generator=generator) - 1).to(images) * 0.98
    source = _apply(theta[:n], unit_a)
    unit_b = _apply(_invert(theta[n:]), source)
    valid = (unit_b.abs() <= 0.98).all(dim=-1)
    return crops, unit_a, unit_b, valid
