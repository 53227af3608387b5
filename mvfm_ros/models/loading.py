"""The one place that turns the settings' model fields into a model, and says which it is.

The node, ``mvfm-bag``, ``mvfm-eval``, ``mvfm-bench`` and the demo all load their model here
(:func:`load_configured_model`), and describe it the same way (:func:`model_identity`: the
backbone, SHA-256 of its weights and of the adapter checkpoint, the pose conditioning).
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

from mvfm_ros.models.checkpoint import backbone_fingerprint
from mvfm_ros.models.factory import build_model, load_model
from mvfm_ros.models.mvfm import MultiViewModel

DEMO_MODEL = 'mvfm_demo_vit.safetensors'


def demo_model_path() -> Path:
    """Path of the demo model shipped inside the package (see ``docs/results.md``)."""
    return Path(str(resources.files('mvfm_ros') / 'demo' / DEMO_MODEL))


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

    No checkpoint and no weights: the shipped demo model. A checkpoint: it, with its backbone
    from ``weights`` when given. Only backbone + weights: the backbone with untrained (zero,
    identity) adapters, i.e. the base model's features.

    Returns:
        The model, a one-line description for logs, and the checkpoint file that identifies
        its adapters (None for a bare backbone).
    """
    pretrained = (True if weights == 'hf-cache' else weights) or None
    if checkpoint:
        model = load_model(checkpoint, pretrained=pretrained)
        return model, f"checkpoint '{checkpoint}' on {model.config.backbone}", Path(checkpoint)
    if weights:
        if not backbone:
            raise ValueError('weights is set but backbone is empty: name the timm backbone')
        model = build_model(backbone, pretrained=pretrained)
        return model, (f"backbone '{backbone}' without trained adapters: outputs are the base "
                       'features (set checkpoint to a trained adapter checkpoint)'), None
    path = demo_model_path()
    if not path.is_file():
        raise FileNotFoundError(f'the shipped demo model is missing at {path}; reinstall '
                                'mvfm_ros or set checkpoint/weights')
    return load_model(path), (f'the shipped DEMO model ({path.name}: a small ViT trained on '
                              'generated scenes, not a foundation model); set checkpoint and '
                              'weights for real use'), path
