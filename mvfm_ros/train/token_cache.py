"""Training from a cache of the frozen trunk: each training view's tokens computed once.

The backbone is frozen, so the per-frame part of the forward pass (embedding and the blocks up
to the first adapter: all of them for adapters after the last block or a side network) gives
the same tokens for a view at every step. With ``data.pool`` scenes and ``data.cache`` set, each
pool item (its views, depth, normals) and those tokens are written once to the cache folder, and
a training step then costs the adapters alone. An item file records what it was made with
(backbone weights' fingerprint, adapter placement, input size, data settings): a cache made for
something else is refused, not silently used.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import safe_open
from tqdm import tqdm

from mvfm_ros.data.matches import MatchDataset
from mvfm_ros.data.sample import MultiViewSample
from mvfm_ros.models.checkpoint import backbone_fingerprint, write_safetensors
from mvfm_ros.models.mvfm import MultiViewModel

STORED = ('images', 'intrinsics', 'cam_to_world', 'depth', 'normals')


class CacheMismatchError(ValueError):
    """A cached item was made with another backbone, placement, size or data settings."""


class TokenCache:
    """Pool items and their frozen per-frame tokens on disk.

    Args:
        folder: where the item files go.
        dataset: the dataset whose pool items are cached (``config.pool`` items).
        model: the model whose frozen per-frame part makes the tokens.
    """

    def __init__(self, folder: str | Path, dataset: MatchDataset, model: MultiViewModel) -> None:
        """Work out what the cache must have been made with."""
        if not dataset.config.pool:
            raise ValueError('data.cache needs data.pool: a finite set of scenes to cache')
        if model.trunk.is_eva:
            raise ValueError('data.cache is not supported for backbones with rotary position '
                             'embeddings (DINOv3/Eva): their tokens carry per-size state')
        self.folder = Path(folder)
        self.dataset = dataset
        self.model = model
        data = {k: v for k, v in asdict(dataset.config).items() if k != 'cache'}
        self.key = json.dumps({'backbone': model.config.backbone,
                               'fingerprint': backbone_fingerprint(model.backbone_state_dict()),
                               'last_frame_block': model.last_frame_block,
                               'adapter_mode': model.config.adapter_mode,
                               'data': data}, sort_keys=True)
        self._memory: dict[int, tuple[MultiViewSample, torch.Tensor]] = {}

    def path(self, index: int) -> Path:
        """File of pool item ``index``."""
        return self.folder / f'item_{index:05d}.safetensors'

    def _valid(self, path: Path) -> bool:
        if not path.is_file():
            return False
        with safe_open(str(path), framework='pt') as handle:
            key = (handle.metadata() or {}).get('key')
        if key != self.key:
            raise CacheMismatchError(
                f"'{path}' was made for another backbone, adapter placement, size or data "
                f'settings; remove {self.folder} or choose another data.cache')
        return True

    @torch.inference_mode()
    def build(self, progress: bool = True, chunk: int = 4) -> None:
        """Make every missing item (a resumed build keeps the items already written)."""
        missing = [i for i in range(self.dataset.config.pool) if not self._valid(self.path(i))]
        device = self.model.device
        for index in tqdm(missing, desc='token cache', unit='item', disable=not progress):
            sample = self.dataset.generate(index)
            tokens = torch.cat([self.model.frame_tokens(sample.images[i:i + chunk].to(device))
                                .tokens.half().cpu()
                                for i in range(0, sample.num_views, chunk)])
            tensors = {'tokens': tokens}
            for name in STORED:
                value = getattr(sample, name)
                if value is None:
                    continue
                if name == 'images':
                    value = (value * 255).round().to(torch.uint8)
                elif name == 'normals':
                    value = value.half()
                tensors[name] = value
            write_safetensors(tensors, self.path(index), {'key': self.key})

    def load(self, index: int) -> tuple[MultiViewSample, torch.Tensor]:
        """Return pool item ``index``: its sample and its tokens ``(V, T, D)`` (float16)."""
        if index in self._memory:
            return self._memory[index]
        path = self.path(index)
        if not self._valid(path):
            raise FileNotFoundError(f"'{path}' is not built; run the training, which builds "
                                    'the cache first')
        with safe_open(str(path), framework='pt') as handle:
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}
        tokens = tensors.pop('tokens')
        images = tensors.pop('images').float() / 255
        if 'normals' in tensors:
            tensors['normals'] = tensors['normals'].float()
        sample = MultiViewSample(images=images, name=f'cache:{index}', **tensors)
        self._memory[index] = (sample, tokens)
        return sample, tokens
