"""Lifecycle transitions that cannot end the process, and that always say why they failed."""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from typing import Any

from rclpy.lifecycle import TransitionCallbackReturn


def guard_change_state(node: Any, problem: Callable[[str, str], None]) -> None:
    """Refuse transitions that are invalid in the current state instead of raising.

    rclpy's change_state service raises (and kills the process) for a transition id that is
    invalid in the current state (ros2/rclpy#1209): the transition is checked first and a
    refusal is a ``lifecycle_refused`` problem.
    """
    serve = node._service_change_state.callback

    def change_state(request: Any, response: Any) -> Any:
        # rclpy keeps the state machine private; its transitions list is what
        # get_available_transitions answers with: (id, label, start id, start, goal id, goal).
        machine = node._state_machine
        available = {t[0]: t[1] for t in machine.available_transitions}
        wanted = request.transition.label or request.transition.id
        valid = (request.transition.label in available.values() if request.transition.label
                 else request.transition.id in available)
        if not valid:
            problem('lifecycle_refused', f'transition {wanted!r} is not available in state '
                    f'{machine.current_state[1]!r}; available: {sorted(available.values())}')
            response.success = False
            return response
        return serve(request, response)

    node._service_change_state.callback = change_state


def says_why(transition: Callable[[Any, Any], TransitionCallbackReturn],
             ) -> Callable[[Any, Any], TransitionCallbackReturn]:
    """Make a transition callback log the reason of any failure, whatever raised.

    rclpy fails a transition whose callback raises without a word; this logs
    ``<transition> failed: <reason>`` (and the traceback at debug level), lets the node
    release what it had created (its ``abort_transition``) and returns FAILURE.
    """
    @functools.wraps(transition)
    def wrapped(node: Any, state: Any) -> TransitionCallbackReturn:
        name = transition.__name__.removeprefix('on_')
        try:
            return transition(node, state)
        except Exception as err:  # any reason: say it, clean up, stay where we were
            node.get_logger().error(f'{name} failed: {explain(err)}')
            node.get_logger().debug(traceback.format_exc())
            node.abort_transition(name)
            return TransitionCallbackReturn.FAILURE
    return wrapped


def explain(err: BaseException) -> str:
    """Return the reason of a failure, and the step that fixes a missing type support."""
    text = f'{type(err).__name__}: {err}' if not isinstance(
        err, (ValueError, RuntimeError, FileNotFoundError)) else str(err)
    lowered = text.lower()
    if 'type support' in lowered or 'typesupport' in lowered or 'mvfm_ros.msg' in lowered:
        text += (' -- the mvfm_ros interface libraries were not found: source the workspace '
                 'that built mvfm_ros (`source install/setup.bash` after colcon build) or, in a '
                 'development checkout, run `make interfaces` and start the node from .venv')
    return text
