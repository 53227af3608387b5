"""Block-by-block access to timm ViT families, so adapters can run between frozen blocks.

timm's ``forward_features`` runs all blocks in one call. The multi-view model needs to touch the
tokens after every block, so each family gets a thin wrapper that exposes the same steps timm
takes (embedding, blocks, final norm or neck) one at a time:

- ``VisionTransformer`` (DINOv2 with and without registers, CLIP, DeiT, ...),
- ``Eva`` (DINOv3, EVA-02: rotary position embeddings passed to each block),
- ``VisionTransformerSAM`` (SAM: windowed blocks on a (N, h, w, C) grid, a conv neck).

All of them hand the model a token sequence ``(N, P + h * w, C)``: P prefix tokens (class and
register tokens; zero for SAM) followed by the patch tokens in row-major order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from timm.models.eva import Eva
from timm.models.vision_transformer import VisionTransformer
from timm.models.vision_transformer_sam import VisionTransformerSAM
from torch import nn


@dataclass
class TokenState:
    """Tokens between blocks: ``tokens`` is ``(N, P + h * w, C)``; ``extra`` is per-family."""

    tokens: torch.Tensor
    grid: tuple[int, int]
    extra: Any = None


def join_states(states: list[TokenState]) -> TokenState:
    """Concatenate token states of frames with the same grid along the batch."""
    grids = {s.grid for s in states}
    if len(grids) != 1:
        raise ValueError(f'cannot join token states of different grids {sorted(grids)}')
    # extra (rotary embeddings of Eva) depends on the grid alone, so the first one serves all.
    return TokenState(torch.cat([s.tokens for s in states]), states[0].grid, states[0].extra)


class Trunk(nn.Module):
    """A frozen timm ViT seen as embed → blocks → finish.

    Args:
        model: a timm model of a supported family.
        output_norm: finish with the model's final LayerNorm (timm's output); False: the raw
            tokens of the last block (the paper's public code).
    """

    def __init__(self, model: nn.Module, output_norm: bool = True) -> None:
        """Wrap ``model`` (kept as ``self.model``, so its state-dict keys stay timm's)."""
        super().__init__()
        self.output_norm = output_norm
        if not isinstance(model, (VisionTransformer, Eva, VisionTransformerSAM)):
            raise TypeError(
                f'unsupported backbone class {type(model).__name__}: mvfm_ros supports timm '
                'VisionTransformer (DINOv2, CLIP, ...), Eva (DINOv3) and VisionTransformerSAM'
            )
        self.model = model
        self.is_sam = isinstance(model, VisionTransformerSAM)
        self.is_eva = isinstance(model, Eva)
        cfg = model.pretrained_cfg
        self.register_buffer('mean', torch.tensor(cfg['mean']).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(cfg['std']).view(1, 3, 1, 1), persistent=False)

    @property
    def embed_dim(self) -> int:
        """Width of the tokens inside the trunk."""
        return int(self.model.embed_dim)

    @property
    def out_dim(self) -> int:
        """Channels of the output feature map (SAM's neck changes the width)."""
        if self.is_sam and not isinstance(self.model.neck, nn.Identity):
            return int(self.model.neck[0].out_channels)
        return self.embed_dim

    @property
    def depth(self) -> int:
        """Number of transformer blocks."""
        return len(self.model.blocks)

    @property
    def patch_size(self) -> int:
        """Patch size in pixels (square patches)."""
        size = self.model.patch_embed.patch_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    @property
    def num_prefix_tokens(self) -> int:
        """Class + register tokens ahead of the patch tokens."""
        return 0 if self.is_sam else int(self.model.num_prefix_tokens)

    @property
    def num_register_tokens(self) -> int:
        """Register tokens (they follow the class token, if any)."""
        return 0 if self.is_sam else int(getattr(self.model, 'num_reg_tokens', 0))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Apply the backbone's own mean/std to ``(N, 3, H, W)`` images in [0, 1]."""
        return (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)

    def embed(self, images: torch.Tensor) -> TokenState:
        """Patch-embed normalised ``(N, 3, H, W)`` images and add position embeddings."""
        m = self.model
        x = m.patch_embed(images)
        if self.is_sam:
            if m.pos_embed is not None:
                from timm.layers import resample_abs_pos_embed_nhwc

                x = x + resample_abs_pos_embed_nhwc(m.pos_embed, x.shape[1:3])
            x = m.norm_pre(m.patch_drop(m.pos_drop(x)))
            n, h, w, c = x.shape
            return TokenState(x.reshape(n, h * w, c), (h, w))
        grid = (x.shape[1], x.shape[2]) if x.ndim == 4 else tuple(m.patch_embed.grid_size)
        if self.is_eva:
            x, rope = m._pos_embed(x)
            return TokenState(m.norm_pre(x), grid, rope)
        x = m._pos_embed(x)
        x = m.norm_pre(m.patch_drop(x))
        return TokenState(x, grid)

    def block(self, index: int, state: TokenState) -> TokenState:
        """Run block ``index`` on the tokens."""
        blk = self.model.blocks[index]
        if self.is_sam:
            n, _, c = state.tokens.shape
            h, w = state.grid
            x = blk(state.tokens.reshape(n, h, w, c)).reshape(n, h * w, c)
        elif self.is_eva:
            rope = state.extra
            if rope is not None and getattr(self.model, 'rope_mixed', False):
                rope = rope[index]
            x = blk(state.tokens, rope=rope)
        else:
            x = blk(state.tokens)
        return TokenState(x, state.grid, state.extra)

    def finish(self, state: TokenState) -> torch.Tensor:
        """Apply the final norm (or SAM's neck) and reshape the patch tokens to a map.

        Returns:
            ``(N, out_dim, h, w)`` feature maps.
        """
        h, w = state.grid
        n = state.tokens.shape[0]
        if self.is_sam:
            x = state.tokens.reshape(n, h, w, -1).permute(0, 3, 1, 2)
            return self.model.neck(x)
        x = self.model.norm(state.tokens) if self.output_norm else state.tokens
        x = x[:, self.num_prefix_tokens:]
        return x.transpose(1, 2).reshape(n, -1, h, w)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Run the whole frozen backbone on ``(N, 3, H, W)`` images in [0, 1].

        Returns:
            ``(N, out_dim, h, w)`` feature maps.
        """
        state = self.embed(self.normalize(images))
        for index in range(self.depth):
            state = self.block(index, state)
        return self.finish(state)
