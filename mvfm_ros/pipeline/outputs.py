"""The node's outputs, defined once: topic, message type, what it carries.

The node, the bag processor, the demo and the benchmark all publish or read exactly the rows of
:data:`OUTPUTS`; adding an output is one row here plus the array it shows on
:class:`~mvfm_ros.pipeline.frame.ViewResult`. Message types are ROS type names (strings), so
this module stays free of ROS imports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IMAGE = 'sensor_msgs/msg/Image'
CAMERA_INFO = 'sensor_msgs/msg/CameraInfo'
WINDOW = 'mvfm_ros/msg/FeatureWindow'
POINT_CLOUD = 'sensor_msgs/msg/PointCloud2'
OP = '{op}'  # placeholder in a topic: one topic per operator


@dataclass(frozen=True)
class Output:
    """One output topic.

    Attributes:
        topic: name under the output namespace (``mvfm/<topic>``; with several cameras the
            per-view outputs go to ``mvfm/<camera>/<topic>``); ``{op}`` stands for each
            operator's name.
        msgtype: ROS message type.
        source: the :class:`ViewResult` attribute it carries (empty for the window message).
        encoding: image encoding as documented (the published one follows the array, see
            :func:`image_encoding`).
        scope: ``view`` (one message per new keyframe), ``window`` (one per window for all
            cameras) or ``map`` (the world-frame map, at ``map_period``).
        description: what it is, for the README's topic table.
    """

    topic: str
    msgtype: str
    source: str
    encoding: str
    scope: str
    description: str

    @property
    def per_view(self) -> bool:
        """Whether there is one message per keyframe (namespaced per camera in a rig)."""
        return self.scope == 'view'

    def topics(self, operators: list[str]) -> list[str]:
        """Return the topic names of this output given the operator names."""
        return [self.topic.replace(OP, op) for op in operators] if OP in self.topic \
            else [self.topic]


OUTPUTS: tuple[Output, ...] = (
    Output('features', IMAGE, 'features', '32FC<C>', 'view',
           'multi-view features, one pixel per patch, C channels'),
    Output('features/camera_info', CAMERA_INFO, 'feature_intrinsics', '', 'view',
           'K scaled to the feature grid'),
    Output('features/pca', IMAGE, 'pca', 'rgb8', 'view',
           'PCA colours shared by the window'),
    Output('normals', IMAGE, 'normals', '32FC3', 'view',
           'unit normals, optical frame, model input size (models with a normal head)'),
    Output('normals/color', IMAGE, 'normals_color', 'rgb8', 'view',
           'normals as colours: x red, y green, z blue, (n + 1) / 2'),
    Output('segmentation', IMAGE, 'segments', 'mono8', 'view',
           'segment ids consistent across the window (255: the prompted object)'),
    Output('segmentation/color', IMAGE, 'segments_color', 'rgb8', 'view',
           'segment colours over the input'),
    Output(f'ops/{OP}', IMAGE, 'ops', '32SC1 / 32FC<C>', 'view',
           'operator output lifted across views and time: ids (-1: none) or a fused map'),
    Output(f'ops/{OP}/color', IMAGE, 'ops_color', 'rgb8', 'view',
           'the lifted operator output as colours (a fixed colour per id)'),
    Output('window', WINDOW, '', '', 'window',
           "the window's views computed together: features, grid intrinsics, poses, model"),
    Output('map', POINT_CLOUD, '', '', 'map',
           'voxel map in world_frame (use_depth): x, y, z, rgb, label, confidence, f0..fN'),
)

VIEW_OUTPUTS = tuple(o for o in OUTPUTS if o.per_view)
WINDOW_OUTPUT = next(o for o in OUTPUTS if o.scope == 'window')
MAP_OUTPUT = next(o for o in OUTPUTS if o.scope == 'map')


@dataclass(frozen=True)
class Wanted:
    """Which outputs have a consumer: the engine computes, and the edge renders, only those.

    Attributes:
        topics: output topics under the namespace (``features``, ``ops/superpixels/color``)
            that are wanted; None: every one.
        lift: lift the operators even when no ``ops/`` topic is wanted (the map uses them).
    """

    topics: frozenset[str] | None = None
    lift: bool = False

    @classmethod
    def everything(cls) -> 'Wanted':
        """Every output."""
        return cls(None)

    def __contains__(self, topic: str) -> bool:
        """Whether an output topic (name under the namespace) is wanted."""
        return self.topics is None or topic in self.topics

    def _any(self, prefix: str) -> bool:
        return self.topics is None or any(t.startswith(prefix) for t in self.topics)

    @property
    def normals(self) -> bool:
        """The normal head's output is wanted."""
        return self._any('normals')

    @property
    def segments(self) -> bool:
        """The joint segmentation is wanted."""
        return self._any('segmentation')

    @property
    def ops(self) -> bool:
        """Lifted operator outputs are wanted (a topic, or the map)."""
        return self.lift or self._any('ops/')


def output_topics(operators: list[str]) -> dict[str, Output]:
    """Every output topic (under the namespace) for these operator names -> its output row."""
    return {topic: output for output in OUTPUTS for topic in output.topics(operators)}


def image_encoding(array: np.ndarray) -> str:
    """Return the ROS encoding of an output array.

    uint8 ``(H, W, 3)``: rgb8; uint8 ``(H, W)``: mono8; uint16: 16UC1; int32: 32SC1; float32:
    ``32FC<C>``.
    """
    channels = 1 if array.ndim == 2 else array.shape[2]
    if array.dtype == np.int32 and channels == 1:
        return '32SC1'
    if array.dtype == np.float32:
        return f'32FC{channels}'
    if array.dtype == np.uint16 and channels == 1:
        return '16UC1'
    if array.dtype == np.uint8 and channels in (1, 3):
        return 'mono8' if channels == 1 else 'rgb8'
    raise ValueError(f'no ROS encoding for a {array.dtype} array of shape {array.shape}')


def topic_name(namespace: str, output: Output, camera: str, cameras: int,
               topic: str | None = None) -> str:
    """Full topic of an output (``topic``: its name with the operator filled in).

    Per-view outputs of a rig are namespaced by camera.
    """
    prefix = namespace.rstrip('/')
    if output.per_view and cameras > 1:
        prefix = f'{prefix}/{camera}'
    return f'{prefix}/{topic or output.topic}'


def markdown_table() -> str:
    """Return the README's output topic table (markdown)."""
    lines = ['| topic | type | |', '| --- | --- | --- |']
    for output in OUTPUTS:
        kind = output.msgtype.replace('/msg/', '/')
        if output.encoding:
            kind += f' `{output.encoding}`'
        topic = output.topic.replace(OP, '<name>')
        lines.append(f'| `mvfm/{topic}` | {kind} | {output.description} |')
    return '\n'.join(lines)
