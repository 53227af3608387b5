"""The multi-view adapter: joint attention over all views' tokens, added through a zero init."""

from __future__ import annotations

import torch
from timm.layers import Attention, Mlp
from torch import nn


def with_rays(tokens: torch.Tensor, rays: torch.Tensor | None, ray_dim: int) -> torch.Tensor:
    """Concatenate the ray tokens to an adapter's input tokens when it takes rays.

    Args:
        tokens: ``(N, T, D)`` tokens.
        rays: ``(N, T, ray_dim)`` ray tokens, required when ``ray_dim > 0``.
        ray_dim: width of the ray tokens the adapter was built for (0: none).

    Returns:
        ``(N, T, D + ray_dim)``.
    """
    if not ray_dim:
        return tokens
    if rays is None:
        raise ValueError('this adapter is conditioned on rays; none were given')
    return torch.cat((tokens, rays.to(tokens.dtype)), dim=-1)


class MVAdapter(nn.Module):
    """One multi-view adapter, placed after a frozen transformer block.

    The tokens of all V views of a sample form one sequence, so attention relates every patch to
    every patch of every other view (timm's ``Attention``, which uses PyTorch's fused
    scaled-dot-product attention). The result goes through a zero-initialised projection and is
    added to the spatial tokens, so a fresh adapter changes nothing.

    Args:
        embed_dim: width of the backbone tokens.
        adapter_dim: width inside the adapter.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / adapter width.
        ray_dim: width of the ray tokens concatenated to the input (0 = no rays).
    """

    def __init__(
        self,
        embed_dim: int,
        adapter_dim: int,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        ray_dim: int = 0,
    ) -> None:
        """Build the adapter; the output projection starts at zero."""
        super().__init__()
        if adapter_dim % num_heads:
            raise ValueError(f'adapter_dim {adapter_dim} is not divisible by {num_heads} heads')
        self.ray_dim = ray_dim
        in_dim = embed_dim + ray_dim
        self.proj_in = nn.Linear(in_dim, adapter_dim) if in_dim != adapter_dim else nn.Identity()
        self.norm1 = nn.LayerNorm(adapter_dim)
        self.attn = Attention(adapter_dim, num_heads=num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(adapter_dim)
        self.mlp = Mlp(adapter_dim, hidden_features=int(adapter_dim * mlp_ratio),
                       act_layer=nn.GELU)
        self.proj_out = nn.Linear(adapter_dim, embed_dim)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def hidden(self, tokens: torch.Tensor, num_views: int, rays: torch.Tensor | None = None,
               carry: torch.Tensor | None = None) -> torch.Tensor:
        """Return the adapter's hidden tokens after joint attention and MLP.

        Args:
            tokens: ``(B * V, T, D)`` tokens of every view, views of a sample contiguous.
            num_views: V.
            rays: ``(B * V, T, ray_dim)`` ray tokens, required when ``ray_dim > 0``.
            carry: ``(B, V * T, adapter_dim)`` hidden tokens of a previous adapter, added to
                the projected input (the side-network placement chains adapters this way).

        Returns:
            ``(B, V * T, adapter_dim)``.
        """
        tokens = with_rays(tokens, rays, self.ray_dim)
        n, t, _ = tokens.shape
        h = self.proj_in(tokens).reshape(n // num_views, num_views * t, -1)
        if carry is not None:
            h = h + carry
        h = h + self.attn(self.norm1(h))
        return h + self.mlp(self.norm2(h))

    def forward(self, tokens: torch.Tensor, num_views: int,
                rays: torch.Tensor | None = None) -> torch.Tensor:
        """Return the update for the tokens.

        Args:
            tokens: ``(B * V, T, D)`` tokens of every view, views of a sample contiguous.
            num_views: V.
            rays: ``(B * V, T, ray_dim)`` ray tokens, required when ``ray_dim > 0``.

        Returns:
            ``(B * V, T, D)`` update, to be added to the tokens it should change.
        """
        n, t, _ = tokens.shape
        return self.proj_out(self.hidden(tokens, num_views, rays)).reshape(n, t, -1)
