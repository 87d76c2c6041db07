"""The request budget: slots ``1 / max_rps`` apart, in the order asked, held off on 429; and
``Retry-After``: one reading, with one cap, for the Orders API and webhooks alike."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from types import SimpleNamespace

import anyio
import pytest

from orderwatch import _ratelimit
from orderwatch._ratelimit import MAX_RETRY_AFTER, RateLimiter, retry_after


class Clock:
    """The limiter's view of anyio: a hand-moved clock, and sleeps that are recorded and,
    when ``sleeping_moves_time``, move it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.sleeping_moves_time = True

    def current_time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 9))
        if self.sleeping_moves_time:
            self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(
        _ratelimit, "anyio", SimpleNamespace(current_time=fake.current_time, sleep=fake.sleep)
    )
    return fake


@pytest.mark.anyio
async def test_requests_in_a_row_are_spaced_evenly(clock: Clock) -> None:
    limiter = RateLimiter(4)
    granted = []
    for _ in range(4):
        await limiter.acquire()
        granted.append(clock.now)
    assert granted == [0.0, 0.25, 0.5, 0.75]


@pytest.mark.anyio
async def test_tasks_asking_at_once_get_consecutive_slots_in_order(clock: Clock) -> None:
    clock.sleeping_moves_time = False  # all four ask at the same instant
    limiter = RateLimiter(10)
    for _ in range(4):
        await limiter.acquire()
    assert clock.sleeps == [0.1, 0.2, 0.3]  # the first goes at once


@pytest.mark.anyio
async def test_idle_time_is_not_saved_up_for_a_burst(clock: Clock) -> None:
    limiter = RateLimiter(2)
    await limiter.acquire()
    clock.now = 60.0
    await limiter.acquire()
    await limiter.acquire()
    assert clock.sleeps == [0.5]
    assert clock.now == 60.5


@pytest.mark.anyio
async def test_hold_off_gives_no_slot_until_the_wait_is_over(clock: Clock) -> None:
    limiter = RateLimiter(1)
    await limiter.acquire()  # slot 0; the next would be at 1
    limiter.hold_off(30)  # 429, Retry-After: 30
    await limiter.acquire()
    assert clock.now == 30.0
    limiter.hold_off(0.5)  # a shorter wait never brings the next slot forward
    await limiter.acquire()
    assert clock.now == 31.0


@pytest.mark.anyio
async def test_pacing_holds_on_the_real_clock() -> None:
    limiter = RateLimiter(100)
    started = anyio.current_time()
    for _ in range(6):
        await limiter.acquire()
    assert anyio.current_time() - started >= 0.05 - 1e-3


NOW = 1_700_000_000.0


def http_date(moment: float) -> str:
    return format_datetime(datetime.fromtimestamp(moment, UTC), usegmt=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30", 30.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        (http_date(NOW + 90), 90.0),
        ("Tue, 14 Nov 2023 22:13:50", 30.0),  # an obsolete date without a zone is GMT
        (http_date(NOW - 60), 0.0),  # a date already past: no wait
    ],
)
def test_retry_after_reads_seconds_and_http_dates(value: str, expected: float) -> None:
    assert retry_after(value, NOW) == expected


@pytest.mark.parametrize("value", ["86400", http_date(NOW + 86400)])
def test_a_retry_after_beyond_five_minutes_is_capped(value: str) -> None:
    assert MAX_RETRY_AFTER == 300.0
    assert retry_after(value, NOW) == MAX_RETRY_AFTER


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "Tue, 99 Nov 2023"])
def test_an_absent_or_unreadable_retry_after_asks_for_no_wait(value: str | None) -> None:
    assert retry_after(value, NOW) is None
