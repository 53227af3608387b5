"""Checks around bag processing: what a bag holds, paths that must not be destroyed, errors.

A missing topic, an output that exists, a ``--ply`` that would overwrite a file (the input
bag's included) or land in a missing folder are refused before any work; a damaged bag is an
error naming the file and how far it was read.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcap.records import Chunk
from mcap.stream_reader import StreamReader
from rosbags.highlevel import AnyReader

from mvfm_ros.pipeline.frame import FrameError
from mvfm_ros.pipeline.settings import SettingsError

LOG = logging.getLogger('mvfm_ros.bag')


class BagError(RuntimeError):
    """The bag cannot be processed as asked (missing topic, nothing to output, ...)."""


class ProcessingError(RuntimeError):
    """Running the pipeline on a frame of the bag failed (not the bag's fault)."""


def absolute(topic: str) -> str:
    """Return a topic name as recorded in a bag (relative names are under the root namespace)."""
    return topic if topic.startswith('/') else '/' + topic


@dataclass
class BagReport:
    """What happened, for the summary line and tests."""

    images: int = 0
    results: int = 0
    skipped: Counter = field(default_factory=Counter)
    stats: dict[str, float] = field(default_factory=dict)
    map_voxels: int = 0

    def skip(self, kind: str, what: str, time_ns: int, reason: object) -> None:
        """Count a problem under ``kind``; the first of each kind is logged."""
        if self.skipped[kind] == 0:
            LOG.warning('%s at %.3f s: [%s] %s (further ones counted)', what, time_ns / 1e9,
                        kind, reason)
        self.skipped[kind] += 1


def connections(reader: AnyReader, topic: str, types: tuple[str, ...]) -> list[Any]:
    found = [c for c in reader.connections if c.topic == topic]
    if not found:
        available = sorted({f'{c.topic} ({c.msgtype})' for c in reader.connections})
        raise BagError(f"topic '{topic}' is not in the bag; topics: "
                       f"{', '.join(available) or 'none (an empty bag)'}")
    wrong = [c.msgtype for c in found if c.msgtype not in types]
    if wrong:
        raise BagError(f"topic '{topic}' has type {wrong[0]}, expected {' or '.join(types)}")
    return found


def check_paths(source: Path, output: Path, options: Any) -> None:
    """Refuse, before any work, what would destroy or half-write something.

    ``options`` is the run's :class:`~mvfm_ros.messages.bag.BagOptions`.
    """
    if not source.exists():
        raise FileNotFoundError(f"input bag '{source}' does not exist")
    if output.exists():
        raise BagError(f"output '{output}' exists; remove it or choose another path")
    if options.ply:
        ply = Path(options.ply)
        if not options.depth_topic:
            raise BagError('--ply writes the map, which is built from depth: give --depth-topic')
        if ply.exists() and not options.overwrite:
            raise BagError(f"'{ply}' exists; pass --overwrite to replace it")
        if ply.exists() and not ply.is_file():
            raise BagError(f"'{ply}' is not a file")
        if not ply.parent.is_dir():
            raise BagError(f"folder '{ply.parent}' of --ply does not exist")
        inputs = [source.resolve()] + [p.resolve() for p in source.glob('*')] \
            if source.is_dir() else [source.resolve()]
        if ply.resolve() in inputs or source.resolve() in ply.resolve().parents:
            raise BagError(f"--ply '{ply}' is inside the input bag; choose another path")
    for camera in options.settings.cameras:
        topics = options.topics(camera)
        if 'depth' in topics and topics['depth'] in (topics['image'], topics['camera_info']):
            raise BagError(f"--depth-topic '{topics['depth']}' is the image or camera_info "
                           'topic; give the registered depth image topic')


@contextlib.contextmanager
def read_errors(source: Path, report: BagReport) -> Iterator[None]:
    """Turn a reader failure (truncated or corrupt container) into a clear BagError."""
    try:
        yield
    except (BagError, ProcessingError, FrameError, SettingsError, KeyboardInterrupt):
        raise
    except Exception as err:  # rosbags raises many types for a damaged file
        raise BagError(f"cannot read bag '{source}' after {report.images} images: "
                       f'{type(err).__name__}: {err} (truncated or corrupted?)') from err


def warn_without_checksums(source: Path) -> None:
    """Say so when an MCAP bag carries no checksums (rosbags verifies chunk CRCs it has)."""
    files = [source] if source.is_file() else sorted(source.glob('*.mcap'))
    for path in files:
        if path.suffix != '.mcap':
            continue
        with open(path, 'rb') as handle:
            try:
                records = StreamReader(handle, skip_magic=False).records
                crcs = [r.uncompressed_crc for r in records if isinstance(r, Chunk)]
            except Exception:  # a damaged file: the reader says what is wrong
                return
        if not any(crcs):
            LOG.warning("bag '%s' has no chunk checksums: a corrupted payload is only caught "
                        'if it fails to decode or is refused as bad input', path.name)
