"""Shared fixtures: tiny timm backbones of each supported family and random rigs."""

from __future__ import annotations

import math
import os

import pytest
import torch

from mvfm_ros.models.loading import DEFAULT_ENV

# Nodes, bags and pipelines started by the tests (in this process and in the ones it starts)
# run the fast demo ViT when no checkpoint is named; the tests of the real default model
# (test_demo, test_default_model) clear this for their own runs.
os.environ[DEFAULT_ENV] = 'demo-vit'

# name, timm kwargs, input (H, W): tiny enough to run in milliseconds on a CPU.
TINY_BACKBONES = {
    'dinov2_reg': ('vit_small_patch14_reg4_dinov2',
                   dict(depth=2, embed_dim=32, num_heads=2), (28, 42)),
    'dinov2': ('vit_small_patch14_dinov2', dict(depth=2, embed_dim=32, num_heads=2), (28, 42)),
    'dinov3': ('vit_small_patch16_dinov3', dict(depth=2, embed_dim=32, num_heads=2), (32, 48)),
    'clip': ('vit_base_patch16_clip_224', dict(depth=2, embed_dim=32, num_heads=2), (32, 48)),
    'sam': ('samvit_base_patch16', dict(depth=2, embed_dim=32, num_heads=2,
                                        global_attn_indexes=(1,), window_size=2, neck_chans=16),
            (32, 48)),
}

TINY_ADAPTER = dict(adapter_heads=2, ray_dim=8)


def random_rotation(generator: torch.Generator) -> torch.Tensor:
    """Return a uniformly random rotation matrix (QR of a Gaussian matrix, sign-fixed)."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def random_rig(num_views: int, generator: torch.Generator, batch: int = 1) -> torch.Tensor:
    """``(B, V, 4, 4)`` float64 camera-to-world poses looking roughly at the origin."""
    poses = torch.zeros(batch, num_views, 4, 4, dtype=torch.float64)
    for b in range(batch):
        for v in range(num_views):
            angle = 2 * math.pi * v / num_views + 0.3 * torch.rand(1, generator=generator).item()
            centre = torch.tensor([2.0 * math.cos(angle), 0.3 * v, 2.0 * math.sin(angle)],
                                  dtype=torch.float64)
            forward = -centre / centre.norm()
            right = torch.linalg.cross(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64),
                                       forward)
            right = right / right.norm()
            down = torch.linalg.cross(forward, right)
            poses[b, v, :3, :3] = torch.stack((right, down, forward), dim=1)
            poses[b, v, :3, 3] = centre
            poses[b, v, 3, 3] = 1.0
    return poses


def intrinsics_for(height: int, width: int, num_views: int, batch: int = 1) -> torch.Tensor:
    """``(B, V, 3, 3)`` K with a 60-degree-ish field of view."""
    k = torch.tensor([[width * 0.9, 0.0, (width - 1) / 2], [0.0, width * 0.9, (height - 1) / 2],
                      [0.0, 0.0, 1.0]])
    return k.expand(batch, num_views, 3, 3).clone()


def perturb_trainable(model: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> None:
    """Give every trainable weight a random value, so adapters actually change features."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)


@pytest.fixture
def generator() -> torch.Generator:
    """Return a seeded torch generator."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture(scope='session')
def colcon_workspace(tmp_path_factory):
    """Build this package in a ROS 2 workspace with ``colcon build`` (README: workspace).

    The build chain comes from PyPI (requirements-dev.txt); the sources are the checkout's
    files as git lists them (no .venv, no build outputs).
    """
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).parents[1]
    bin_dir = Path(sys.executable).parent
    colcon = bin_dir / 'colcon'
    if not colcon.exists() or shutil.which('cmake') is None:
        pytest.skip('colcon (requirements-dev.txt) or cmake is not installed')
    workspace = tmp_path_factory.mktemp('ros2_ws')
    source = workspace / 'src' / 'mvfm_ros'
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'], cwd=root,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (root / name).is_file() and not name.startswith('docs/'):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, source / name)
    prefix = str(bin_dir.parent)
    env = {**os.environ, 'AMENT_PREFIX_PATH': prefix, 'CMAKE_PREFIX_PATH': prefix,
           'PATH': f'{bin_dir}{os.pathsep}{os.environ["PATH"]}'}
    build = subprocess.run(
        [str(colcon), 'build', '--cmake-args', f'-DPython3_EXECUTABLE={sys.executable}',
         '-DBUILD_TESTING=OFF'], cwd=workspace, env=env, capture_output=True, text=True,
        timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return workspace


@pytest.fixture(scope='module')
def ros_context():
    """Initialise rclpy once for the module."""
    import rclpy

    rclpy.init()
    yield
    rclpy.shutdown()


@pytest.fixture(scope='module')
def sequence():
    """Return a generated forward-driving sequence of 6 frames (images, K, poses, depth)."""
    from mvfm_ros.data import SceneConfig, SceneGenerator

    sample = SceneGenerator(11, SceneConfig(96, 128, supersample=1)).sample(
        0, num_views=6, trajectory='forward')
    images = (sample.images.permute(0, 2, 3, 1) * 255 + 0.5).byte().numpy()
    return sample, images
