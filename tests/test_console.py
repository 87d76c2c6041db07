"""The console's shell on a real state file and a fixed clock: watcher notices become events for
the right destinations, once per outage across a restart; a summary is committed once per
period across a restart."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from orderwatch._console import Console
from orderwatch._dispatch import Dispatcher
from orderwatch._settings import Settings
from orderwatch._sinks import Destination
from orderwatch._store import Store, open_store

from .conftest import round_trips

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def settings(**notify: object) -> Settings:
    return Settings(
        api={"base_url": "http://127.0.0.1:1", "token": "t"},  # type: ignore[arg-type]
        notify={
            "routes": [
                {"name": "ops", "urls": ["json://127.0.0.1:1/"]},
                {"name": "chat", "urls": ["json://127.0.0.1:2/"]},
            ],
            **notify,
        },  # type: ignore[arg-type]
    )


DESTINATIONS = [
    Destination(route="ops", key="k-ops", masked="json://…", url="json://127.0.0.1:1/"),
    Destination(route="chat", key="k-chat", masked="json://…", url="json://127.0.0.1:2/"),
]


def console(store: Store, config: Settings, clock: Clock) -> Console:
    return Console(store, config, DESTINATIONS, Dispatcher(store, DESTINATIONS), clock=clock)


def notices(store: Store) -> list[tuple[str, str, str]]:
    return [
        (d.route, d.stored.event.note.case, d.stored.event.kind)
        for d in store.pending_deliveries()
        if d.stored.event.note
    ]  # type: ignore[union-attr]


async def test_an_api_outage_is_announced_once_to_every_route_even_across_a_restart(
    tmp_path: Path,
) -> None:
    clock = Clock(1_767_600_000.0)
    store = open_store(tmp_path / "s.db")
    watcher = console(store, settings(), clock)
    for _ in range(20):  # 20 failed polls, 30 s apart: 10 minutes blind
        await watcher.poll_outcome("the Orders API answers with errors: HTTP 503")
        clock.now += 30
    assert sorted(notices(store)) == [
        ("chat", "api_unreachable", "watcher"),
        ("ops", "api_unreachable", "watcher"),
    ]
    restarted = console(store, settings(), clock)
    await restarted.poll_outcome("the Orders API answers with errors: HTTP 503")
    await restarted.poll_outcome(None)
    cases = sorted(case for _, case, _ in notices(store))
    assert cases == ["api_recovered", "api_recovered", "api_unreachable", "api_unreachable"]
    store.close()


async def test_a_failing_destination_is_reported_to_the_others_only(tmp_path: Path) -> None:
    clock = Clock(1_767_600_000.0)
    store = open_store(tmp_path / "s.db")
    watcher = console(store, settings(watcher_after="1m"), clock)
    await watcher.delivery_outcome(DESTINATIONS[0], "HTTP 500")
    clock.now += 61
    await watcher.tick()
    assert notices(store) == [("chat", "destination_failing", "watcher")]
    store.close()


async def test_a_summary_is_committed_once_per_period_across_restarts(tmp_path: Path) -> None:
    # 2026-01-05 08:00 Moscow; summaries at 09:00
    clock = Clock(1_767_589_200.0)
    config = settings(
        summaries=[{"route": "ops", "every": "day", "at": "09:00", "timezone": "Europe/Moscow"}]
    )
    store = open_store(tmp_path / "s.db")
    await console(store, config, clock).tick()  # first start: the clock starts
    assert notices(store) == []
    clock.now += 2 * 3600  # 10:00: stopped across 09:00, then started again
    for _ in range(3):
        await console(store, config, clock).tick()
    assert notices(store) == [("ops", "summary", "summary")]
    [delivery] = store.pending_deliveries()
    assert delivery.stored.event.note is not None
    assert delivery.stored.event.note.title.startswith("Daily summary to Mon 05 Jan 09:00")
    store.close()


async def test_the_consoles_store_work_runs_off_the_event_loop_on_postgresql(
    postgres_url: str,
) -> None:
    """Notices, the watcher's state and summaries are read and committed in the store's worker
    thread; what was committed is announced (the courier woken) on the event loop."""
    clock = Clock(1_767_589_200.0)  # 2026-01-05 08:00 Moscow; summaries at 09:00
    config = settings(
        watcher_after="1m",
        summaries=[{"route": "ops", "every": "day", "at": "09:00", "timezone": "Europe/Moscow"}],
    )
    store = open_store(postgres_url)
    loop = threading.current_thread()
    announced_on: list[bool] = []
    dispatch = Dispatcher(
        store,
        DESTINATIONS,
        on_committed=lambda _: announced_on.append(threading.current_thread() is loop),
    )
    watcher = Console(store, config, DESTINATIONS, dispatch, clock=clock)
    blocking = round_trips(store)
    await watcher.tick()  # the summaries' clock starts
    await watcher.poll_outcome("the Orders API answers with errors: HTTP 503")
    await watcher.delivery_outcome(DESTINATIONS[0], "HTTP 500")
    clock.now += 2 * 3600  # 10:00: the summary and both outages' notices are due
    await watcher.tick()
    await watcher.poll_outcome(None)
    console_round_trips = list(blocking)  # the test's own reads below are not the console's
    cases = sorted(case for _, case, _ in notices(store))
    store.close()
    assert cases == [
        "api_recovered",
        "api_recovered",
        "api_unreachable",
        "api_unreachable",
        "destination_failing",
        "summary",
    ]
    assert console_round_trips
    assert not any(console_round_trips)
    assert announced_on
    assert all(announced_on)
