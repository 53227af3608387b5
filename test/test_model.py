"""The multi-view model on tiny random backbones of every supported family."""

from __future__ import annotations

import pytest
import torch
from conftest import (
    TINY_ADAPTER,
    TINY_BACKBONES,
    intrinsics_for,
    perturb_trainable,
    random_rig,
    random_rotation,
)

from mvfm_ros import build_model
from mvfm_ros.models import MultiViewModel
from mvfm_ros.models.trunk import join_states

V = 3


def tiny(family: str, **options) -> tuple[MultiViewModel, tuple[int, int]]:
    name, kwargs, size = TINY_BACKBONES[family]
    torch.manual_seed(0)
    model = build_model(name, pretrained=False, img_size=size[0], backbone_kwargs=kwargs,
                        **{**TINY_ADAPTER, **options})
    return model, size


def inputs(size: tuple[int, int], generator: torch.Generator, batch: int = 1):
    images = torch.rand(batch, V, 3, *size, generator=generator)
    return images, intrinsics_for(*size, V, batch), random_rig(V, generator, batch).float()


@pytest.mark.parametrize('family', sorted(TINY_BACKBONES))
def test_untrained_model_equals_base_model(family: str, generator: torch.Generator) -> None:
    model, size = tiny(family, lora_rank=4)
    images, k, poses = inputs(size, generator, batch=2)
    with torch.no_grad():
        features = model(images, k, poses)
    base = model.base_features(images)
    h, w = size[0] // model.patch_size, size[1] // model.patch_size
    assert features.shape == (2, V, model.feature_dim, h, w)
    assert torch.equal(features, base)
    # The adapters do change the features once they hold non-zero weights.
    perturb_trainable(model)
    with torch.no_grad():
        assert not torch.allclose(model(images, k, poses), base, atol=1e-3)


@pytest.mark.parametrize('family', ['dinov2_reg', 'dinov3', 'sam'])
def test_permuting_views_permutes_outputs(family: str, generator: torch.Generator) -> None:
    model, size = tiny(family)
    perturb_trainable(model)
    images, k, poses = inputs(size, generator)
    perm = torch.tensor([2, 0, 1])
    with torch.no_grad():
        out = model(images, k, poses, reference_view=0)
        # View 0 now sits at index 1; it stays the reference frame.
        permuted = model(images[:, perm], k[:, perm], poses[:, perm], reference_view=1)
    assert torch.allclose(permuted, out[:, perm], atol=1e-5)
    with torch.no_grad():  # and the test can fail: another reference frame changes the result
        other = model(images[:, perm], k[:, perm], poses[:, perm], reference_view=0)
    assert not torch.allclose(other, out[:, perm], atol=1e-3)


@pytest.mark.parametrize('family', ['dinov2_reg', 'clip', 'sam'])
def test_rigid_transform_and_scale_of_all_poses_leave_outputs_unchanged(
        family: str, generator: torch.Generator) -> None:
    model, size = tiny(family)
    perturb_trainable(model)
    images, k, poses = inputs(size, generator)
    transform = torch.eye(4, dtype=torch.float64)
    transform[:3, :3] = random_rotation(generator)
    transform[:3, 3] = torch.tensor([10.0, -4.0, 2.5], dtype=torch.float64)
    moved = transform @ poses.double()
    moved[..., :3, 3] *= 0.37
    with torch.no_grad():
        out = model(images, k, poses)
        out_moved = model(images, k, moved.float())
        # Moving one camera relative to the others is not a global motion: outputs change.
        nudged = poses.clone()
        nudged[0, 1, :3, 3] += torch.tensor([0.8, 0.0, -0.5])
        out_nudged = model(images, k, nudged)
    assert torch.allclose(out, out_moved, atol=1e-4)
    assert not torch.allclose(out, out_nudged, atol=1e-3)


def test_metric_conditioning_is_rigid_invariant_but_keeps_scale(
        generator: torch.Generator) -> None:
    """``pose_conditioning: metric``: rigid motions change nothing, a change of scale does.

    A 10 cm baseline is not a 1 m one; the setting survives the config's JSON round trip.
    """
    model, size = tiny('dinov2_reg', pose_conditioning='metric', metric_scale=2.0)
    perturb_trainable(model)
    images, k, poses = inputs(size, generator)
    transform = torch.eye(4, dtype=torch.float64)
    transform[:3, :3] = random_rotation(generator)
    transform[:3, 3] = torch.tensor([10.0, -4.0, 2.5], dtype=torch.float64)
    moved = (transform @ poses.double()).float()
    scaled = poses.clone()
    scaled[..., :3, 3] *= 0.37
    with torch.no_grad():
        out = model(images, k, poses)
        assert torch.allclose(out, model(images, k, moved), atol=1e-4)
        assert not torch.allclose(out, model(images, k, scaled), atol=1e-3)
    assert model.config.to_json().count('"metric"') == 1
    from mvfm_ros.models.config import MVFMConfig

    assert MVFMConfig.from_json(model.config.to_json()) == model.config
    with pytest.raises(ValueError, match='pose_conditioning'):
        tiny('dinov2_reg', pose_conditioning='window')


