"""Configuration of a multi-view model: everything needed to rebuild it, stored in checkpoints."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from mvfm_ros.geometry.pose import POSE_CONDITIONINGS

ADAPTER_MODES = ('residual', 'side')
ADAPTER_STYLES = ('block', 'official')


@dataclass
class MVFMConfig:
    """How to build a :class:`mvfm_ros.models.MultiViewModel`.

    Attributes:
        backbone: timm model name, optionally with a pretrained tag
            (``vit_small_patch14_reg4_dinov2.lvd142m``).
        img_size: size the backbone's position embedding is built for (None: timm's default).
            Inputs of other sizes work; position embeddings are resampled.
        backbone_kwargs: extra keyword arguments for ``timm.create_model`` (tiny test models).
        adapter_blocks: indices of the blocks followed by an adapter (None: every block); a
            repeated index stacks adapters after that block (``[5, 5]``).
        adapter_mode: ``residual`` (the paper: each adapter's update goes back into the frozen
            trunk before the next block) or ``side`` (the trunk runs untouched; the adapters
            form a side network that reads the trunk's tokens after their blocks, chains its
            hidden tokens from adapter to adapter, and adds its updates to the last block's
            output). A side network leaves every block per-frame, so a sliding window caches
            the whole trunk and runs only the adapters.
        adapter_style: ``block`` (the package's adapter: projected to ``adapter_dim``,
            residual attention and MLP, :class:`~mvfm_ros.layers.mv_adapter.MVAdapter`) or
            ``official`` (the paper's public code: one norm, attention and MLP at the input
            width, no inner residual, :class:`~mvfm_ros.layers.spatial_adapter.SpatialAdapter`).
        adapter_dim: width inside the adapters (None: the backbone width; ``block`` only).
        adapter_heads: attention heads in each adapter.
        adapter_mlp_ratio: MLP expansion inside each adapter.
        share_adapters: adapters after the first share one set of weights (the public code).
        ray_dim: width of the Plücker ray embedding fed to the first adapter.
        include_registers: register tokens join the joint attention (the CLS token never does).
        update_registers: the adapters' updates are added to the registers too (the public
            code's), not only to the patch tokens.
        output_norm: the features are the backbone's final LayerNorm of the last tokens (timm's
            output); False: the raw tokens (the public code's features).
        lora_rank: rank of LoRA on the attention qkv projections (0: no LoRA).
        lora_alpha: LoRA scaling numerator.
        normal_head: hidden width of the surface-normal probe (0: no normal head).
        input_size: (H, W) the model was trained at, a good default for inference (None:
            unknown). Informational: it does not change the weights' layout.
        pose_conditioning: how poses are normalised before the ray embedding: ``paper``
            (reference camera at distance 2 from the window's centre, any scale) or
            ``metric`` (reference-relative and centred, a fixed ``metric_scale``; for metric
            poses, as robots have). Checkpoints without it are ``paper``.
        metric_scale: units per metre of the ``metric`` conditioning.
    """

    backbone: str
    img_size: int | None = None
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    adapter_blocks: tuple[int, ...] | None = None
    adapter_mode: str = 'residual'
    adapter_style: str = 'block'
    adapter_dim: int | None = None
    adapter_heads: int = 8
    adapter_mlp_ratio: float = 4.0
    share_adapters: bool = True
    ray_dim: int = 128
    include_registers: bool = True
    update_registers: bool = False
    output_norm: bool = True
    lora_rank: int = 0
    lora_alpha: float = 32.0
    normal_head: int = 0
    input_size: tuple[int, int] | None = None
    pose_conditioning: str = 'paper'
    metric_scale: float = 1.0

    def __post_init__(self) -> None:
        """Normalise list-like fields so configs compare equal after a JSON round trip."""
        if self.adapter_blocks is not None:
            self.adapter_blocks = tuple(int(i) for i in self.adapter_blocks)
        if self.input_size is not None:
            self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        self.backbone_kwargs = dict(self.backbone_kwargs)
        if min(self.ray_dim, self.lora_rank, self.normal_head) < 0 or self.adapter_heads <= 0:
            raise ValueError(f'invalid adapter options in {self}')
        if self.pose_conditioning not in POSE_CONDITIONINGS or self.metric_scale <= 0:
            raise ValueError(f"pose_conditioning '{self.pose_conditioning}' must be one of "
                             f'{POSE_CONDITIONINGS} with a positive metric_scale')
        if self.adapter_mode not in ADAPTER_MODES:
            raise ValueError(f"adapter_mode '{self.adapter_mode}' is not one of {ADAPTER_MODES}")
        if self.adapter_style not in ADAPTER_STYLES or (
                self.adapter_style == 'official' and self.adapter_mode == 'side'):
            raise ValueError(f"adapter_style '{self.adapter_style}' must be one of "
                             f'{ADAPTER_STYLES} (official: residual placement only)')

    @classmethod
    def option_names(cls) -> set[str]:
        """Names accepted as adapter options by :func:`mvfm_ros.build_model`."""
        return {f.name for f in dataclasses.fields(cls)} - {'backbone', 'img_size',
                                                             'backbone_kwargs', 'input_size'}

    def to_json(self) -> str:
        """Serialise to a JSON string."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> 'MVFMConfig':
        """Parse a JSON string written by :meth:`to_json`; unknown keys are an error."""
        data = json.loads(text)
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f'unknown model configuration keys: {sorted(unknown)}')
        return cls(**data)
