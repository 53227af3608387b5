"""Colour maps and figures for features, normals and segments (node, demo, evaluation)."""

from mvfm_ros.viz.colors import normal_colors, palette, pca_colors, segment_colors, to_uint8

__all__ = ['normal_colors', 'palette', 'pca_colors', 'segment_colors', 'to_uint8']
