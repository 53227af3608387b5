"""Device and precision: one place that turns settings into a device, a dtype and an autocast.

The engine, the trainer and the benchmark all run models as these helpers say, so ``auto``
means the same everywhere (CUDA when present; bf16 on CUDA, fp32 on a CPU) and asking for a GPU
that is absent is the same clear error.
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def resolve_device(requested: str) -> torch.device:
    """Turn ``auto``/``cpu``/``cuda[:N]`` into a device; CUDA asked for but absent is an error."""
    if requested == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if requested.startswith('cuda') and not torch.cuda.is_available():
        raise RuntimeError(f"device '{requested}' was requested but CUDA is not available "
                           "(no GPU or a CPU-only PyTorch); set device to 'cpu' or 'auto'")
    device = torch.device(requested)
    if device.type == 'cuda' and device.index is not None and \
            device.index >= torch.cuda.device_count():
        raise RuntimeError(f"device '{requested}' was requested but this machine has "
                           f'{torch.cuda.device_count()} GPU(s)')
    return device


def resolve_precision(requested: str, device: torch.device,
                      allowed: tuple[str, ...] = tuple(PRECISIONS)) -> str:
    """Turn ``auto`` into bf16 on CUDA and fp32 elsewhere; refuse what is not ``allowed``."""
    precision = ('bf16' if device.type == 'cuda' else 'fp32') if requested == 'auto' \
        else requested
    if precision not in allowed:
        raise ValueError(f'precision must be auto or one of {allowed}, not {requested!r}')
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast to the precision's dtype (a no-op context for fp32)."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
