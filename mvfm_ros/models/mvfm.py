"""The multi-view foundation model: a frozen timm ViT with multi-view adapters between blocks."""

from __future__ import annotations

import os

import torch
from torch import nn

from mvfm_ros.geometry.pose import condition_poses
from mvfm_ros.geometry.rays import plucker_rays
from mvfm_ros.layers.lora import LoRALinear
from mvfm_ros.layers.mv_adapter import MVAdapter
from mvfm_ros.layers.ray_embed import RayEmbed
from mvfm_ros.layers.spatial_adapter import SpatialAdapter
from mvfm_ros.models.config import MVFMConfig
from mvfm_ros.models.heads.normals import NormalHead
from mvfm_ros.models.trunk import TokenState, Trunk

_LORA_BASE = '.qkv.base.'


class MultiViewModel(nn.Module):
    """Frozen backbone + MV-Adapters + Plücker ray conditioning (+ optional LoRA on qkv).

    Build it with :func:`mvfm_ros.build_model` or :func:`mvfm_ros.load_model`.

    Args:
        config: what to build.
        backbone: the timm model (already holding its weights).
        weights_source: where the backbone weights came from (a path, ``'hf-cache'`` or
            ``'random'``); recorded in checkpoints.
    """

    def __init__(self, config: MVFMConfig, backbone: nn.Module, weights_source: str) -> None:
        """Assemble the model; freezes the backbone."""
        super().__init__()
        self.config = config
        self.weights_source = weights_source
        self.trunk = Trunk(backbone, config.output_norm)
        self.trunk.requires_grad_(False)
        self.trunk.eval()
        if config.lora_rank:
            self._add_lora(config.lora_rank, config.lora_alpha)
        self.frozen_keys = frozenset(
            f'trunk.{k}' for k in self.trunk.state_dict()
            if not k.endswith(('.lora_a', '.lora_b')))

        depth, dim = self.trunk.depth, self.trunk.embed_dim
        blocks = config.adapter_blocks if config.adapter_blocks is not None else range(depth)
        # Sorted, repeats kept: [5, 5] stacks two adapters after block 5.
        blocks = sorted(blocks)
        if not blocks or blocks[0] < 0 or blocks[-1] >= depth:
            raise ValueError(f'adapter_blocks {config.adapter_blocks} must lie in [0, {depth})')
        self.adapter_blocks = tuple(blocks)
        adapter_dim = config.adapter_dim or dim
        self.ray_embed = (RayEmbed(self.trunk.patch_size, config.ray_dim)
                          if config.ray_dim else None)

        def make(ray_dim: int) -> nn.Module:
            if config.adapter_style == 'official':
                return SpatialAdapter(dim, config.adapter_heads, config.adapter_mlp_ratio,
                                      ray_dim)
            return MVAdapter(dim, adapter_dim, config.adapter_heads, config.adapter_mlp_ratio,
                             ray_dim)

        # Adapter k follows block adapter_blocks[k]; the first one also takes the ray tokens.
        unique = [make(config.ray_dim)]
        if len(blocks) > 1:
            unique += [make(0)] if config.share_adapters else [make(0) for _ in blocks[1:]]
        self.adapters = nn.ModuleList(unique)
        self._adapters_after: dict[int, list[int]] = {}
        for k, block in enumerate(blocks):
            index = 0 if k == 0 else (1 if config.share_adapters else k)
            self._adapters_after.setdefault(block, []).append(index)
        self.normal_head = (NormalHead(self.trunk.out_dim, config.normal_head)
                            if config.normal_head else None)

    def _add_lora(self, rank: int, alpha: float) -> None:
        for index, blk in enumerate(self.trunk.model.blocks):
            qkv = getattr(blk.attn, 'qkv', None)
            if not isinstance(qkv, nn.Linear):
                raise ValueError(f'LoRA needs a fused qkv linear layer; block {index} has none')
            blk.attn.qkv = LoRALinear(qkv, rank, alpha)

    # ----------------------------------------------------------------------------- properties
    @property
    def feature_dim(self) -> int:
        """Channels C of the output features."""
        return self.trunk.out_dim

    @property
    def patch_size(self) -> int:
        """Backbone patch size in pixels; H and W of inputs must be multiples of it."""
        return self.trunk.patch_size

    @property
    def device(self) -> torch.device:
        """Device of the model's weights."""
        return next(self.trunk.parameters()).device

    def train(self, mode: bool = True) -> 'MultiViewModel':
        """Set training mode on the trainable parts; the frozen backbone stays in eval mode."""
        super().train(mode)
        self.trunk.eval()
        return self

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights that are not the frozen backbone: adapters, ray embedding, LoRA, heads."""
        return {k: v for k, v in self.state_dict().items() if k not in self.frozen_keys}

    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        """Return the frozen backbone weights under their timm names (LoRA unwrapped)."""
        prefix = 'trunk.model.'
        return {k[len(prefix):].replace(_LORA_BASE, '.qkv.'): v
                for k, v in self.state_dict().items()
                if k in self.frozen_keys and k.startswith(prefix)}

    def load_backbone_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load frozen backbone weights given under their timm names (strict)."""
        own = set(self.trunk.model.state_dict())
        renamed = {}
        for key, value in state.items():
            lora_key = key.replace('.qkv.', _LORA_BASE)
            renamed[lora_key if lora_key in own else key] = value
        missing, unexpected = self.trunk.model.load_state_dict(renamed, strict=False)
        missing = [k for k in missing if not k.endswith(('.lora_a', '.lora_b'))]
        if missing or unexpected:
            raise ValueError(f'backbone weights do not fit: missing {missing[:5]}, '
                             f'unexpected {unexpected[:5]}')

    # -------------------------------------------------------------------------------- forward
    def _check_inputs(self, images: torch.Tensor, intrinsics: torch.Tensor | None = None,
                      cam_to_world: torch.Tensor | None = None) -> None:
        if images.ndim != 5 or images.shape[2] != 3:
            raise ValueError(f'images must be (B, V, 3, H, W), got {tuple(images.shape)}')
        b, v, _, height, width = images.shape
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(
                f'image size {height}x{width} is not a multiple of the patch size {p}; resize '
                f'(and scale the intrinsics) to e.g. {height // p * p}x{width // p * p}'
            )
        if intrinsics is not None and tuple(intrinsics.shape) != (b, v, 3, 3):
            raise ValueError(f'intrinsics must be ({b}, {v}, 3, 3), got {tuple(intrinsics.shape)}')
        if cam_to_world is not None and tuple(cam_to_world.shape) != (b, v, 4, 4):
            raise ValueError(
                f'cam_to_world must be ({b}, {v}, 4, 4), got {tuple(cam_to_world.shape)}')

    @torch.no_grad()
    def base_features(self, images: torch.Tensor) -> torch.Tensor:
        """Features of the frozen backbone alone.

        Args:
            images: ``(B, V, 3, H, W)`` float in [0, 1].

        Returns:
            ``(B, V, C, h, w)`` with h = H / patch, w = W / patch.
        """
        self._check_inputs(images)
        b, v = images.shape[:2]
        feats = self.trunk(images.flatten(0, 1))
        return feats.reshape(b, v, *feats.shape[1:])

    def ray_tokens(self, intrinsics: torch.Tensor, cam_to_world: torch.Tensor, height: int,
                   width: int, reference_view: int = 0) -> torch.Tensor:
        """Embedded Plücker rays of every view, relative to ``reference_view``.

        Poses are conditioned as ``config.pose_conditioning`` says.

        Returns:
            ``(B * V, h * w, ray_dim)`` tokens.
        """
        poses = condition_poses(cam_to_world.float(), reference_view,
                                self.config.pose_conditioning, self.config.metric_scale)
        rays = plucker_rays(intrinsics.float(), poses, height, width)  # (B, V, 6, H, W)
        return self.ray_embed(rays.flatten(0, 1))

    @property
    def _joined_start(self) -> int:
        """Index of the first token that joins the adapters' attention (registers optional)."""
        return self.trunk.num_prefix_tokens - (
            self.trunk.num_register_tokens if self.config.include_registers else 0)

    def _pad_rays(self, rays: torch.Tensor | None) -> torch.Tensor | None:
        """Give the register tokens among the joined ones a zero ray embedding."""
        extra = self.trunk.num_prefix_tokens - self._joined_start
        if rays is None or not extra:
            return rays
        return torch.cat((rays.new_zeros(rays.shape[0], extra, rays.shape[2]), rays), dim=1)

    def _add_update(self, state: TokenState, update: torch.Tensor) -> TokenState:
        """Add an adapter update ``(N, joined tokens, D)`` to the patch tokens of a state.

        With ``update_registers`` the joined register tokens take their update too.
        """
        tokens, prefix = state.tokens, self.trunk.num_prefix_tokens
        start = prefix if not self.config.update_registers else self._joined_start
        updated = tokens[:, start:] + update[:, start - self._joined_start:]
        return TokenState(torch.cat((tokens[:, :start], updated), dim=1), state.grid,
                          state.extra)

    def _adapt(self, adapter: MVAdapter, state: TokenState, num_views: int,
               rays: torch.Tensor | None) -> TokenState:
        update = adapter(state.tokens[:, self._joined_start:], num_views, self._pad_rays(rays))
        return self._add_update(state, update)

    @property
    def is_side(self) -> bool:
        """True when the adapters form a side network (``adapter_mode: side``)."""
        return self.config.adapter_mode == 'side'

    @property
    def last_frame_block(self) -> int:
        """Last block of the per-frame part: blocks up to it see one frame at a time.

        The block the first residual adapter follows; the last block for a side network.
        """
        return self.trunk.depth - 1 if self.is_side else self.adapter_blocks[0]

    def frame_tokens(self, images: torch.Tensor) -> TokenState:
        """Run the per-frame part of the forward pass: embedding and blocks up to the 1st adapter.

        It depends on each image alone, so a sliding window can cache it per frame and only run
        the remaining blocks when the window changes (see :mod:`mvfm_ros.pipeline.engine`).

        Args:
            images: ``(N, 3, H, W)`` float in [0, 1].

        Returns:
            Token state of N frames; concatenate states along the batch with :func:`join_states`.
            For a side network its tokens are ``(N, L + 1, P + h * w, C)``: the tokens after
            each of the L distinct adapted blocks, then the last block's output.
        """
        state = self.trunk.embed(self.trunk.normalize(images))
        taps = []
        for index in range(self.last_frame_block + 1):
            state = self.trunk.block(index, state)
            if self.is_side and index in self._adapters_after:
                taps.append(state.tokens)
        if self.is_side:
            return TokenState(torch.stack((*taps, state.tokens), dim=1), state.grid,
                              state.extra)
        return state

    def _side_network(self, state: TokenState, num_views: int,
                      rays: torch.Tensor | None) -> TokenState:
        """Run the side network on cached trunk levels; returns the adapted last-block state."""
        levels = state.tokens
        last = TokenState(levels[:, -1], state.grid, state.extra)
        hidden, update = None, 0
        for level, block in enumerate(sorted(self._adapters_after)):
            joined = levels[:, level, self._joined_start:]
            for k in self._adapters_after[block]:
                adapter = self.adapters[k]
                hidden = adapter.hidden(joined, num_views, self._pad_rays(rays) if k == 0
                                        else None, hidden)
                update = update + adapter.proj_out(hidden)
        return self._add_update(last, update.reshape(joined.shape[0], joined.shape[1], -1))

    def window_features(self, state: TokenState, intrinsics: torch.Tensor,
                        cam_to_world: torch.Tensor, reference_view: int = 0) -> torch.Tensor:
        """Finish the forward pass from :meth:`frame_tokens` of B windows of V views.

        Args:
            state: tokens of ``B * V`` frames, window-major.
            intrinsics: ``(B, V, 3, 3)``.
            cam_to_world: ``(B, V, 4, 4)``.
            reference_view: view whose camera frame the rays are expressed in.

        Returns:
            ``(B, V, C, h, w)`` features.
        """
        b, v = intrinsics.shape[:2]
        if not 0 <= reference_view < v:
            raise ValueError(f'reference_view {reference_view} is not in [0, {v})')
        if state.tokens.shape[0] != b * v:
            raise ValueError(f'token state holds {state.tokens.shape[0]} frames, expected {b * v}')
        rays = None
        if self.ray_embed is not None:
            height, width = (g * self.patch_size for g in state.grid)
            rays = self.ray_tokens(intrinsics, cam_to_world, height, width, reference_view)
        if self.is_side:
            feats = self.trunk.finish(self._side_network(state, v, rays))
            return feats.reshape(b, v, *feats.shape[1:])
        # The adapters after block last_frame_block (frame_tokens ran it); the first one of
        # all takes the rays.
        for k in self._adapters_after[self.last_frame_block]:
            state = self._adapt(self.adapters[k], state, v, rays if k == 0 else None)
        for index in range(self.last_frame_block + 1, self.trunk.depth):
            state = self.trunk.block(index, state)
            for k in self._adapters_after.get(index, ()):
                state = self._adapt(self.adapters[k], state, v, None)
        feats = self.trunk.finish(state)
        return feats.reshape(b, v, *feats.shape[1:])

    def forward(self, images: torch.Tensor, intrinsics: torch.Tensor, cam_to_world: torch.Tensor,
                reference_view: int = 0, state: TokenState | None = None) -> torch.Tensor:
        """Multi-view consistent features.

        Args:
            images: ``(B, V, 3, H, W)`` float in [0, 1].
            intrinsics: ``(B, V, 3, 3)`` K in pixels of these images.
            cam_to_world: ``(B, V, 4, 4)`` poses, OpenCV optical convention, any world frame.
            reference_view: view whose camera frame the rays are expressed in.
            state: :meth:`frame_tokens` of the images, when already known (a training cache
                of the frozen per-frame part); None computes it.

        Returns:
            ``(B, V, C, h, w)`` features.
        """
        self._check_inputs(images, intrinsics, cam_to_world)
        if state is None:
            state = self.frame_tokens(images.flatten(0, 1))
        return self.window_features(state, intrinsics, cam_to_world, reference_view)

    @torch.no_grad()
    def base_from_state(self, state: TokenState, views: int) -> torch.Tensor:
        """Return the backbone's features ``(B, V, C, h, w)`` from :meth:`frame_tokens`.

        Only where the per-frame part is the whole trunk: adapters after the last block, or a
        side network.
        """
        if self.is_side:
            state = TokenState(state.tokens[:, -1], state.grid, state.extra)
        elif self.last_frame_block != self.trunk.depth - 1:
            raise ValueError('base features from cached tokens need the whole trunk per frame')
        feats = self.trunk.finish(state)
        return feats.reshape(-1, views, *feats.shape[1:])

    def normals(self, features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Surface normals from features with the normal head.

        Args:
            features: ``(B, V, C, h, w)`` output of :meth:`forward`.
            size: output (H, W).

        Returns:
            ``(B, V, 3, H, W)`` unit normals in each camera's optical frame.
        """
        if self.normal_head is None:
            raise RuntimeError('this model has no normal head (built with normal_head=0)')
        b, v = features.shape[:2]
        out = self.normal_head(features.flatten(0, 1).float(), size)
        return out.reshape(b, v, *out.shape[1:])

    # ---------------------------------------------------------------------------- checkpoints
    def save(self, path: str | os.PathLike, include_backbone: bool | None = None,
             training: dict[str, str] | None = None) -> None:
        """Write a safetensors checkpoint: trainable weights plus the configuration.

        Args:
            path: output file (``.safetensors``).
            include_backbone: also store the frozen backbone weights. Default: only when the
                backbone was randomly initialised (it could not be rebuilt otherwise).
            training: run metadata stored with it (``step``, ``steps``, ``final``).
        """
        from mvfm_ros.models.checkpoint import save_checkpoint

        save_checkpoint(self, path, include_backbone, training)

    def load_trainable(self, path: str | os.PathLike) -> None:
        """Load adapters/rays/LoRA from a checkpoint made for this same backbone and layout.

        Raises:
            mvfm_ros.models.checkpoint.CheckpointMismatchError: the checkpoint does not fit.
        """
        from mvfm_ros.models.checkpoint import load_trainable

        load_trainable(self, path)
