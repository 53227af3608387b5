"""Multi-view foundation models: frozen timm backbones with multi-view adapters.

Attributes load lazily (PEP 562), so the command-line tools in here answer ``--help`` without
PyTorch.
"""

from mvfm_ros._lazy import lazy_getattr

__getattr__ = lazy_getattr(__name__, {
    'CheckpointMismatchError': 'checkpoint',
    'MVFMConfig': 'config',
    'MultiViewModel': 'mvfm',
    'WeightsNotFoundError': 'weights',
    'build_model': 'factory',
    'load_model': 'factory',
})

__all__ = [
    'CheckpointMismatchError',
    'MVFMConfig',
    'MultiViewModel',
    'WeightsNotFoundError',
    'build_model',
    'load_model',
]
