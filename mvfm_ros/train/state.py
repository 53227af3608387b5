"""The files of a training run: the resumable train state, the models, the log.

``train_state.safetensors`` holds the trained weights, the optimiser state, the RNG and the
step (``--resume`` continues exactly); ``latest.safetensors`` is the model of an unfinished
run (marked not final), ``model.safetensors`` the finished one; ``log.jsonl`` one line per
logged step. Every file is written atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from mvfm_ros.models.checkpoint import write_safetensors

STATE_FILE = 'train_state.safetensors'
MODEL_FILE = 'model.safetensors'  # written once, when the run finishes (metadata final=True)
LATEST_FILE = 'latest.safetensors'  # the model at the last checkpoint of an unfinished run
BACKBONE_FILE = 'backbone.safetensors'


def save_state(path: str | Path, params: dict[str, torch.Tensor],
               optimizer: torch.optim.Optimizer, step: int, config: dict[str, Any]) -> None:
    """Write weights, optimiser state, RNG and step (safetensors, atomic)."""
    tensors = {f'model/{k}': v for k, v in params.items()}
    optim = optimizer.state_dict()
    for index, state in optim['state'].items():
        for key, value in state.items():
            tensors[f'optim/{index}/{key}'] = torch.as_tensor(value)
    tensors['rng/torch'] = torch.get_rng_state()
    metadata = {'step': str(step), 'config': json.dumps(config),
                'param_groups': json.dumps(optim['param_groups'])}
    write_safetensors(tensors, path, metadata)


def load_state(path: str | Path, params: dict[str, torch.Tensor],
               optimizer: torch.optim.Optimizer, device: torch.device) -> int:
    """Resume from :func:`save_state`'s file: weights, optimiser, RNG; returns the step."""
    with safe_open(str(path), framework='pt') as handle:
        metadata = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    model = {k[len('model/'):]: v for k, v in tensors.items() if k.startswith('model/')}
    missing = set(params) - set(model)
    if missing:
        raise ValueError(f"'{path}' does not fit this model: missing {sorted(missing)[:5]}")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(model[name])
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith('optim/'):
            _, index, name = key.split('/', 2)
            state.setdefault(int(index), {})[name] = value.to(device)
    optimizer.load_state_dict({'state': state,
                               'param_groups': json.loads(metadata['param_groups'])})
    torch.set_rng_state(tensors['rng/torch'])
    return int(metadata['step'])


def save_model(model: Any, out: Path, step: int, steps: int, include_backbone: bool | None,
               pretraining: bool) -> None:
    """Write the model: ``latest`` (not final) before the last step, ``model`` at it.

    At the last step ``latest`` is removed, so a killed run never leaves a
    ``model.safetensors`` that looks finished; pretraining also writes the bare backbone.
    """
    final = step >= steps
    model.save(out / (MODEL_FILE if final else LATEST_FILE), include_backbone=include_backbone,
               training={'step': step, 'steps': steps, 'final': final})
    if final:
        (out / LATEST_FILE).unlink(missing_ok=True)
    if pretraining:
        write_safetensors(model.backbone_state_dict(), out / BACKBONE_FILE)


def truncate_log(path: Path, step: int) -> None:
    """Keep the log lines up to ``step`` (a resumed run redoes the steps after it)."""
    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines()
             if line.strip() and json.loads(line).get('step', 0) <= step]
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(''.join(line + '\n' for line in lines))
    os.replace(tmp, path)
