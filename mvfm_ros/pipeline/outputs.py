"""The node's outputs, defined once: topic, message type, what it carries.

The node, the bag processor, the demo and the benchmark all publish or read exactly the rows of
:data:`OUTPUTS`; adding an output is one row here plus the array it shows on
:class:`~mvfm_ros.pipeline.frame.ViewResult`. Message types are ROS type names (strings), so
this module stays free of ROS imports.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from mvfm_ros.pipeline.frame import ViewResult

IMAGE = 'sensor_msgs/msg/Image'
CAMERA_INFO = 'sensor_msgs/msg/CameraInfo'
WINDOW = 'mvfm_ros/msg/FeatureWindow'


@dataclass(frozen=True)
class Output:
    """One output topic.

    Attributes:
        topic: name under the output namespace (``mvfm/<topic>``; with several cameras the
            per-view outputs go to ``mvfm/<camera>/<topic>``).
        msgtype: ROS message type.
        source: the :class:`ViewResult` attribute it carries (empty for the window message).
        encoding: image encoding as documented (the published one follows the array, see
            :func:`image_encoding`).
        per_view: one message per new keyframe (True) or one per window for all cameras.
        description: what it is, for the README's topic table.
    """

    topic: str
    msgtype: str
    source: str
    encoding: str
    per_view: bool
    description: str


OUTPUTS: tuple[Output, ...] = (
    Output('features', IMAGE, 'features', '32FC<C>', True,
           'multi-view features, one pixel per patch, C channels'),
    Output('features/camera_info', CAMERA_INFO, 'feature_intrinsics', '', True,
           'K scaled to the feature grid'),
    Output('features/pca', IMAGE, 'pca', 'rgb8', True,
           'PCA colours shared by the window'),
    Output('normals', IMAGE, 'normals', '32FC3', True,
           'unit normals, optical frame, model input size (models with a normal head)'),
    Output('normals/color', IMAGE, 'normals_color', 'rgb8', True,
           'normals as colours: x red, y green, z blue, (n + 1) / 2'),
    Output('segmentation', IMAGE, 'segments', 'mono8', True,
           'segment ids consistent across the window (255: the prompted object)'),
    Output('segmentation/color', IMAGE, 'segments_color', 'rgb8', True,
           'segment colours over the input'),
    Output('window', WINDOW, '', '', False,
           "the window's views computed together: features, grid intrinsics, poses, model"),
)

VIEW_OUTPUTS = tuple(o for o in OUTPUTS if o.per_view)
WINDOW_OUTPUT = next(o for o in OUTPUTS if not o.per_view)


def image_encoding(array: np.ndarray) -> str:
    """Return the ROS encoding of an output array.

    uint8 ``(H, W, 3)``: rgb8; uint8 ``(H, W)``: mono8; uint16: 16UC1; float32: ``32FC<C>``.
    """
    channels = 1 if array.ndim == 2 else array.shape[2]
    if array.dtype == np.float32:
        return f'32FC{channels}'
    if array.dtype == np.uint16 and channels == 1:
        return '16UC1'
    if array.dtype == np.uint8 and channels in (1, 3):
        return 'mono8' if channels == 1 else 'rgb8'
    raise ValueError(f'no ROS encoding for a {array.dtype} array of shape {array.shape}')


def view_messages(result: ViewResult) -> Iterator[tuple[Output, np.ndarray]]:
    """Yield the per-view outputs one result carries, with their arrays (absent ones skipped)."""
    for output in VIEW_OUTPUTS:
        value = getattr(result, output.source)
        if value is not None:
            yield output, value


def topic_name(namespace: str, output: Output, camera: str, cameras: int) -> str:
    """Full topic of an output: per-view outputs of a rig are namespaced by camera."""
    prefix = namespace.rstrip('/')
    if output.per_view and cameras > 1:
        prefix = f'{prefix}/{camera}'
    return f'{prefix}/{output.topic}'


def markdown_table() -> str:
    """Return the README's output topic table (markdown)."""
    lines = ['| topic | type | |', '| --- | --- | --- |']
    for output in OUTPUTS:
        kind = output.msgtype.replace('/msg/', '/')
        if output.encoding:
            kind += f' `{output.encoding}`'
        lines.append(f'| `mvfm/{output.topic}` | {kind} | {output.description} |')
    return '\n'.join(lines)
