"""Check the conversion of the paper's released models against the paper's own code.

Needs a checkout of the public code (github leosegre/Multi-View-Foundation-Models, MIT), of
facebookresearch/dinov2 (its torch-hub entry point, loaded locally with random weights) and the
public code's Python dependencies in a folder (``pip install --target DIR peft kornia einops
transformers``); none of it is a dependency of mvfm_ros. For each released family it

1. builds the official ``DINO3D`` exactly as its configs do (``vits14_reg``, LoRA r 32 on qkv,
   Plücker embedding 128 concatenated, spatial adapters after every block, shared after the
   first), with random weights, the zero-initialised parts made random too;
2. writes the state-dict layout (names and shapes) to ``test/data/official_layout_<family>.json``,
   which the CI test converts without the official code;
3. saves the state dict as an official checkpoint, converts it with :mod:`mvfm_ros.models.
   official`, and runs both models on the same images and cameras (the official dataset's pose
   normalisation and Plücker recipe, COLMAP intrinsics; the package's camera-to-world poses and
   OpenCV intrinsics) for several window geometries, printing the largest difference and, to
   show the check is sensitive, what a wrong convention changes.

Usage: ``python tools/official_check.py --official SRC --dinov2 SRC --deps DIR [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = {'dinov2_reg': False, 'dinov2_reg_no_plucker': True}  # name -> disable_plucker
SIZE = 518
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
K_COLMAP = np.array([[420.0, 0, 259.0], [0, 410.0, 258.5], [0, 0, 1.0]])  # centres at .5


class _Args:
    """The official code's argparse namespace: every flag not set here is False."""

    def __init__(self, **values: object) -> None:
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> bool:
        return False


def build_official(dinov2_src: str, disable_plucker: bool) -> torch.nn.Module:
    """Return the official DINO3D of a released family with random weights (eval mode)."""
    from dino3d.models.utils.utils import get_dino3d_model

    hub_load = torch.hub.load

    def local_hub(repo: str, name: str, *args: object, **kwargs: object) -> torch.nn.Module:
        kwargs.setdefault('pretrained', False)
        return hub_load(dinov2_src, name, *args, source='local', **kwargs)

    torch.hub.load = local_hub
    try:
        args = _Args(model_name='vits14_reg', model_output_type='dense', stride=14,
                     pe_embedding_strategy='concat', plucker_emb_dim=128,
                     disable_plucker=disable_plucker, use_sa_ffn=True, sa_layers=[],
                     num_epipolar_samples=32, use_lora=True, lora_r=32, lora_alpha=32)
        model = get_dino3d_model(args)
    finally:
        torch.hub.load = hub_load
    with torch.no_grad():
        for name, param in model.named_parameters():
            if 'zero_conv' in name or 'lora_B' in name:
                param.normal_(0, 0.02)
        for blk in model.vit.base_model.model.blocks:  # random backbone: keep it stable
            blk.ls1.gamma.fill_(0.1)
            blk.ls2.gamma.fill_(0.1)
    return model.eval()


