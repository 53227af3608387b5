"""Heads on top of multi-view features."""

from mvfm_ros.models.heads.segmentation import cluster_segments, otsu_threshold, prompted_segment

__all__ = ['cluster_segments', 'otsu_threshold', 'prompted_segment']
