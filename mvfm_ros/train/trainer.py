"""The adapter trainer: AdamW, bf16 autocast, DDP, deterministic batches, exact resume.

The losses are :mod:`mvfm_ros.train.objectives`, the run's files :mod:`mvfm_ros.train.state`,
training from cached frozen-trunk tokens :mod:`mvfm_ros.train.token_cache`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mvfm_ros.data.matches import MatchDataset
from mvfm_ros.models.device import resolve_precision
from mvfm_ros.models.factory import build_model, load_model
from mvfm_ros.models.mvfm import MultiViewModel
from mvfm_ros.train.config import TrainConfig
from mvfm_ros.train.objectives import Objectives
from mvfm_ros.train.state import (
    STATE_FILE,
    load_state,
    save_model,
    save_state,
    truncate_log,
)

LOG = logging.getLogger('mvfm_ros.train')


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Train the adapters (and normal head) of a multi-view model, or pretrain its backbone.

    Stage ``adapters`` is the paper's training: the backbone is frozen; adapters, ray embedding,
    LoRA and the normal head learn. Stage ``pretrain`` trains the backbone alone with the
    single-view objective of :mod:`mvfm_ros.train.pretrain` and also writes the backbone as a
    plain timm state dict (``backbone.safetensors``) that a later stage loads as ``pretrained``.

    Args:
        config: the training configuration.
        model: an already built model (default: built from ``config``).
    """

    def __init__(self, config: TrainConfig, model: MultiViewModel | None = None) -> None:
        """Set up model, optimiser, data and (under torchrun) the process group."""
        self.config = config
        self.rank, self.world = int(os.environ.get('RANK', 0)), int(
            os.environ.get('WORLD_SIZE', 1))
        local_rank = int(os.environ.get('LOCAL_RANK', 0))
        cuda = torch.cuda.is_available()
        self.device = torch.device(f'cuda:{local_rank}' if cuda else 'cpu')
        if self.world > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group('nccl' if cuda else 'gloo')
        seed_everything(config.seed)
        if model is None and config.init:
            model = self._initial_model(config)
        self.model = (model or build_model(
            config.backbone, pretrained=config.pretrained, img_size=config.img_size,
            backbone_kwargs=config.backbone_kwargs, **config.adapter)).to(self.device)
        self.model.config.input_size = (config.data.height, config.data.width)
        self.pretraining = config.stage == 'pretrain'
        if self.pretraining:
            self.model.requires_grad_(False)
            self.model.trunk.requires_grad_(True)
        # Trained parameters by name: what train states hold and what the optimiser sees.
        self.named_params = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        self.module = self.model.trunk if self.pretraining else self.model
        if self.world > 1:
            self.module = torch.nn.parallel.DistributedDataParallel(
                self.module, device_ids=[local_rank] if cuda else None)
        self.optimizer = torch.optim.AdamW(list(self.named_params.values()), lr=config.lr,
                                           weight_decay=config.weight_decay)
        self.dataset = MatchDataset(config.data, config.matches_per_sample)
        if config.data.cache:
            from mvfm_ros.train.token_cache import TokenCache

            cache = TokenCache(config.data.cache, self.dataset, self.model)
            if self.rank == 0:
                cache.build()
            if self.world > 1:
                torch.distributed.barrier()
            self.dataset.cache = cache
        self.step = 0
        self.precision = resolve_precision(config.precision, self.device, ('bf16', 'fp32'))
        self.objectives = Objectives(self.model, self.module, config, self.device,
                                     self.precision, self.rank, self.world)

    @staticmethod
    def _initial_model(config: TrainConfig) -> MultiViewModel:
        """Return the model of ``config.init`` (fine-tuning): backbone, adapters and heads.

        The checkpoint fixes the layout; of ``config.adapter`` only the pose conditioning may
        differ (a model moved to ``metric`` conditioning keeps what it learnt otherwise).
        """
        model = load_model(config.init)
        for key, value in config.adapter.items():
            if key in ('pose_conditioning', 'metric_scale'):
                setattr(model.config, key, value)
            elif getattr(model.config, key, value) != value and not (
                    isinstance(value, list) and tuple(value) == getattr(model.config, key)):
                raise ValueError(f'init checkpoint {config.init!r} has {key} = '
                                 f'{getattr(model.config, key)!r}, the config asks {value!r}')
        return model

    # ------------------------------------------------------------------------------ batches
    def windows(self, step: int) -> tuple[list[int], list[int]] | None:
        """Two overlapping windows of the items of ``step`` (robot streams), else None.

        Window A is views ``0..V-1`` and window B views ``s..s+V-1`` (``1 <= s < V``) of each
        item: the node's sliding window seen twice, with a different reference view and
        companions. ``V`` and ``s`` are drawn per step (all items of a batch share them),
        deterministically.
        """
        data = self.config.data
        if not data.motions:
            return None
        rng = torch.Generator().manual_seed(self.config.seed * 7_919 + step)
        views = int(torch.randint(data.min_views, data.max_views + 1, (1,), generator=rng))
        # Overlapping, as the node's consecutive windows: at least one view in both.
        shift = int(torch.randint(1, min(views - 1, data.max_views + 1 - views) + 1, (1,),
                                  generator=rng))
        return list(range(views)), list(range(shift, shift + views))

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """Items of this rank for ``step``: deterministic, so a resumed run sees the same data.

        With robot streams the items hold the union of the step's two windows (window A
        first, then B's views not in A) and ``windows`` says which of them each window takes.
        """
        size = self.config.batch_size
        first = (step * self.world + self.rank) * size
        pair = self.windows(step)
        union = None if pair is None else sorted(set(pair[0]) | set(pair[1]))
        items = [self.dataset.item((first + b) % len(self.dataset), union)
                 for b in range(size)]
        out = {k: torch.stack([it[k] for it in items]).to(self.device) for k in items[0]
               if all(k in it for it in items)}
        if pair is not None:
            local = {v: i for i, v in enumerate(union)}
            out['windows'] = torch.tensor([[local[v] for v in w] for w in pair],
                                          device=self.device)
        return out

    def losses(self, batch: dict[str, torch.Tensor], step: int = 0) -> dict[str, torch.Tensor]:
        """Loss terms and their weighted total (``step`` seeds the pretraining crops)."""
        return self.objectives(batch, step)

    def learning_rate(self, step: int) -> float:
        """Learning rate at ``step``: a function of the step alone, so resume is exact."""
        config = self.config
        scale = 1.0
        if config.warmup_steps and step < config.warmup_steps:
            scale = (step + 1) / config.warmup_steps
        elif config.lr_schedule == 'cosine':
            done = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
            scale = 0.5 * (1 + math.cos(math.pi * min(1.0, done)))
        return config.lr * scale

    def train_step(self) -> dict[str, float]:
        """One optimisation step."""
        self.model.train()
        for group in self.optimizer.param_groups:
            group['lr'] = self.learning_rate(self.step)
        parts = self.losses(self.batch(self.step), self.step)
        self.optimizer.zero_grad(set_to_none=True)
        parts['loss'].backward()
        self.optimizer.step()
        self.step += 1
        return {k: float(v.detach()) for k, v in parts.items()}

    # ----------------------------------------------------------------------------------- fit
    def fit(self, steps: int | None = None, resume: bool = False) -> list[dict[str, float]]:
        """Train until ``steps`` (default: config.steps); log JSON lines; checkpoint."""
        steps = self.config.steps if steps is None else steps
        out = Path(self.config.output)
        out.mkdir(parents=True, exist_ok=True)
        if resume and (out / STATE_FILE).is_file():
            self.step = load_state(out / STATE_FILE, self.named_params, self.optimizer,
                                   self.device)
            LOG.info('resumed from %s at step %d', out / STATE_FILE, self.step)
        history = []
        main = self.rank == 0
        if main:
            truncate_log(out / 'log.jsonl', self.step)  # steps after the state are redone
        bar = tqdm(total=steps, initial=self.step, disable=not main, desc='train')
        saved = time.monotonic()
        with open(out / 'log.jsonl', 'a') as log:
            while self.step < steps:
                start = time.perf_counter()
                record = {'step': self.step + 1, **self.train_step(),
                          'seconds': time.perf_counter() - start}
                history.append(record)
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4f}", corr=f"{record['corr']:.4f}")
                if main and (self.step % self.config.log_every == 0 or self.step == steps):
                    log.write(json.dumps(record) + '\n')
                    log.flush()
                due = (self.step % self.config.checkpoint_every == 0 or self.step == steps
                       or time.monotonic() - saved >= 60 * self.config.checkpoint_minutes)
                if main and due:
                    save_state(out / STATE_FILE, self.named_params, self.optimizer, self.step,
                               self.config.to_dict())
                    save_model(self.model, out, self.step, steps, True if self.pretraining
                               else self.config.save_backbone, self.pretraining)
                    saved = time.monotonic()
        bar.close()
        return history


