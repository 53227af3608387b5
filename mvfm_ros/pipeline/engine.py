"""The inference engine: the model and its heads on a window of posed frames.

Streaming: the blocks before the model's first adapter see one frame at a time, so their output
is computed once per keyframe and kept with it in the window (:class:`Prepared`). When the
window slides by one keyframe only the new frame runs those blocks; the remaining blocks (with
the adapters) run on the whole window. With adapters after every block (the paper) nothing but
the patch embedding is cached; placing adapters only in the last blocks makes streaming cheap.

The engine holds no window state: the window it is given (:class:`~.window.Window`) holds the
cached work, the lifting memory, the k-means centres and the prompt. What it computes beyond
the features (normals, segments, operators) is only what a consumer asked for
(:class:`~.outputs.Wanted`); colour images are made at the output edge (:mod:`.render`).
"""

from __future__ import annotations

import time
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
from mvfm_ros.models.device import autocast, resolve_device, resolve_precision
from mvfm_ros.models.heads.segmentation import prompted_segment, spherical_kmeans
from mvfm_ros.models.loading import load_configured_model, model_identity
from mvfm_ros.models.mvfm import MultiViewModel
from mvfm_ros.models.trunk import join_states
from mvfm_ros.pipeline.frame import Frame, ViewResult, WindowResult
from mvfm_ros.pipeline.outputs import Wanted
from mvfm_ros.pipeline.settings import Settings
from mvfm_ros.pipeline.window import Prepared, Window
from mvfm_ros.viz.colors import to_uint8

