"""Input subscriptions whose reliability follows their publishers (``input_reliability: auto``).

A best-effort subscription to a reliable publisher of large images loses frames even on one
machine (fragmented samples are dropped), and a reliable subscription receives nothing from a
best-effort publisher. So, as bag recorders do, each input subscribes reliably when every
publisher offers reliable delivery and best-effort otherwise, and re-checks as publishers come
and go; incompatible-QoS events are reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_policy_name_from_kind


def matched_reliability(publishers: list[Any]) -> ReliabilityPolicy:
    """Reliable when there are publishers and every one offers it; best-effort otherwise."""
    if publishers and all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE
                          for p in publishers):
        return ReliabilityPolicy.RELIABLE
    return ReliabilityPolicy.BEST_EFFORT


@dataclass
class Input:
    """One input topic and its current subscription."""

    topic: str
    msg_type: type
    callback: Callable[[Any], None]
    depth: int
    reliability: ReliabilityPolicy | None = None
    subscription: Any = None


class Inputs:
    """The node's input subscriptions, with fixed or publisher-matched reliability.

    Args:
        node: the node that owns the subscriptions.
        mode: ``auto``, ``reliable`` or ``best_effort``.
        depth: history depth.
        on_event: ``(kind, message)`` for log lines and counts (``qos_incompatible``).
    """

    def __init__(self, node: Any, mode: str, depth: int,
                 on_event: Callable[[str, str], None]) -> None:
        """Start with no inputs."""
        self.node = node
        self.mode = mode
        self.depth = depth
        self.on_event = on_event
        self.inputs: list[Input] = []

    def add(self, topic: str, msg_type: type, callback: Callable[[Any], None],
            min_depth: int = 1) -> None:
        """Subscribe to an input (history depth at least ``min_depth``)."""
        item = Input(topic, msg_type, callback, max(self.depth, min_depth))
        self.inputs.append(item)
        self._subscribe(item, self._wanted(item))

    def _wanted(self, item: Input) -> ReliabilityPolicy:
        if self.mode == 'reliable':
            return ReliabilityPolicy.RELIABLE
        if self.mode == 'best_effort':
            return ReliabilityPolicy.BEST_EFFORT
        resolved = self.node.resolve_topic_name(item.topic)
        return matched_reliability(self.node.get_publishers_info_by_topic(resolved))

    def _subscribe(self, item: Input, reliability: ReliabilityPolicy) -> None:
        if item.subscription is not None:
            self.node.destroy_subscription(item.subscription)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=item.depth,
                         reliability=reliability)
        name = self.node.resolve_topic_name(item.topic)

        def incompatible(info: Any, topic: str = name) -> None:
            policy = qos_policy_name_from_kind(info.last_policy_kind)
            self.on_event('qos_incompatible', f"input '{topic}': a publisher's QoS is "
                          f'incompatible with this subscription ({policy}); check '
                          f'`ros2 topic info -v {topic}` or set input_reliability')

        events = SubscriptionEventCallbacks(incompatible_qos=incompatible)
        item.subscription = self.node.create_subscription(
            item.msg_type, item.topic, item.callback, qos, event_callbacks=events)
        item.reliability = reliability

    def match(self) -> list[str]:
        """Re-match reliability to the current publishers (auto); returns what changed."""
        changed = []
        if self.mode != 'auto':
            return changed
        for item in self.inputs:
            wanted = self._wanted(item)
            if wanted != item.reliability:
                self._subscribe(item, wanted)
                changed.append(f"'{self.node.resolve_topic_name(item.topic)}' now "
                               f'{wanted.name.lower()}')
        return changed

    def describe(self) -> str:
        """One line: each input and its reliability."""
        return ', '.join(f'{self.node.resolve_topic_name(i.topic)} ({i.reliability.name.lower()})'
                         for i in self.inputs)

    def close(self) -> None:
        """Destroy every subscription."""
        for item in self.inputs:
            if item.subscription is not None:
                self.node.destroy_subscription(item.subscription)
        self.inputs = []