def test_gradients_reach_only_trainable_parameters(generator: torch.Generator) -> None:
    model, size = tiny('dinov2_reg', lora_rank=4)
    perturb_trainable(model, scale=0.05)
    model.train()
    assert not model.trunk.training and not model.trunk.model.training
    assert model.adapters.training
    images, k, poses = inputs(size, generator)
    model(images, k, poses).square().mean().backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(model.trainable_state_dict())
    assert any('lora_a' in n for n in trainable) and any('ray_embed' in n for n in trainable)
    for name, param in model.named_parameters():
        if name in trainable:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name


def test_adapter_placement_and_sharing_options() -> None:
    shared, _ = tiny('dinov2_reg')
    assert len(shared.adapters) == 2 and shared.adapter_blocks == (0, 1)
    separate, _ = tiny('dinov2_reg', share_adapters=False, adapter_dim=16, adapter_mlp_ratio=2.0)
    assert len(separate.adapters) == 2
    assert separate.adapters[1].mlp.fc1.out_features == 32
    last, _ = tiny('dinov2_reg', adapter_blocks=[1])
    assert last.adapter_blocks == (1,) and len(last.adapters) == 1
    with pytest.raises(ValueError, match='adapter_blocks'):
        tiny('dinov2_reg', adapter_blocks=[5])
    with pytest.raises(TypeError, match='unknown adapter options'):
        tiny('dinov2_reg', adaptor_dim=8)


def test_repeated_block_index_stacks_adapters(generator: torch.Generator) -> None:
    stacked, size = tiny('dinov2_reg', adapter_blocks=[1, 1], share_adapters=False)
    single, _ = tiny('dinov2_reg', adapter_blocks=[1])
    assert stacked.adapter_blocks == (1, 1) and len(stacked.adapters) == 2
    perturb_trainable(stacked)
    single.load_state_dict({k: v for k, v in stacked.state_dict().items()
                            if not k.startswith('adapters.1.')})
    images, k, poses = inputs(size, generator)
    with torch.no_grad():
        both = stacked(images, k, poses)
        first_only = single(images, k, poses)
        # The second adapter runs on the first one's output, after the same block.
        assert not torch.allclose(both, first_only, atol=1e-4)
        torch.nn.init.zeros_(stacked.adapters[1].proj_out.weight)
        torch.nn.init.zeros_(stacked.adapters[1].proj_out.bias)
        assert torch.allclose(stacked(images, k, poses), first_only, atol=1e-6)


def test_side_network_caches_the_whole_trunk_per_frame(generator: torch.Generator) -> None:
    model, size = tiny('dinov2_reg', adapter_mode='side', adapter_blocks=[0, 1, 1],
                       share_adapters=False, lora_rank=0)
    images, k, poses = inputs(size, generator)
    with torch.no_grad():
        assert torch.equal(model(images, k, poses), model.base_features(images))
    perturb_trainable(model)
    with torch.no_grad():
        out = model(images, k, poses)
        assert not torch.allclose(out, model.base_features(images), atol=1e-3)
        # Every block is per-frame: cached frames of the two distinct tapped blocks and the
        # last block's output, joined later, give the full forward pass.
        assert model.last_frame_block == model.trunk.depth - 1
        states = [model.frame_tokens(images[0, i:i + 1]) for i in range(V)]
        assert states[0].tokens.shape[:2] == (1, 3)
        streamed = model.window_features(join_states(states), k, poses)
        assert torch.allclose(streamed, out, atol=1e-5)
        # Views still see each other: moving one camera changes another view's features.
        nudged = poses.clone()
        nudged[0, 1, :3, 3] += torch.tensor([0.8, 0.0, -0.5])
        assert not torch.allclose(model(images, k, nudged)[0, 0], out[0, 0], atol=1e-4)
    model.train()
    model(images, k, poses).square().mean().backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
    with pytest.raises(ValueError, match='adapter_mode'):
        tiny('dinov2_reg', adapter_mode='sideways')


def test_bad_inputs_get_clear_errors(generator: torch.Generator) -> None:
    model, size = tiny('dinov2_reg')
    images, k, poses = inputs(size, generator)
    with pytest.raises(ValueError, match=r'\(B, V, 3, H, W\)'):
        model(images[0], k, poses)
    with pytest.raises(ValueError, match='multiple of the patch size 14'):
        model(images[..., :-1], k, poses)
    with pytest.raises(ValueError, match='intrinsics'):
        model(images, k[:, :2], poses)
    with pytest.raises(ValueError, match='cam_to_world'):
        model(images, k, poses[..., :3, :])
    with pytest.raises(ValueError, match='reference_view'):
        model(images, k, poses, reference_view=V)
