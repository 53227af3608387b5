"""Multi-view foundation models: frozen timm backbones with multi-view adapters."""

from mvfm_ros.models.checkpoint import CheckpointMismatchError
from mvfm_ros.models.config import MVFMConfig
from mvfm_ros.models.factory import build_model, load_model
from mvfm_ros.models.mvfm import MultiViewModel
from mvfm_ros.models.weights import WeightsNotFoundError

__all__ = [
    'CheckpointMismatchError',
    'MVFMConfig',
    'MultiViewModel',
    'WeightsNotFoundError',
    'build_model',
    'load_model',
]
