"""The error tree drawn in ``_exceptions``' docstring is the tree the classes form, and a task
group's failure is told as the orderwatch error inside it."""

from __future__ import annotations

import re

import orderwatch
from orderwatch import _exceptions
from orderwatch._exceptions import (
    ConfigError,
    RateLimitedError,
    StateError,
    first_orderwatch_error,
)


def drawn_parents() -> dict[str, str | None]:
    """``class name → parent name`` as the docstring draws them (depth = column of the name)."""
    assert _exceptions.__doc__ is not None
    parents: dict[str, str | None] = {}
    path: list[tuple[int, str]] = []
    for line in _exceptions.__doc__.splitlines():
        match = re.match(r"^([\s│├└─]*)([A-Z]\w+Error)\b", line)
        if not match:
            continue
        column = len(match.group(1))
        while path and path[-1][0] >= column:
            path.pop()
        parents[match.group(2)] = path[-1][1] if path else None
        path.append((column, match.group(2)))
    return parents


def test_the_drawn_tree_is_the_class_tree_and_every_error_is_public() -> None:
    drawn = drawn_parents()
    assert set(drawn) == {name for name in _exceptions.__all__ if name.endswith("Error")}
    for name, parent in drawn.items():
        cls = getattr(_exceptions, name)
        assert getattr(orderwatch, name) is cls
        expected = Exception if parent is None else getattr(_exceptions, parent)
        assert cls.__bases__ == (expected,), name


def test_a_config_error_keeps_each_problem_and_says_them_all_in_one_line() -> None:
    error = ConfigError(["api.base_url: field required", "poll.interval: must be > 0"])
    assert error.problems == ("api.base_url: field required", "poll.interval: must be > 0")
    assert str(error) == "api.base_url: field required; poll.interval: must be > 0"


def test_a_rate_limit_carries_the_wait_the_server_asked_for() -> None:
    assert RateLimitedError("list: rate limited (HTTP 429)", 30.0).retry_after == 30.0


def test_the_first_orderwatch_error_is_found_in_nested_groups() -> None:
    state = StateError("state: disk full")
    group = BaseExceptionGroup(
        "tasks", [ValueError("other"), BaseExceptionGroup("inner", [state, ConfigError(["x"])])]
    )
    assert first_orderwatch_error(group) is state


def test_a_group_without_an_orderwatch_error_gives_none() -> None:
    assert first_orderwatch_error(BaseExceptionGroup("tasks", [KeyboardInterrupt()])) is None
