"""The operator plug-in interface: any function from one RGB image to a per-pixel output.

An operator is named in the ``operators`` setting either by an entry point of the group
``mvfm_ros.operators`` (a user package's), a built-in (``superpixels``, ``normals``) or
``module:function``. It is called with an ``(H, W, 3)`` uint8 RGB image at the model input size
and returns ``(H, W)`` integer labels or an ``(H, W)`` / ``(H, W, C)`` float map. Its kind is
read from the attribute ``kind`` of the object (``labels``, ``float`` or ``normals``: unit
vectors in the camera's optical frame, fused in the world frame) or, without it, from the dtype
of its first output. An object with a ``from_engine(engine)`` class method is built with the
inference engine (the built-in ``normals`` operator uses the model). See the README for wrapping
a torch module.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import numpy as np

GROUP = 'mvfm_ros.operators'
# The built-ins by name (also found where no package metadata is installed, e.g. colcon).
BUILTIN = {'superpixels': 'mvfm_ros.lift.builtin_ops:superpixels',
           'normals': 'mvfm_ros.lift.builtin_ops:ModelNormals'}
KINDS = ('labels', 'float', 'normals')
MAX_CHANNELS = 64
MAX_LABELS = 4096  # distinct ids per image: labels are regions, not one id per pixel
BUDGET_S = 5.0  # seconds an operator may take for one keyframe


class OperatorError(ValueError):
    """An operator that cannot be loaded, or whose output is unusable."""


@dataclass
class Operator:
    """A loaded operator, run so that nothing it does can harm the node.

    It gets its own copy of the image (writing into it changes nothing for others), runs on
    its own thread under a time budget (over budget: the keyframe is served without it and
    the operator is not called again until it returns), and whatever it raises, ``SystemExit``
    and ``KeyboardInterrupt`` included, or returns that is unusable (wrong shape or dtype,
    non-finite values, ids beyond int64, more than :data:`MAX_LABELS` distinct ids) is an
    :class:`OperatorError`.

    Attributes:
        name: topic-safe name (``mvfm/ops/<name>``).
        fn: the callable, image -> array.
        kind: ``labels``, ``float`` or ``normals``; None until the first output shows it.
        budget_s: seconds one call may take.
    """

    name: str
    fn: Callable[[np.ndarray], Any]
    kind: str | None = None
    budget_s: float = BUDGET_S
    _running: Future | None = None

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Run on an ``(H, W, 3)`` uint8 image; raise :class:`OperatorError` on a bad output."""
        if self._running is not None and not self._running.done():
            raise OperatorError(f'operator {self.name!r} is still busy with an earlier keyframe '
                                f'(over its {self.budget_s:g} s budget); skipped')
        self._running = _start(self.fn, np.array(image, copy=True))
        try:
            out = self._running.result(timeout=self.budget_s)
        except TimeoutError as err:
            raise OperatorError(f'operator {self.name!r} took more than its budget of '
                                f'{self.budget_s:g} s; the keyframe is served without it') \
                from err
        except BaseException as err:  # a user's operator can raise anything: report, go on
            raise OperatorError(f'operator {self.name!r} raised {err!r}') from None
        return self._check(out, image.shape[:2])

    def _check(self, out: Any, size: tuple[int, int]) -> np.ndarray:
        """Return the output as the node uses it, or raise :class:`OperatorError`."""
        if hasattr(out, 'detach'):  # a torch tensor
            out = out.detach().cpu().numpy()
        out = np.asarray(out)
        height, width = size
        if out.shape[:2] != (height, width) or out.ndim not in (2, 3) or (
                out.ndim == 3 and not 1 <= out.shape[2] <= MAX_CHANNELS):
            raise OperatorError(f'operator {self.name!r} returned shape {out.shape}; expected '
                                f'({height}, {width}) or ({height}, {width}, C), C <= '
                                f'{MAX_CHANNELS}')
        kind = self.kind or ('labels' if np.issubdtype(out.dtype, np.integer) else 'float')
        if kind == 'labels':
            if not np.issubdtype(out.dtype, np.integer) or out.ndim != 2:
                raise OperatorError(f'operator {self.name!r} is a label operator but returned '
                                    f'{out.dtype} of shape {out.shape}; expected (H, W) integers')
            if out.dtype == np.uint64 and out.size and out.max() > np.iinfo(np.int64).max:
                raise OperatorError(f'operator {self.name!r} returned ids up to {out.max()}, '
                                    'beyond int64; use ids below 2**63')
            labels = np.unique(out)
            if len(labels) > MAX_LABELS:
                raise OperatorError(f'operator {self.name!r} returned {len(labels)} distinct ids '
                                    f'in one image (at most {MAX_LABELS}): label regions, not '
                                    'pixels')
            self.kind = kind
            return out.astype(np.int64)
        if not np.issubdtype(out.dtype, np.floating) or not np.all(np.isfinite(out)):
            raise OperatorError(f'operator {self.name!r} returned {out.dtype} values that are '
                                'not all finite floats')
        if kind == 'normals' and (out.ndim != 3 or out.shape[2] != 3):
            raise OperatorError(f'operator {self.name!r} returns normals but its output has '
                                f'shape {out.shape}; expected (H, W, 3)')
        self.kind = kind
        return (out if out.ndim == 3 else out[..., None]).astype(np.float32)