def look_at(centre: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Camera-to-world pose (OpenCV axes) at ``centre`` looking at ``target``."""
    forward = (target - centre) / np.linalg.norm(target - centre)
    right = np.cross([0, -1.0, 0], forward)
    right /= np.linalg.norm(right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack((right, np.cross(forward, right), forward), 1)
    pose[:3, 3] = centre
    return pose


def windows() -> dict[str, list[np.ndarray]]:
    """Window geometries: an off-origin orbit, a 10 cm stereo pair, creeping forward."""
    rng = np.random.default_rng(1)
    target = np.array([0.3, 0.2, 4.0])
    shift = np.array([5.0, -1, 3])
    orbit = [look_at(np.array([2 * math.sin(a), 0.1 * i, 2 - 2 * math.cos(a)]) + shift,
                     target + shift) for i, a in enumerate(np.linspace(-0.5, 0.5, 4))]
    shift = np.array([1.5, 0.3, -2])
    stereo = [look_at(np.array([x, 0, 0.0]) + shift, target + shift) for x in (0.0, 0.1)]
    shift = np.array([-3.0, 0, 7])
    creep = [look_at(np.array([0.02 * rng.standard_normal(), 0, 0.03 * i]) + shift,
                     target + shift) for i in range(4)]
    return {'orbit, first camera off the origin': orbit, 'two-view stereo 10 cm': stereo,
            'creeping forward 3 cm': creep}


def official_plucker(world_to_cam: np.ndarray) -> torch.Tensor:
    """Plücker rays as the official COLMAP dataset computes them (its ``__getitem__``)."""
    from dino3d.models.utils.geometry import get_plucker_coordinates

    c2w = torch.linalg.inv(torch.tensor(world_to_cam, dtype=torch.float32))
    to_median = torch.norm(c2w[:, :3, 3] - c2w[:, :3, 3].median(0, keepdim=True).values, dim=-1)
    valid = to_median <= torch.clamp(torch.quantile(to_median, 0.97) * 10, max=1e6)
    c2w[:, :3, 3] -= c2w[valid, :3, 3].mean(0, keepdim=True)
    w2c = torch.linalg.inv(c2w)
    first = torch.norm(c2w[0, :3, 3])
    w2c[:, :3, 3] *= 2.0 if first < 1e-5 else 2.0 / first
    k = torch.diag(torch.tensor([1 / SIZE, 1 / SIZE, 1.0])) @ torch.tensor(K_COLMAP,
                                                                           dtype=torch.float32)
    rays = get_plucker_coordinates(w2c[0], w2c, k[None].clone(), target_size=(SIZE, SIZE))
    return rays if rays.dim() == 4 else rays[None]


def check(family: str, dinov2_src: str, layout_dir: Path) -> dict[str, dict[str, float]]:
    """Write the family's layout, convert its random checkpoint and compare outputs."""
    from mvfm_ros.models.official import convert, read_state_dict

    torch.manual_seed(0)
    official = build_official(dinov2_src, FAMILIES[family])
    layout = {k: list(v.shape) for k, v in official.state_dict().items()}
    (layout_dir / f'official_layout_{family}.json').write_text(json.dumps(layout, indent=0))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f'{family}.pth'
        torch.save({'model': official.state_dict(), 'n': 0}, path)
        ours = convert(read_state_dict(path)).eval()
    k_cv = K_COLMAP.copy()
    k_cv[:2, 2] -= 0.5  # OpenCV/ROS intrinsics: pixel centres at integers
    report = {}
    for name, poses in windows().items():
        c2w = torch.tensor(np.stack(poses), dtype=torch.float32)[None]
        views = c2w.shape[1]
        images = torch.rand(1, views, 3, SIZE, SIZE,
                            generator=torch.Generator().manual_seed(views))
        k = torch.tensor(k_cv, dtype=torch.float32).expand(1, views, 3, 3)
        with torch.no_grad():
            rays = official_plucker(np.linalg.inv(np.stack(poses)))
            theirs = official((images - MEAN) / STD, rays[None])
            mine = ours(images, k, c2w)
            row = {'views': views, 'max_abs_diff': (mine - theirs).abs().max().item(),
                   'max_abs_official': theirs.abs().max().item()}
            row['adapters_change_features_by'] = (theirs - ours.base_features(images)).abs() \
                .max().item()
            k_wrong = torch.tensor(K_COLMAP, dtype=torch.float32).expand(1, views, 3, 3)
            row['without_pixel_centre_shift'] = (ours(images, k_wrong, c2w) - theirs).abs() \
                .max().item()
            ours.config.pose_conditioning = 'paper'
            row['with_paper_centred_conditioning'] = (ours(images, k, c2w) - theirs).abs() \
                .max().item()
            ours.config.pose_conditioning = 'official'
        report[name] = row
        print(f'{family:24s} {name:36s} ' + ' '.join(
            f'{key}={value:.3g}' for key, value in row.items()), flush=True)
    return report


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--official', required=True, help='checkout of the public MVFM code')
    parser.add_argument('--dinov2', required=True, help='checkout of facebookresearch/dinov2')
    parser.add_argument('--deps', required=True, help='folder with peft, kornia, einops...')
    parser.add_argument('--family', choices=sorted(FAMILIES), action='append')
    parser.add_argument('--layouts', default=str(ROOT / 'test' / 'data'),
                        help='where the layout JSON files go')
    parser.add_argument('--json', help='write the comparison here')
    args = parser.parse_args()
    sys.path[:0] = [args.official, args.deps, str(ROOT)]
    report = {family: check(family, args.dinov2, Path(args.layouts))
              for family in args.family or sorted(FAMILIES)}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + '\n')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
