"""The inference engine: a window of posed frames in, per-view outputs out.

Streaming: the blocks before the model's first adapter see one frame at a time, so their output
is computed once per frame and cached while the frame stays in the window. When the window slides
by one keyframe only the new frame runs those blocks; the remaining blocks (with the adapters)
run on the whole window. With adapters after every block (the paper) nothing but the patch
embedding is cached; placing adapters only in the last blocks makes streaming cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mvfm_ros.data.imageio import resize_depth, resize_image
from mvfm_ros.geometry.camera import scale_intrinsics
from mvfm_ros.geometry.projection import project_points
from mvfm_ros.geometry.sampling import to_unit
from mvfm_ros.lift.lifting import Lifting
from mvfm_ros.lift.view import LiftView
from mvfm_ros.models.checkpoint import backbone_fingerprint
from mvfm_ros.models.factory import build_model, load_model
from mvfm_ros.models.heads.segmentation import prompted_segment, spherical_kmeans
from mvfm_ros.models.mvfm import MultiViewModel
from mvfm_ros.models.trunk import TokenState, join_states
from mvfm_ros.pipeline.config import PipelineConfig
from mvfm_ros.pipeline.frame import Frame, ViewResult, WindowResult
from mvfm_ros.viz.colors import (
    label_colors,
    normal_colors,
    pca_colors,
    segment_colors,
    to_uint8,
)

LOG = logging.getLogger('mvfm_ros.pipeline')
DEMO_MODEL = 'mvfm_demo_vit.safetensors'
PROMPT_ID = 255


def demo_model_path() -> Path:
    """Path of the demo model shipped inside the package (see ``docs/results.md``)."""
    return Path(str(resources.files('mvfm_ros') / 'demo' / DEMO_MODEL))


def resolve_device(requested: str) -> torch.device:
    """Turn ``auto``/``cpu``/``cuda`` into a device; asking for CUDA without one is an error."""
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


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def model_identity(model: MultiViewModel, checkpoint: str | Path | None) -> dict[str, str]:
    """Return what tells a consumer which model made the features (window message fields)."""
    return {'backbone': model.config.backbone,
            'backbone_sha256': backbone_fingerprint(model.backbone_state_dict()),
            'checkpoint_sha256': file_sha256(checkpoint) if checkpoint else '',
            'pose_conditioning': model.config.pose_conditioning}


def load_pipeline_model(config: PipelineConfig) -> tuple[MultiViewModel, str]:
    """Load the model the settings name; returns it with a one-line description.

    No checkpoint and no weights: the shipped demo model. A checkpoint: it, with its backbone
    from ``weights`` when given. Only backbone + weights: the backbone with untrained
    (zero, identity) adapters, i.e. the base model's features.
    """
    pretrained = (True if config.weights == 'hf-cache' else config.weights) or None
    if config.checkpoint:
        model = load_model(config.checkpoint, pretrained=pretrained)
        return model, f"checkpoint '{config.checkpoint}' on {model.config.backbone}"
    if config.weights:
        if not config.backbone:
            raise ValueError('weights is set but backbone is empty: name the timm backbone')
        model = build_model(config.backbone, pretrained=pretrained)
        return model, (f"backbone '{config.backbone}' without trained adapters: outputs are the "
                       'base features (set checkpoint to a trained adapter checkpoint)')
    path = demo_model_path()
    if not path.is_file():
        raise FileNotFoundError(f'the shipped demo model is missing at {path}; reinstall '
                                'mvfm_ros or set checkpoint/weights')
    return load_model(path), (f'the shipped DEMO model ({path.name}: a small ViT trained on '
                              'generated scenes, not a foundation model); set checkpoint and '
                              'weights for real use')


@dataclass
class _Prepared:
    image: torch.Tensor  # (3, H, W) float in [0, 1] at the model input size, on the device
    intrinsics: torch.Tensor  # (3, 3) K at the model input size
    pose: torch.Tensor  # (4, 4)
    depth: torch.Tensor | None = None  # (H, W) metres at the model input size (0: unknown)
    tokens: TokenState | None = None
    ops: dict[str, np.ndarray] | None = None  # per-frame operator outputs, once computed


class Engine:
    """Run a multi-view model on windows of frames.

    Args:
        model: the multi-view model.
        device: where to run.
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto``.
        input_size: (H, W) model input (None: the model's training size, else 224 x 224).
        num_segments: k of the joint segmentation.
        checkpoint: the file the adapters came from (its SHA-256 identifies the model).

    Operators (2D operators run on every keyframe and lifted across windows) are loaded with
    :meth:`set_operators`.
    """

    def __init__(self, model: MultiViewModel, device: torch.device | str = 'cpu',
                 precision: str = 'auto', input_size: tuple[int, int] | None = None,
                 num_segments: int = 8, checkpoint: str | Path | None = None) -> None:
        """Move the model to the device and fix the input size."""
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        if precision == 'auto':
            precision = 'bf16' if self.device.type == 'cuda' else 'fp32'
        self.dtype = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}[precision]
        self.precision = precision
        size = input_size or model.config.input_size or (224, 224)
        p = model.patch_size
        if size[0] % p or size[1] % p:
            raise ValueError(f'input size {size[0]}x{size[1]} must be a multiple of the patch '
                             f'size {p}, e.g. {size[0] // p * p}x{size[1] // p * p}')
        self.input_size = (int(size[0]), int(size[1]))
        self.num_segments = num_segments
        self._cache: dict[int, _Prepared] = {}
        self._centres: torch.Tensor | None = None
        self.prompt: np.ndarray | None = None  # world point selecting an object
        self.identity = model_identity(model, checkpoint)
        self.timing: dict[str, float] = {}
        self.lifting = Lifting([])
        self.problems: list[tuple[str, str]] = []  # (kind, message) of the last run

    @classmethod
    def from_config(cls, config: PipelineConfig) -> tuple['Engine', str]:
        """Build from pipeline settings; returns the engine and the model description."""
        device = resolve_device(config.device)
        model, description = load_pipeline_model(config)
        size = (config.input_height, config.input_width) if config.input_height else None
        checkpoint = config.checkpoint or (None if config.weights else demo_model_path())
        engine = cls(model, device, config.precision, size, config.num_segments, checkpoint)
        engine.set_operators(config.operators)
        return engine, description

    def set_operators(self, specs: list[str]) -> None:
        """Load the operators named by ``specs`` (entry points or ``module:function``)."""
        from mvfm_ros.lift.operators import load_operators

        self.lifting = Lifting(load_operators(specs, self))

    # ---------------------------------------------------------------------------------- state
    def release(self) -> None:
        """Drop cached frames and move the model off the GPU (frees its memory)."""
        self._cache.clear()
        self._centres = None
        self.lifting.reset()
        self.model.to('cpu')
        if self.device.type == 'cuda':
            torch.cuda.empty_cache()

    def restore(self) -> None:
        """Move the model back to its device after :meth:`release`."""
        self.model.to(self.device)

    def _autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def prepare(self, frame: Frame) -> _Prepared:
        """Resize a frame to the model input and scale its intrinsics accordingly."""
        height, width = frame.image.shape[:2]
        image = torch.from_numpy(np.array(frame.image, dtype=np.uint8)).to(self.device)
        image = image.permute(2, 0, 1).float() / 255.0
        if (height, width) != self.input_size:
            image = resize_image(image, self.input_size)
        k = scale_intrinsics(torch.as_tensor(frame.intrinsics, dtype=torch.float32),
                             self.input_size[1] / width, self.input_size[0] / height)
        depth = None
        if frame.depth is not None:
            depth = torch.nan_to_num(torch.as_tensor(frame.depth, dtype=torch.float32,
                                                     device=self.device), nan=0.0,
                                     posinf=0.0, neginf=0.0).clamp_min(0)
            depth = resize_depth(depth, self.input_size)
        return _Prepared(image, k.to(self.device),
                         torch.as_tensor(frame.cam_to_world, dtype=torch.float32,
                                         device=self.device), depth)

    # -------------------------------------------------------------------------------- running
    @torch.inference_mode()
    def features(self, frames: list[Frame]) -> tuple[torch.Tensor, list[_Prepared]]:
        """Multi-view features ``(V, C, h, w)`` of a window, reusing cached per-frame work."""
        if len({f.uid for f in frames}) != len(frames) or any(f.uid < 0 for f in frames):
            raise ValueError('frames of a window need distinct non-negative uids')
        prepared = []
        for frame in frames:
            item = self._cache.get(frame.uid)
            if item is None:
                item = self.prepare(frame)
                with self._autocast():
                    item.tokens = self.model.frame_tokens(item.image[None])
                self._cache[frame.uid] = item
            prepared.append(item)
        keep = {f.uid for f in frames}
        for uid in [u for u in self._cache if u not in keep]:
            del self._cache[uid]
        state = join_states([p.tokens for p in prepared])
        with self._autocast():
            feats = self.model.window_features(
                state, torch.stack([p.intrinsics for p in prepared])[None],
                torch.stack([p.pose for p in prepared])[None])
        return feats[0].float(), prepared

    @torch.inference_mode()
    def run(self, frames: list[Frame], outputs: list[int] | None = None) -> WindowResult:
        """Process a window: features of every view, full results for the views ``outputs``.

        Args:
            frames: the window, oldest first, each with a distinct ``uid``.
            outputs: which views to make full results for (default all; the node asks only for
                the new keyframe). The window's ``new_view`` is the last of them.
        """
        start = time.perf_counter()
        self.problems = []
        feats, prepared = self.features(frames)
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)  # so the model's time is the model's
        model_done = time.perf_counter()
        outputs = list(range(len(frames))) if outputs is None else outputs
        # PCA and k-means are joint over the window (consistent colours and ids); the
        # full-resolution outputs are made only for the views that are returned.
        pca = pca_colors(feats)
        segments = self.segment(feats, prepared)[outputs]
        normals = None
        if self.model.normal_head is not None:
            normals = self.model.normals(feats[outputs][None], self.input_size)[0]
        images = torch.stack([prepared[i].image for i in outputs])
        seg_full = F.interpolate(segments[:, None].float(), size=self.input_size,
                                 mode='nearest')[:, 0].long()
        seg_colours = segment_colors(seg_full, images)
        features = feats.permute(0, 2, 3, 1).contiguous().cpu().numpy()
        lifted = self._lift(frames, prepared, feats, outputs)
        h, w = feats.shape[-2:]
        k_feats = np.stack([scale_intrinsics(
            torch.as_tensor(f.intrinsics, dtype=torch.float64), w / f.image.shape[1],
            h / f.image.shape[0]).numpy() for f in frames])
        results = []
        for j, i in enumerate(outputs):
            frame = frames[i]
            results.append(ViewResult(
                frame=frame,
                features=features[i],
                feature_intrinsics=k_feats[i],
                pca=to_uint8(pca[i]),
                normals=(normals[j].permute(1, 2, 0).contiguous().cpu().numpy()
                         if normals is not None else None),
                normals_color=(to_uint8(normal_colors(normals[j]))
                               if normals is not None else None),
                segments=seg_full[j].to(torch.uint8).cpu().numpy(),
                segments_color=to_uint8(seg_colours[j]),
                window=tuple(f.uid for f in frames),
                latency=0.0,
                ops=lifted[j],
                ops_color={name: _op_colors(value, self.lifting, name)
                           for name, value in lifted[j].items()},
            ))
        # Seconds of the last window: the model (features) and its outputs (heads, PCA,
        # k-means, images, arrays), measured in the same call (mvfm-bench reads them).
        self.timing = {'model_s': model_done - start,
                       'outputs_s': time.perf_counter() - model_done}
        return WindowResult(list(frames), features, k_feats, results,
                            outputs[-1] if outputs else len(frames) - 1)

    def frame_outputs(self, uid: int) -> dict[str, np.ndarray]:
        """Per-view (not lifted) operator outputs of a keyframe still in the window."""
        item = self._cache.get(uid)
        return dict(item.ops) if item is not None and item.ops is not None else {}

    def _lift(self, frames: list[Frame], prepared: list[_Prepared], feats: torch.Tensor,
              outputs: list[int]) -> list[dict[str, np.ndarray]]:
        """Operator outputs of the ``outputs`` views, lifted over the window."""
        if not self.lifting.operators:
            return [{} for _ in outputs]
        for frame, item in zip(frames, prepared):
            if item.ops is None:  # per-frame work, cached with the frame's tokens
                item.ops, errors = self.lifting.per_frame(to_uint8(item.image))
                self.problems += [('operator_errors', f'keyframe {frame.uid}: {e}')
                                  for e in errors]
        unit = F.normalize(feats.float(), dim=1)
        views = [LiftView(f.uid, p.intrinsics, p.pose, unit[i], p.depth)
                 for i, (f, p) in enumerate(zip(frames, prepared))]
        return self.lifting.lift(views, [p.ops for p in prepared], self.input_size, outputs)

    def segment(self, feats: torch.Tensor, prepared: list[_Prepared]) -> torch.Tensor:
        """Return segment ids ``(V, h, w)`` of a window.

        Joint k-means, warm-started from the previous window so ids stay stable over time; the
        prompted object (if any) gets :data:`PROMPT_ID`.
        """
        v, c, h, w = feats.shape
        points = feats.permute(0, 2, 3, 1).reshape(-1, c)
        labels, self._centres = spherical_kmeans(points, self.num_segments, iterations=6,
                                                 centres=self._centres)
        segments = labels.reshape(v, h, w)
        if self.prompt is not None:
            hit = self._project_prompt(prepared)
            if hit is not None:
                mask, _ = prompted_segment(feats, hit[0], hit[1])
                segments = torch.where(mask, torch.full_like(segments, PROMPT_ID), segments)
        return segments

    def _project_prompt(self, prepared: list[_Prepared]) -> tuple[int, torch.Tensor] | None:
        """Newest view in which the prompt point is in front of the camera and in the image."""
        point = torch.as_tensor(self.prompt, dtype=torch.float32, device=self.device)
        height, width = self.input_size
        for view in range(len(prepared) - 1, -1, -1):
            pixels, depth = project_points(point.view(1, 3), prepared[view].intrinsics,
                                           prepared[view].pose)
            u, v = pixels[0].tolist()
            if float(depth[0]) > 0 and -0.5 <= u <= width - 0.5 and -0.5 <= v <= height - 0.5:
                return view, to_unit(pixels[0], height, width)
        return None


def _op_colors(value: np.ndarray, lifting: Lifting, name: str) -> np.ndarray:
    """rgb8 picture of a lifted output: a fixed colour per id, normals as colours, else PCA."""
    kind = next(op.kind for op in lifting.operators if op.name == name)
    if kind == 'labels':
        return label_colors(value)
    tensor = torch.from_numpy(value).permute(2, 0, 1)
    if kind == 'normals':
        return to_uint8(normal_colors(tensor))
    if tensor.shape[0] == 1:
        low, high = float(tensor.min()), float(tensor.max())
        return to_uint8(((tensor - low) / max(high - low, 1e-12)).expand(3, -1, -1))
    return to_uint8(pca_colors(tensor[None])[0])
