"""The request budget's ledger: requests in the last hour, kept across restarts."""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import pytest

from orderwatch._quota import RequestLedger, SpendWindow, ledger_path

T0 = 1_800_000_000.0  # a minute boundary


def test_requests_count_for_an_hour_then_fall_out() -> None:
    window = SpendWindow()
    window.add(T0, 5)
    window.add(T0 + 1800, 3)
    assert window.spent(T0 + 1800) == 8
    assert window.spent(T0 + 3600 + 59) == 8  # the oldest minute counts whole
    assert window.spent(T0 + 3600 + 60) == 3
    assert window.spent(T0 + 7200) == 0


def test_no_hour_long_window_is_under_counted() -> None:
    """Whatever hour one looks at, the ledger saw at least the requests made in it."""
    window = SpendWindow()
    times = [T0 + 37.5 * i for i in range(400)]
    for t in times:
        window.add(t)
        made = sum(1 for s in times if t - 3600 < s <= t)
        assert window.spent(t) >= made


def test_the_count_survives_a_restart(tmp_path: Path) -> None:
    path = ledger_path(tmp_path / "orderwatch.db")
    ledger = RequestLedger(100, path)
    for i in range(40):
        ledger.record(T0 + i)
    ledger.close()
    again = RequestLedger(100, path)
    assert again.spent(T0 + 60) == 40
    assert again.remaining(T0 + 60) == 60


def test_a_crash_never_forgets_a_request_made(tmp_path: Path) -> None:
    """Written ahead, a lease at a time: after a kill the ledger counts at least what was
    made (and at most a lease more)."""
    path = tmp_path / "ledger.json"
    ledger = RequestLedger(1000, path, lease=16)
    for made in range(1, 60):
        ledger.record(T0)
        assert ledger.spent(T0) == made
        after_crash = RequestLedger(1000, path).spent(T0)
        assert made <= after_crash <= made + 16


def test_an_unreadable_ledger_starts_afresh_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ledger.json"
    path.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="orderwatch"):
        ledger = RequestLedger(10, path)
    assert ledger.spent(T0) == 0
    assert "cannot read" in caplog.text


def test_an_unwritable_ledger_counts_in_memory_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "missing-directory" / "ledger.json"
    ledger = RequestLedger(10, path, lease=1)
    with caplog.at_level(logging.WARNING, logger="orderwatch"):
        for _ in range(5):
            ledger.record(T0)
    assert ledger.spent(T0) == 5
    assert caplog.text.count("cannot write") == 1


@pytest.mark.anyio
async def test_a_spent_hour_holds_the_next_request_until_a_minute_leaves_it() -> None:
    now = [T0 + 30]
    ledger = RequestLedger(3, None)
    for _ in range(3):
        await ledger.acquire(lambda: now[0])
    assert ledger.spent(now[0]) == 3
    with anyio.move_on_after(0.2) as waited:
        await ledger.acquire(lambda: now[0])
    assert waited.cancelled_caught  # the fourth waits
    now[0] = T0 + 3660  # the first minute has left the window
    await ledger.acquire(lambda: now[0])
    assert ledger.spent(now[0]) == 1


@pytest.mark.anyio
async def test_a_request_waits_for_room_on_the_clock_it_is_given() -> None:
    """A full hour makes the next request wait until its oldest minute leaves the window; a
    simulation passes its own clock and sleep, and no real time passes."""
    now = [T0 + 30]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    ledger = RequestLedger(10, None)
    ledger.record(T0, 10)
    assert ledger.spent(T0 + 3599) == 10 and ledger.spent(T0 + 3660) == 0
    with anyio.fail_after(1):
        await ledger.acquire(lambda: now[0], sleep)
    assert now[0] >= T0 + 3600 and ledger.spent(now[0]) == 1
    assert len(slept) > 1  # a minute at a time
