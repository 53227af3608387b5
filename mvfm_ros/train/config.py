"""Training configuration, read from YAML (see ``config/train_dinov2_vits14.yaml``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mvfm_ros.data.matches import DataConfig

STAGES = ('adapters', 'pretrain')


@dataclass
class TrainConfig:
    """Everything ``mvfm-train`` needs; every field has the paper's value as default."""

    stage: str = 'adapters'  # adapters (the paper) | pretrain (single-view backbone training)
    backbone: str = 'vit_small_patch14_reg4_dinov2'
    pretrained: bool | str = True
    img_size: int | None = None
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    adapter: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    steps: int = 1000
    batch_size: int = 4
    lr: float = 1e-4
    warmup_steps: int = 0  # linear warm-up of the learning rate
    lr_schedule: str = 'constant'  # constant | cosine (decays to 0 at `steps`)
    weight_decay: float = 0.01
    temperature: float = 0.02
    reg_weight: float = 0.1
    normal_weight: float = 1.0  # loss weight of the normal head (if the model has one)
    cross_window_weight: float = 0.0  # agreement of a view's features in two windows
    init: str = ''  # adapter checkpoint whose trained weights start the run (fine-tuning)
    matches_per_sample: int = 128
    precision: str = 'auto'  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 100
    checkpoint_minutes: float = 5.0  # also checkpoint when this much wall time has passed
    output: str = 'runs/train'
    save_backbone: bool | None = None  # store the backbone in model.safetensors (None: if random)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> 'TrainConfig':
        """Load a YAML file; unknown keys are an error (a typo must not train silently)."""
        data = yaml.safe_load(Path(path).read_text()) or {}
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> 'TrainConfig':
        """Build from a plain dict (as read from YAML)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f'unknown training config keys {sorted(unknown)}; known: '
                             f'{sorted(known)}')
        data = dict(data)
        data_cfg = data.pop('data', {}) or {}
        unknown = set(data_cfg) - {f.name for f in dataclasses.fields(DataConfig)}
        if unknown:
            raise ValueError(f'unknown data config keys {sorted(unknown)}')
        config = cls(data=DataConfig(**data_cfg), **data)
        if config.lr_schedule not in ('constant', 'cosine'):
            raise ValueError(f'lr_schedule must be constant or cosine, not {config.lr_schedule!r}')
        if config.stage not in STAGES:
            raise ValueError(f'stage must be one of {STAGES}, not {config.stage!r}')
        from mvfm_ros.data.procedural import MOTIONS

        allowed = MOTIONS + ('stereo',)
        bad = [m for m in config.data.motions if m not in allowed]
        if bad:
            raise ValueError(f'data.motions {bad} unknown; choose from {allowed}')
        if config.data.motions and not 2 <= config.data.min_views <= config.data.max_views:
            raise ValueError('data.min_views must be at least 2 and at most data.max_views')
        return config

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for YAML/JSON)."""
        return dataclasses.asdict(self)
