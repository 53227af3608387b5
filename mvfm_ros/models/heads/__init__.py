"""Heads on top of multi-view features."""

from mvfm_ros.models.heads.normals import NormalHead, normal_loss
from mvfm_ros.models.heads.segmentation import (
    cluster_segments,
    otsu_threshold,
    prompted_segment,
    spherical_kmeans,
)

__all__ = ['NormalHead', 'cluster_segments', 'normal_loss', 'otsu_threshold', 'prompted_segment',
           'spherical_kmeans']
