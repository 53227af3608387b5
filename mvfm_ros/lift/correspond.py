"""Which pixels of two views see the same surface.

With depth in both views the answer is geometric: back-project, reproject, keep pixels whose
depth agrees (occlusion check). Without depth it comes from the multi-view features: mutual
nearest patches, kept only when similar enough and consistent with the window's geometry (the
epipolar line, or the rotation homography when the cameras share a centre). Lift3D's premise:
features that agree across views make any operator's outputs associable.
"""

from __future__ import annotations

import torch

from mvfm_ros.data.correspondence import corresponding_pixels
from mvfm_ros.geometry.camera import invert_intrinsics
from mvfm_ros.geometry.epipolar import fundamental_matrix, relative_pose
from mvfm_ros.lift.view import LiftView

MIN_SIMILARITY = 0.5  # cosine of mutual nearest patches accepted as the same surface
GATE_PATCHES = 1.5  # epipolar distance allowed, in patches
BASELINE_EPS = 1e-6  # metres under which two cameras share a centre (rotation only)


def geometric_gate(a: LiftView, b: LiftView, pix_a: torch.Tensor, pix_b: torch.Tensor,
                   tolerance_px: float) -> torch.Tensor:
    """Whether pixel pairs ``(N, 2)`` fit the two cameras (epipolar or rotation homography)."""
    rel = relative_pose(a.cam_to_world.double(), b.cam_to_world.double())  # a -> b
    rot, t = rel[:3, :3], rel[:3, 3]
    k_a_inv = invert_intrinsics(a.intrinsics.double())
    ones = torch.ones_like(pix_a[:, :1])
    ha = torch.cat((pix_a, ones), 1).double()
    hb = torch.cat((pix_b, ones), 1).double()
    if float(t.norm()) < BASELINE_EPS:  # same centre: b = K_b R K_a^-1 a
        mapped = ha @ (b.intrinsics.double() @ rot @ k_a_inv).T
        dist = (mapped[:, :2] / mapped[:, 2:].clamp_min(1e-12) - hb[:, :2]).norm(dim=1)
        return (dist <= tolerance_px) & (mapped[:, 2] > 0)
    fundamental = fundamental_matrix(a.intrinsics.double(), b.intrinsics.double(), rel)
    lines = ha @ fundamental.T  # epipolar lines in b
    dist = (hb * lines).sum(1).abs() / lines[:, :2].norm(dim=1).clamp_min(1e-12)
    return dist <= tolerance_px


def feature_matches(a: LiftView, b: LiftView, size: tuple[int, int],
                    min_similarity: float = MIN_SIMILARITY,
                    gate_patches: float = GATE_PATCHES) -> tuple[torch.Tensor, torch.Tensor]:
    """Mutual nearest patches, gated; returns matched patch indices ``(N,)`` in a and b."""
    c, h, w = a.features.shape
    fa = a.features.reshape(c, -1).T
    fb = b.features.reshape(c, -1).T
    sim = fa @ fb.T
    best_ab = sim.argmax(1)
    best_ba = sim.argmax(0)
    idx_a = torch.arange(fa.shape[0], device=fa.device)
    keep = (best_ba[best_ab] == idx_a) & (sim[idx_a, best_ab] >= min_similarity)
    idx_a, idx_b = idx_a[keep], best_ab[keep]
    cell = torch.tensor([size[1] / w, size[0] / h], device=fa.device)

    def centres(idx: torch.Tensor) -> torch.Tensor:
        return (torch.stack((idx % w, idx // w), 1).float() + 0.5) * cell - 0.5

    ok = geometric_gate(a, b, centres(idx_a), centres(idx_b), gate_patches * float(cell.max()))
    return idx_a[ok], idx_b[ok]


def pixel_matches(a: LiftView, b: LiftView, size: tuple[int, int],
                  rel_tol: float = 0.03) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat pixel indices ``(N,)`` of a and of b (an ``H x W`` image) that see the same surface.

    Depth in both views: every pixel of a with a depth-consistent reprojection in b. Otherwise
    the feature matches, every pixel of a matched patch paired with the same offset in the
    other patch.
    """
    height, width = size
    if a.depth is not None and b.depth is not None:
        return corresponding_pixels(a.depth, b.depth, a.intrinsics, b.intrinsics,
                                    a.cam_to_world, b.cam_to_world, rel_tol)
    patch_a, patch_b = feature_matches(a, b, size)
    _, h, w = a.features.shape
    ph, pw = height // h, width // w
    dy, dx = torch.meshgrid(torch.arange(ph), torch.arange(pw), indexing='ij')
    offsets = (dy * width + dx).flatten().to(patch_a.device)

    def first_pixel(idx: torch.Tensor) -> torch.Tensor:
        return (idx // w) * ph * width + (idx % w) * pw

    return ((first_pixel(patch_a)[:, None] + offsets).flatten(),
            (first_pixel(patch_b)[:, None] + offsets).flatten())