def _start(fn: Callable[[np.ndarray], Any], image: np.ndarray) -> Future:
    """Call ``fn(image)`` on a thread of its own; the future holds its result or exception.

    Hand-written rather than a ThreadPoolExecutor: its worker threads are joined at
    interpreter exit, so an operator stuck forever would keep the node from ending.
    """
    future: Future = Future()

    def run() -> None:
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(image))
        except BaseException as err:  # SystemExit, KeyboardInterrupt too: the caller reports
            future.set_exception(err)

    threading.Thread(target=run, name='mvfm-operator', daemon=True).start()
    return future


def _resolve(spec: str) -> tuple[str, Any]:
    if spec in BUILTIN:
        return spec, _resolve(BUILTIN[spec])[1]
    if ':' in spec:
        module, _, attr = spec.partition(':')
        try:
            obj = importlib.import_module(module)
            for part in attr.split('.'):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as err:
            raise OperatorError(f'operator {spec!r} cannot be imported: {err}') from err
        return attr.split('.')[-1], obj
    found = {ep.name: ep for ep in entry_points(group=GROUP)}
    if spec not in found:
        raise OperatorError(f'no operator named {spec!r}: entry points of {GROUP} are '
                            f'{sorted(found)}; or give module:function')
    return spec, found[spec].load()


def load_operator(spec: str, engine: Any = None) -> Operator:
    """Load an operator from an entry point name or ``module:function``."""
    name, obj = _resolve(spec.strip())
    if hasattr(obj, 'from_engine'):
        try:
            obj = obj.from_engine(engine)
        except (ValueError, RuntimeError) as err:
            raise OperatorError(f'operator {spec!r} cannot be built: {err}') from err
    if not callable(obj):
        raise OperatorError(f'operator {spec!r} is not callable')
    kind = getattr(obj, 'kind', None)
    if kind is not None and kind not in KINDS:
        raise OperatorError(f'operator {spec!r} declares kind {kind!r}; expected one of {KINDS}')
    safe = ''.join(c if c.isalnum() or c == '_' else '_' for c in name) or 'operator'
    return Operator(safe, obj, kind)


def load_operators(specs: list[str], engine: Any = None) -> list[Operator]:
    """Load the operators a setting names (blank entries ignored; names must be distinct)."""
    operators = [load_operator(s, engine) for s in specs if s.strip()]
    names = [o.name for o in operators]
    if len(set(names)) != len(names):
        raise OperatorError(f'operator names must be distinct, got {names}')
    return operators
