"""Multi-view data: the sample type, a procedural scene generator, real-data loaders."""

from mvfm_ros.data.correspondence import (
    correspondence_mask,
    overlap_fraction,
    reproject,
    sample_correspondences,
    window_overlap,
)
from mvfm_ros.data.procedural import SceneConfig, SceneGenerator
from mvfm_ros.data.sample import MultiViewSample

__all__ = [
    'MultiViewSample',
    'SceneConfig',
    'SceneGenerator',
    'correspondence_mask',
    'overlap_fraction',
    'reproject',
    'sample_correspondences',
    'window_overlap',
]
