"""What a training step minimises, in three regimes.

The paper's losses on one window, the same on two overlapping windows of a robot stream
(correspondences scored across them), or the single-view objective of backbone pretraining.
"""

from __future__ import annotations

import torch

from mvfm_ros.geometry.sampling import to_unit
from mvfm_ros.models.device import autocast
from mvfm_ros.models.heads.normals import normal_loss
from mvfm_ros.models.mvfm import MultiViewModel
from mvfm_ros.models.trunk import TokenState
from mvfm_ros.train.config import TrainConfig
from mvfm_ros.train.losses import correspondence_loss, cross_window_loss, feature_regularizer
from mvfm_ros.train.pretrain import augmented_pairs


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


class Objectives:
    """The loss terms of a step and their weighted total.

    Args:
        model: the model being trained.
        module: what the forward pass goes through (the model, its trunk when pretraining, or
            their DistributedDataParallel wrapper).
        config: loss weights, temperature, stage.
        device: the training device.
        precision: ``fp32`` or ``bf16`` (autocast).
        rank: this process's rank; world: the number of processes (pretraining crops differ
            per rank).
    """

    def __init__(self, model: MultiViewModel, module: torch.nn.Module, config: TrainConfig,
                 device: torch.device, precision: str, rank: int = 0, world: int = 1) -> None:
        """Keep what the losses need."""
        self.model, self.module, self.config = model, module, config
        self.device, self.precision = device, precision
        self.rank, self.world = rank, world
        self.pretraining = config.stage == 'pretrain'

    def __call__(self, batch: dict[str, torch.Tensor], step: int = 0,
                 ) -> dict[str, torch.Tensor]:
        """Loss terms and their weighted total (``step`` seeds the pretraining crops)."""
        if self.pretraining:
            return self._pretrain_losses(batch, step)
        if 'windows' in batch:
            return self._window_pair_losses(batch)
        feats, base = self._features(batch['images'], batch['intrinsics'],
                                     batch['cam_to_world'], batch.get('tokens'))
        size = tuple(batch['images'].shape[-2:])
        corr = matching_loss(feats.float(), batch['matches'], batch['valid'], size,
                             self.config.temperature)
        return self._with_reg_and_normals(corr, feats, base, batch.get('normals'), size)

    def _features(self, images: torch.Tensor, intrinsics: torch.Tensor,
                  cam_to_world: torch.Tensor, tokens: torch.Tensor | None,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """Multi-view and base features ``(B, V, C, h, w)``; from cached tokens when given."""
        state = None
        if tokens is not None:  # (B, V, ...) frozen per-frame tokens of the views
            grid = (images.shape[-2] // self.model.patch_size,
                    images.shape[-1] // self.model.patch_size)
            state = TokenState(tokens.flatten(0, 1).float(), grid)
        with autocast(self.device, self.precision):
            feats = self.module(images, intrinsics, cam_to_world, state=state)
            base = (self.model.base_features(images) if state is None
                    else self.model.base_from_state(state, images.shape[1]))
        return feats, base

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
                   ('images', 'intrinsics', 'cam_to_world', 'tokens') if k in batch}
        feats, base = self._features(stacked['images'], stacked['intrinsics'],
                                     stacked['cam_to_world'], stacked.get('tokens'))
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
        with autocast(self.device, self.precision):
            feats = self.module(crops).float()
        n = images.shape[0]
        losses = [correspondence_loss(feats[i], feats[n + i], unit_a[i][valid[i]],
                                      unit_b[i][valid[i]], self.config.temperature)
                  for i in range(n) if valid[i].any()]
        corr = torch.stack(losses).mean() if losses else feats.sum() * 0.0
        return {'loss': corr, 'corr': corr}
