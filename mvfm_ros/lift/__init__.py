"""Lifting 2D operators to outputs consistent across views and time, and the world-frame map.

``operators``: the plug-in interface (any function from an RGB image to labels or a float map)
and the built-in operators. ``correspond``: which pixels of two views see the same surface
(from depth when given, else from the multi-view features, gated by the window's geometry).
``labels``: per-view label images made into ids shared across views and stable over time.
``fuse``: float maps averaged over corresponding pixels. ``voxel_map``: a bounded world-frame
voxel map of the lifted outputs. No ROS imports.
"""
