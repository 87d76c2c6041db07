"""``Retry-After``: one reading, with one cap, for the Orders API and webhooks alike."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from orderwatch._ratelimit import MAX_RETRY_AFTER, retry_after

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
