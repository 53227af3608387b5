"""Low-rank adaptation (LoRA) of a frozen linear layer."""

from __future__ import annotations

import math

import torch
from torch import nn


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update ``(alpha / rank) * B A``.

    ``B`` starts at zero, so a fresh LoRA layer computes exactly what the wrapped layer does.
    Hand-written rather than taken from ``peft``: it is a dozen lines, and ``peft`` would pull in
    ``transformers`` and ``accelerate`` for this one layer.
    """

    def __init__(self, base: nn.Linear, rank: int = 32, alpha: float = 32.0) -> None:
        """Wrap ``base``; its parameters are frozen."""
        super().__init__()
        if rank <= 0:
            raise ValueError(f'LoRA rank must be positive, got {rank}')
        self.base = base
        for param in self.base.parameters():
            param.requires_grad_(False)
        self.rank = rank
        self.scaling = alpha / rank
        device, dtype = base.weight.device, base.weight.dtype
        self.lora_a = nn.Parameter(
            torch.empty(rank, base.in_features, device=device, dtype=dtype))
        self.lora_b = nn.Parameter(
            torch.zeros(base.out_features, rank, device=device, dtype=dtype))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``(..., in_features) -> (..., out_features)``."""
        update = (x @ self.lora_a.t().to(x.dtype)) @ self.lora_b.t().to(x.dtype)
        return self.base(x) + self.scaling * update
