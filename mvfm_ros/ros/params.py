"""The node's ROS parameters, made from the one settings table.

Every field of :class:`~mvfm_ros.pipeline.settings.Settings` is declared with its description
and bounds; values are checked by the settings themselves, so a value typed as ROS users type
it (``tf_timeout:=1``) is accepted and a wrong one is refused with the package's message,
never an rclpy traceback. Settings fixed at launch (which operators may run) are read-only:
whatever a DDS peer sets at run time cannot make the node import code.
"""

from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.parameter import Parameter

from mvfm_ros.pipeline.settings import WHEN_LAUNCH, Settings


def declare(node: Any) -> dict[str, Any]:
    """Declare every setting on ``node``; returns the launch-time values of every setting."""
    defaults = Settings.defaults()
    for name, spec in Settings.specs().items():
        constraints = f'{spec.low:g} to {spec.high:g}' if spec.low is not None else (
            ', '.join(spec.choices) if spec.choices else '')
        descriptor = ParameterDescriptor(
            description=spec.help, additional_constraints=constraints,
            read_only=spec.when == WHEN_LAUNCH, dynamic_typing=True)
        # An empty list says nothing of its element type: leave it unset (the default).
        default = None if defaults[name] == [] else defaults[name]
        node.declare_parameter(name, default, descriptor)
    return values(node)


def values(node: Any) -> dict[str, Any]:
    """Every setting's current parameter value (None where unset: the default)."""
    return {name: node.get_parameter_or(name, Parameter(name, value=None)).value
            for name in Settings.specs()}


def settings(node: Any, launch: dict[str, Any], changes: dict[str, Any] | None = None,
             ) -> Settings:
    """Return the node's settings: its parameters (plus ``changes``), launch-only ones as launched.

    Raises:
        mvfm_ros.pipeline.settings.SettingsError: a value the node cannot run with.
    """
    current = {**values(node), **(changes or {})}
    for name, spec in Settings.specs().items():
        if spec.when == WHEN_LAUNCH:
            current[name] = launch[name]
    return Settings.from_values(current)