PROMPT_ID = 255


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
        self.precision = resolve_precision(precision, self.device)
        size = input_size or model.config.input_size or (224, 224)
        p = model.patch_size
        if size[0] % p or size[1] % p:
            raise ValueError(f'input size {size[0]}x{size[1]} must be a multiple of the patch '
                             f'size {p}, e.g. {size[0] // p * p}x{size[1] // p * p}')
        self.input_size = (int(size[0]), int(size[1]))
        self.num_segments = num_segments
        self.identity = model_identity(model, checkpoint)
        self.timing: dict[str, float] = {}
        self.lifting = Lifting([])
        self.problems: list[tuple[str, str]] = []  # (kind, message) of the last run

    @classmethod
    def from_settings(cls, settings: Settings) -> tuple['Engine', str]:
        """Build from settings (model, device, operators); returns it and the model's line."""
        device = resolve_device(settings.device)
        model, description, checkpoint = load_configured_model(
            settings.checkpoint, settings.weights, settings.backbone)
        size = (settings.input_height, settings.input_width) if settings.input_height else None
        engine = cls(model, device, settings.precision, size, settings.num_segments, checkpoint)
        engine.set_operators(settings.operators, settings.operator_budget)
        return engine, description

    def set_operators(self, specs: list[str], budget_s: float | None = None) -> None:
        """Load the operators named by ``specs`` (built-ins, entry points, ``module:function``).

        Whether ``module:function`` may be named is the settings' decision
        (``allow_module_operators``), made before this is called. ``budget_s``: seconds each
        may take per keyframe (default :data:`mvfm_ros.lift.operators.BUDGET_S`).
        """
        from mvfm_ros.lift.operators import load_operators

        operators = load_operators(specs, self)
        for op in operators:
            op.budget_s = budget_s or op.budget_s
        self.lifting = Lifting(operators)

    # ---------------------------------------------------------------------------------- device
    def release(self) -> None:
        """Move the model off the GPU (frees its memory)."""
        self.model.to('cpu')
        if self.device.type == 'cuda':
            torch.cuda.empty_cache()

    def restore(self) -> None:
        """Move the model back to its device after :meth:`release`."""
        self.model.to(self.device)

    def prepare(self, frame: Frame) -> Prepared:
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
        return Prepared(image, k.to(self.device),
                        torch.as_tensor(frame.cam_to_world, dtype=torch.float32,
                                        device=self.device), depth)

    # -------------------------------------------------------------------------------- running
    @torch.inference_mode()
    def features(self, window: Window) -> tuple[torch.Tensor, list[Prepared]]:
        """Multi-view features ``(V, C, h, w)`` of a window; per-frame work done once per frame."""
        frames = window.frames
        if len({f.uid for f in frames}) != len(frames) or any(f.uid < 0 for f in frames):
            raise ValueError('frames of a window need distinct non-negative uids')
        for keyframe in window.keyframes:
            if keyframe.prepared is None:
                item = self.prepare(keyframe.frame)
                with autocast(self.device, self.precision):
                    item.tokens = self.model.frame_tokens(item.image[None])
                keyframe.prepared = item
        prepared = [k.prepared for k in window.keyframes]
        state = join_states([p.tokens for p in prepared])
        with autocast(self.device, self.precision):
            feats = self.model.window_features(
                state, torch.stack([p.intrinsics for p in prepared])[None],
                torch.stack([p.pose for p in prepared])[None])
        return feats[0].float(), prepared

    @torch.inference_mode()
    def run(self, window: Window, outputs: list[int] | None = None,
            wanted: Wanted | None = None) -> WindowResult:
        """Process a window: features of every view, results for the views ``outputs``.

        Args:
            window: the window, oldest first, each keyframe with a distinct ``uid``.
            outputs: which views to make results for (default all; the node asks only for the
                new keyframe). The window's ``new_view`` is the last of them.
            wanted: what has a consumer (default: everything); normals, segments and lifted
                operators nobody wants are not computed.
        """
        wanted = wanted or Wanted.everything()
        start = time.perf_counter()
        self.problems = []
        frames = window.frames
        feats, prepared = self.features(window)
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)  # so the model's time is the model's
        model_done = time.perf_counter()
        outputs = list(range(len(frames))) if outputs is None else outputs
        # k-means is joint over the window (consistent ids); full-resolution outputs are made
        # only for the views that are returned.
        segments = normals = None
        if wanted.segments:
            segments = self.segment(feats, prepared, window)[outputs]
            segments = F.interpolate(segments[:, None].float(), size=self.input_size,
                                     mode='nearest')[:, 0].to(torch.uint8).cpu().numpy()
        if wanted.normals and self.model.normal_head is not None:
            normals = self.model.normals(feats[outputs][None], self.input_size)[0]
            normals = normals.permute(0, 2, 3, 1).contiguous().cpu().numpy()
        features = feats.permute(0, 2, 3, 1).contiguous().cpu().numpy()
        lifted = (self._lift(window, prepared, feats, outputs) if wanted.ops
                  else [{} for _ in outputs])
        h, w = feats.shape[-2:]
        k_feats = np.stack([scale_intrinsics(
            torch.as_tensor(f.intrinsics, dtype=torch.float64), w / f.image.shape[1],
            h / f.image.shape[0]).numpy() for f in frames])
        results = [ViewResult(frame=frames[i], features=features[i],
                              feature_intrinsics=k_feats[i], model_image=prepared[i].image,
                              normals=None if normals is None else normals[j],
                              segments=None if segments is None else segments[j],
                              window=tuple(f.uid for f in frames), latency=0.0, ops=lifted[j])
                   for j, i in enumerate(outputs)]
        # Seconds of the last window: the model (features) and its outputs (heads, k-means,
        # operators and lifting, arrays), measured in the same call (mvfm-bench reads them).
        self.timing = {'model_s': model_done - start,
                       'outputs_s': time.perf_counter() - model_done}
        return WindowResult(list(frames), features, k_feats, results,
                            outputs[-1] if outputs else len(frames) - 1,
                            op_kinds={op.name: op.kind for op in self.lifting.operators})

    def _lift(self, window: Window, prepared: list[Prepared], feats: torch.Tensor,
              outputs: list[int]) -> list[dict[str, np.ndarray]]:
        """Operator outputs of the ``outputs`` views, lifted over the window."""
        if not self.lifting.operators:
            return [{} for _ in outputs]
        for frame, item in zip(window.frames, prepared):
            if item.ops is None:  # per-frame work, kept with the frame's tokens
                item.ops, errors = self.lifting.per_frame(to_uint8(item.image))
                self.problems += [('operator_errors', f'keyframe {frame.uid}: {e}')
                                  for e in errors]
        unit = F.normalize(feats.float(), dim=1)
        views = [LiftView(f.uid, p.intrinsics, p.pose, unit[i], p.depth)
                 for i, (f, p) in enumerate(zip(window.frames, prepared))]
        return self.lifting.lift(views, [p.ops for p in prepared], self.input_size, outputs,
                                 window.lift)

    def segment(self, feats: torch.Tensor, prepared: list[Prepared],
                window: Window) -> torch.Tensor:
        """Return segment ids ``(V, h, w)`` of a window.

        Joint k-means, warm-started from the window's previous centres so ids stay stable over
        time; the prompted object (if any) gets :data:`PROMPT_ID`.
        """
        v, c, h, w = feats.shape
        points = feats.permute(0, 2, 3, 1).reshape(-1, c)
        labels, window.centres = spherical_kmeans(points, self.num_segments, iterations=6,
                                                  centres=window.centres)
        segments = labels.reshape(v, h, w)
        if window.prompt is not None:
            hit = self._project_prompt(window.prompt, prepared)
            if hit is not None:
                mask, _ = prompted_segment(feats, hit[0], hit[1])
                segments = torch.where(mask, torch.full_like(segments, PROMPT_ID), segments)
        return segments

    def _project_prompt(self, prompt: np.ndarray,
                        prepared: list[Prepared]) -> tuple[int, torch.Tensor] | None:
        """Newest view in which the prompt point is in front of the camera and in the image."""
        point = torch.as_tensor(prompt, dtype=torch.float32, device=self.device)
        height, width = self.input_size
        for view in range(len(prepared) - 1, -1, -1):
            pixels, depth = project_points(point.view(1, 3), prepared[view].intrinsics,
                                           prepared[view].pose)
            u, v = pixels[0].tolist()
            if float(depth[0]) > 0 and -0.5 <= u <= width - 0.5 and -0.5 <= v <= height - 0.5:
                return view, to_unit(pixels[0], height, width)
        return None
