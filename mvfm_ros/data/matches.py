"""Multi-view samples with a fixed number of correspondences, from any data source.

Training (:mod:`mvfm_ros.train`) and evaluation (:mod:`mvfm_ros.eval`) read their windows here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mvfm_ros.data.correspondence import sample_correspondences
from mvfm_ros.data.procedural import SceneConfig, SceneGenerator
from mvfm_ros.data.sample import MultiViewSample


@dataclass
class DataConfig:
    """Where training samples come from."""

    source: str = 'procedural'  # procedural | 7scenes | scannet | tum
    path: str | None = None
    num_views: int = 4
    height: int = 224
    width: int = 224
    seed: int = 0
    stride: int = 2  # frame stride of windows in RGB-D sequences
    min_overlap: float = 0.25
    supersample: int = 2  # procedural: anti-aliasing samples per pixel side
    pool: int = 0  # procedural: cycle through this many scenes, kept in memory (0: endless)
    # Robot streams (procedural): each item is max_views + 1 consecutive views of one motion
    # (motions cycle per item: forward, turn, orbit, creep, hover, stereo); each step trains on
    # windows of min_views..max_views views of it, two overlapping windows for the cross-window
    # term. Empty: fixed windows of num_views, as the paper trains.
    motions: list[str] = field(default_factory=list)
    min_views: int = 2
    max_views: int = 7
    # Folder of the pool items and their frozen trunk tokens, made once (needs pool): a
    # training step then runs the adapters alone (mvfm_ros.train.token_cache). Empty: none.
    cache: str = ''


class MatchDataset(torch.utils.data.Dataset):
    """Deterministic samples: item i is always the same views and correspondences.

    Args:
        config: data source settings.
        matches: correspondences per sample (padded with ``valid = False`` rows if fewer).
        length: number of items (procedural data is unbounded).
    """

    def __init__(self, config: DataConfig, matches: int = 128, length: int = 10**9) -> None:
        """Open the data source."""
        self.config = config
        self.matches = matches
        self.cache = None  # a TokenCache serving the pool items (the trainer sets it)
        size = (config.height, config.width)
        if config.source == 'procedural':
            self.generator = SceneGenerator(
                config.seed, SceneConfig(*size, supersample=config.supersample))
            self.sequence, self.windows = None, None
            self.length = length  # with a pool, scenes repeat but matches differ per item
            self._pool: dict[int, MultiViewSample] = {}
        else:
            from mvfm_ros.data import rgbd

            loaders = {'7scenes': rgbd.load_7scenes, 'scannet': rgbd.load_scannet,
                       'tum': rgbd.load_tum}
            if config.source not in loaders:
                raise ValueError(f'unknown data source {config.source!r}; choose procedural, '
                                 f'{", ".join(loaders)}')
            if not config.path:
                raise ValueError(f'data source {config.source!r} needs data.path')
            self.sequence = loaders[config.source](config.path)
            self.windows = self.sequence.windows(config.num_views, config.stride,
                                                 config.min_overlap)
            if not self.windows:
                raise ValueError(f'no overlapping {config.num_views}-view windows in '
                                 f'{config.path}')
            self.length = len(self.windows)

    def __len__(self) -> int:
        """Return the number of items."""
        return self.length

    @property
    def item_views(self) -> int:
        """Views per item: ``max_views + 1`` for robot streams, else ``num_views``."""
        return self.config.max_views + 1 if self.config.motions else self.config.num_views

    def generate(self, index: int) -> MultiViewSample:
        """Generate the procedural sample of item ``index`` (no pool, no cache)."""
        motions = self.config.motions
        if not motions:
            return self.generator.sample(index, self.config.num_views)
        motion = motions[index % len(motions)]
        if motion == 'stereo':  # a calibrated rig driving: left, right, left, right, ...
            return self.generator.sample(index, self.item_views, 'forward', rig='stereo')
        return self.generator.sample(index, self.item_views, motion)

    def load(self, index: int) -> MultiViewSample:
        """Return the multi-view sample behind item ``index``."""
        if self.cache is not None:
            return self.cache.load(index % self.config.pool)[0]
        if self.sequence is None:
            if not self.config.pool:
                return self.generate(index)
            index %= self.config.pool
            if index not in self._pool:
                self._pool[index] = self.generate(index)
            return self._pool[index]
        window = self.windows[index % len(self.windows)]
        return self.sequence.load(window, (self.config.height, self.config.width))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        """Return images, intrinsics, poses, base-view-relative matches and their mask."""
        return self.item(index)

    def item(self, index: int, views: list[int] | None = None) -> dict[str, torch.Tensor]:
        """Return item ``index`` restricted to ``views`` (default all), matches among them.

        With a token cache the item also holds the views' frozen trunk ``tokens``.
        """
        sample = self.load(index)
        tokens = None
        if self.cache is not None:
            tokens = self.cache.load(index % self.config.pool)[1]
            tokens = tokens if views is None else tokens[torch.as_tensor(views)]
        if views is not None:
            sample = sample.select(views)
        rng = torch.Generator().manual_seed(self.config.seed * 1_000_003 + index)
        views = sample.num_views
        per_pair = -(-self.matches // (views * (views - 1)))
        rows = sample_correspondences(sample.depth, sample.intrinsics, sample.cam_to_world,
                                      per_pair, rng)
        rows = rows[torch.randperm(rows.shape[0], generator=rng)[:self.matches]]
        padded = torch.zeros(self.matches, 6)
        padded[:rows.shape[0]] = rows
        valid = torch.zeros(self.matches, dtype=torch.bool)
        valid[:rows.shape[0]] = True
        out = {'images': sample.images, 'intrinsics': sample.intrinsics,
               'cam_to_world': sample.cam_to_world, 'matches': padded, 'valid': valid}
        if sample.normals is not None:
            out['normals'] = sample.normals
        if tokens is not None:
            out['tokens'] = tokens
        return out
