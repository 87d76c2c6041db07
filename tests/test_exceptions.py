"""A task group's failure is told as the orderwatch error inside it."""

from __future__ import annotations

from orderwatch._exceptions import ConfigError, StateError, first_orderwatch_error


def test_the_first_orderwatch_error_is_found_in_nested_groups() -> None:
    state = StateError("state: disk full")
    group = BaseExceptionGroup(
        "tasks", [ValueError("other"), BaseExceptionGroup("inner", [state, ConfigError(["x"])])]
    )
    assert first_orderwatch_error(group) is state


def test_a_group_without_an_orderwatch_error_gives_none() -> None:
    assert first_orderwatch_error(BaseExceptionGroup("tasks", [KeyboardInterrupt()])) is None
