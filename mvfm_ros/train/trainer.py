"""The adapter trainer: the paper's losses, AdamW, bf16 autocast, DDP, exact resume."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from mvfm_ros.data.matches import MatchDataset
from mvfm_ros.geometry.sampling import to_unit
from mvfm_ros.models.factory import build_model, load_model
from mvfm_ros.models.heads.normals import normal_loss
from mvfm_ros.models.mvfm import MultiViewModel
from mvfm_ros.train.config import TrainConfig
from mvfm_ros.train.losses import correspondence_loss, cross_window_loss, feature_regularizer
from mvfm_ros.train.pretrain import augmented_pairs

LOG = logging.getLogger('mvfm_ros.train')
STATE_FILE = 'train_state.safetensors'
MODEL_FILE = 'model.safetensors'  # written once, when the run finishes (metadata final=True)
LATEST_FILE = 'latest.safetensors'  # the model at the last checkpoint of an unfinished run
BACKBONE_FILE = 'backbone.safetensors'


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def matching_loss(features: torch.Tensor, matches: torch.Tensor, valid: torch.Tensor,
                  image_size: tuple[int, int], temperature: float) -> torch.Tensor:
    """Mean soft-argmax loss over a batch.

    Args:
        features: ``(B, V, C, h, w)``.
        matches: ``(B, N, 6)`` rows (view_a, u_a, v_a, view_b, u_b, v_b) in pixels.
        valid: ``(B, N)`` which rows are real.
        image_size: (H, W) of the images the pixels refer to.
        temperature: softmax temperature.
    """
    height, width = image_size
    losses, weights = [], []
    for b in range(features.shape[0]):
        rows = matches[b][valid[b]]
        for a_view, b_view in rows[:, [0, 3]].long().unique(dim=0).tolist():
            sel = rows[(rows[:, 0] == a_view) & (rows[:, 3] == b_view)]
            loss = correspondence_loss(features[b, a_view], features[b, b_view],
                                       to_unit(sel[:, 1:3], height, width),
                                       to_unit(sel[:, 4:6], height, width), temperature)
            losses.append(loss * sel.shape[0])
            weights.append(sel.shape[0])
    if not losses:
        return features.sum() * 0.0
    return torch.stack(losses).sum() / sum(weights)


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
        self.step = 0
        precision = config.precision
        if precision == 'auto':
            precision = 'bf16' if cuda else 'fp32'
        if precision not in ('bf16', 'fp32'):
            raise ValueError(f'precision must be auto, bf16 or fp32, not {config.precision!r}')
        self.autocast_dtype = torch.bfloat16 if precision == 'bf16' else None

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

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def losses(self, batch: dict[str, torch.Tensor], step: int = 0) -> dict[str, torch.Tensor]:
        """Loss terms and their weighted total (``step`` seeds the pretraining crops)."""
        if self.pretraining:
            return self._pretrain_losses(batch, step)
        if 'windows' in batch:
            return self._window_pair_losses(batch)
        with self._autocast():
            feats = self.module(batch['images'], batch['intrinsics'], batch['cam_to_world'])
            base = self.model.base_features(batch['images'])
        size = tuple(batch['images'].shape[-2:])
        corr = matching_loss(feats.float(), batch['matches'], batch['valid'], size,
                             self.config.temperature)
        return self._with_reg_and_normals(corr, feats, base, batch.get('normals'), size)

    def _with_reg_and_normals(self, corr: torch.Tensor, feats: torch.Tensor,
                              base: torch.Tensor, normals: torch.Tensor | None,
                              size: tuple[int, int]) -> dict[str, torch.Tensor]:
        reg = feature_regularizer(feats, base)
        parts = {'loss': corr + self.config.reg_weight * reg, 'corr': corr, 'reg': reg}
        if self.model.normal_head is not None and normals is not None:
            # The probe reads the features without changing them (detach), as a probe should.
            predicted = self.model.normals(feats.detach().float(), size)
            parts['normal'] = normal_loss(predicted, normals)
            parts['loss'] = parts['loss'] + self.config.normal_weight * parts['normal']
        return parts

    def _window_pair_losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Losses of two overlapping windows per item (robot streams).

        Correspondences are scored across the pair (a view of window A against a view of
        window B where possible, so most matches compare features from different windows);
        the cross-window term asks the views both windows share to keep their features.
        """
        win_a, win_b = batch['windows'].tolist()
        views = len(win_a)

        def take(key: str, window: list[int]) -> torch.Tensor:
            return batch[key][:, window]

        stacked = {k: torch.cat((take(k, win_a), take(k, win_b))) for k in
                   ('images', 'intrinsics', 'cam_to_world')}
        with self._autocast():
            feats = self.module(stacked['images'], stacked['intrinsics'],
                                stacked['cam_to_world'])
            base = self.model.base_features(stacked['images'])
        b = batch['images'].shape[0]
        feats_a, feats_b = feats[:b], feats[b:]
        # Union view -> position among [window A views, window B views] (B offset by V).
        units = batch['images'].shape[1]
        in_a = torch.full((units,), -1, dtype=torch.long, device=feats.device)
        in_b = in_a.clone()
        in_a[win_a] = torch.arange(views, device=feats.device)
        in_b[win_b] = torch.arange(views, device=feats.device) + views
        rows = batch['matches'].clone()
        va, vb = rows[..., 0].long(), rows[..., 3].long()
        rows[..., 0] = torch.where(in_a[va] >= 0, in_a[va], in_b[va]).float()
        rows[..., 3] = torch.where(in_b[vb] >= 0, in_b[vb], in_a[vb]).float()
        size = tuple(batch['images'].shape[-2:])
        corr = matching_loss(torch.cat((feats_a, feats_b), 1).float(), rows, batch['valid'],
                             size, self.config.temperature)
        normals = (torch.cat((take('normals', win_a), take('normals', win_b)))
                   if 'normals' in batch else None)
        parts = self._with_reg_and_normals(corr, feats, base, normals, size)
        shared = [v for v in win_a if v in win_b]
        if shared and self.config.cross_window_weight:
            pos_a = [win_a.index(v) for v in shared]
            pos_b = [win_b.index(v) for v in shared]
            parts['cross'] = cross_window_loss(feats_a[:, pos_a], feats_b[:, pos_b])
            parts['loss'] = parts['loss'] + self.config.cross_window_weight * parts['cross']
        return parts

    def _pretrain_losses(self, batch: dict[str, torch.Tensor], step: int,
                         ) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(
            (self.config.seed * 1_000_003 + step) * self.world + self.rank)
        images = batch['images'].flatten(0, 1)
        crops, unit_a, unit_b, valid = augmented_pairs(
            images, self.config.matches_per_sample, generator)
        with self._autocast():
            feats = self.module(crops).float()
        n = images.shape[0]
        losses = [correspondence_loss(feats[i], feats[n + i], unit_a[i][valid[i]],
                                      unit_b[i][valid[i]], self.config.temperature)
                  for i in range(n) if valid[i].any()]
        corr = torch.stack(losses).mean() if losses else feats.sum() * 0.0
        return {'loss': corr, 'corr': corr}

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

    # ------------------------------------------------------------------------- checkpoints
    def save_state(self, path: str | Path) -> None:
        """Write weights, optimiser state, RNG and step (safetensors, atomic)."""
        path = Path(path)
        tensors = {f'model/{k}': v.detach().cpu().contiguous()
                   for k, v in self.named_params.items()}
        optim = self.optimizer.state_dict()
        for index, state in optim['state'].items():
            for key, value in state.items():
                tensors[f'optim/{index}/{key}'] = torch.as_tensor(value).cpu().contiguous()
        tensors['rng/torch'] = torch.get_rng_state()
        metadata = {'step': str(self.step), 'config': json.dumps(self.config.to_dict()),
                    'param_groups': json.dumps(optim['param_groups'])}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + '.tmp')
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)

    def load_state(self, path: str | Path) -> None:
        """Resume from :meth:`save_state`'s file."""
        with safe_open(str(path), framework='pt') as handle:
            metadata = handle.metadata()
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}
        model = {k[len('model/'):]: v for k, v in tensors.items() if k.startswith('model/')}
        missing = set(self.named_params) - set(model)
        if missing:
            raise ValueError(f"'{path}' does not fit this model: missing {sorted(missing)[:5]}")
        with torch.no_grad():
            for name, param in self.named_params.items():
                param.copy_(model[name])
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith('optim/'):
                _, index, name = key.split('/', 2)
                state.setdefault(int(index), {})[name] = value.to(self.device)
        self.optimizer.load_state_dict({'state': state,
                                        'param_groups': json.loads(metadata['param_groups'])})
        torch.set_rng_state(tensors['rng/torch'])
        self.step = int(metadata['step'])

    def save_outputs(self, out: Path, steps: int) -> None:
        """Write the train state and the model (and, when pretraining, the bare backbone).

        Before the last step the model goes to ``latest.safetensors`` (marked not final); at
        the last step to ``model.safetensors`` (marked final) and ``latest`` is removed, so a
        killed run never leaves a ``model.safetensors`` that looks finished.
        """
        self.save_state(out / STATE_FILE)
        include = True if self.pretraining else self.config.save_backbone
        final = self.step >= steps
        self.model.save(out / (MODEL_FILE if final else LATEST_FILE), include_backbone=include,
                        training={'step': self.step, 'steps': steps, 'final': final})
        if final:
            (out / LATEST_FILE).unlink(missing_ok=True)
        if self.pretraining:
            tmp = out / (BACKBONE_FILE + '.tmp')
            save_file({k: v.detach().cpu().contiguous()
                       for k, v in self.model.backbone_state_dict().items()}, str(tmp))
            os.replace(tmp, out / BACKBONE_FILE)

    # ----------------------------------------------------------------------------------- fit
    def fit(self, steps: int | None = None, resume: bool = False) -> list[dict[str, float]]:
        """Train until ``steps`` (default: config.steps); log JSON lines; checkpoint."""
        steps = self.config.steps if steps is None else steps
        out = Path(self.config.output)
        out.mkdir(parents=True, exist_ok=True)
        if resume and (out / STATE_FILE).is_file():
            self.load_state(out / STATE_FILE)
            LOG.info('resumed from %s at step %d', out / STATE_FILE, self.step)
        history = []
        main = self.rank == 0
        if main:
            _truncate_log(out / 'log.jsonl', self.step)  # steps after the state are redone
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
                    self.save_outputs(out, steps)
                    saved = time.monotonic()
        bar.close()
        return history


def _truncate_log(path: Path, step: int) -> None:
    """Keep the log lines up to ``step`` (a resumed run redoes the steps after it)."""
    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines()
             if line.strip() and json.loads(line).get('step', 0) <= step]
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(''.join(line + '\n' for line in lines))
    os.replace(tmp, path)
