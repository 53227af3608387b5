"""The multi-view adapter as the paper's public code builds it (``adapter_style: official``).

One LayerNorm, joint attention over every token of every view at the input width (for the
first adapter the backbone width plus the ray embedding), an MLP, and a zero-initialised
projection back to the backbone width; no residual inside. The update is added to the spatial
tokens (and, with registers, to the registers) by the model. Used to run the released
checkpoints exactly (:mod:`mvfm_ros.models.official`); :class:`~mvfm_ros.layers.mv_adapter.
MVAdapter` is the package's own variant (projected width, residual attention and MLP).
"""

from __future__ import annotations

import torch
from timm.layers import Attention, Mlp
from torch import nn

from mvfm_ros.layers.mv_adapter import with_rays


class SpatialAdapter(nn.Module):
    """Norm, joint multi-view attention and MLP at the input width, zero projection out.

    Args:
        embed_dim: width of the backbone tokens.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / input width (0: no MLP).
        ray_dim: width of the ray tokens concatenated to the input (0 = no rays).
    """

    def __init__(self, embed_dim: int, num_heads: int = 8, mlp_ratio: float = 4.0,
                 ray_dim: int = 0) -> None:
        """Build the adapter; the output projection starts at zero."""
        super().__init__()
        in_dim = embed_dim + ray_dim
        if in_dim % num_heads:
            raise ValueError(f'input width {in_dim} is not divisible by {num_heads} heads')
        self.ray_dim = ray_dim
        self.norm = nn.LayerNorm(in_dim)
        self.attn = Attention(in_dim, num_heads=num_heads, qkv_bias=True)
        self.mlp = (Mlp(in_dim, hidden_features=int(in_dim * mlp_ratio), act_layer=nn.GELU)
                    if mlp_ratio else nn.Identity())
        self.proj_out = nn.Linear(in_dim, embed_dim)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, tokens: torch.Tensor, num_views: int,
                rays: torch.Tensor | None = None) -> torch.Tensor:
        """Return the ``(B * V, T, D)`` update; arguments as :meth:`MVAdapter.forward`."""
        tokens = with_rays(tokens, rays, self.ray_dim)
        n, t, _ = tokens.shape
        h = tokens.reshape(n // num_views, num_views * t, -1)
        h = self.mlp(self.attn(self.norm(h)))
        return self.proj_out(h).reshape(n, t, -1)
