"""Summaries from the daemon's own parts (poller, dispatch, console, state file) on a fixed
clock over two days of sandbox activity: each period's counts are the sandbox's own history of
that period, each summary is committed once even across a restart over its time, and
``orderwatch summary --route ops --dry-run`` prints what would be sent now."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orderwatch import load_settings
from orderwatch._cli import main
from orderwatch._client import OrdersApi, RetryPolicy
from orderwatch._console import Console
from orderwatch._dispatch import Dispatcher
from orderwatch._metrics import Metrics
from orderwatch._poller import Poller
from orderwatch._sandbox import SandboxApp, World, WorldChange
from orderwatch._settings import Settings
from orderwatch._sinks import destinations_for
from orderwatch._store import open_store

from .conftest import write_config

pytestmark = pytest.mark.anyio

HALF_HOUR = 1800.0
# The route's summary_body: the template variables, as JSON, to compare with the sandbox's truth.
BODY = (
    '{{ {"new": new_orders, "transitions": transitions, "delivered": delivered, '
    '"delivered_total": delivered_total, "cancelled": cancelled, '
    '"cancelled_total": cancelled_total, "open": open_now} | tojson }}'
)


def at(day: int, hour: int, minute: int = 0) -> float:
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC).timestamp()


@dataclass
class Clock:
    now: float

    def __call__(self) -> float:
        return self.now


@dataclass
class Watch:
    """The daemon's parts on a fixed clock, polling every half hour while the world moves."""

    app: SandboxApp
    settings: Settings
    clock: Clock
    detected: list[tuple[float, WorldChange]] = field(default_factory=list)

    async def run(self, until: float) -> None:
        """Start (on the state file), poll now and every half hour up to ``until``, stop."""
        store = open_store(self.settings.state.path)
        destinations = destinations_for(self.settings.notify)
        dispatch = Dispatcher(store, destinations)
        retry = RetryPolicy(attempts=1)
        transport = self.app.mock_transport()
        async with OrdersApi(self.settings.api, transport=transport, retry=retry) as api:
            poller = Poller(api, store, dispatch, Metrics(), clock=self.clock)
            console = Console(
                store,
                self.settings,
                destinations,
                dispatch,
                on_blind=poller.mark_gap,
                clock=self.clock,
            )
            changes: list[WorldChange] = []
            while True:
                await poller.cycle()
                await console.poll_outcome(None)
                self.detected += [(self.clock.now, change) for change in changes]
                if self.clock.now + HALF_HOUR > until:
                    break
                self.clock.now += HALF_HOUR
                changes = self.app.world.step()
        store.close()

    def truth(self, start: float, end: float) -> dict[str, object]:
        """What the sandbox did in ``start`` < t ≤ ``end`` (by when a poll saw it), in the
        summary's terms."""
        changes = [change for moment, change in self.detected if start < moment <= end]
        world = self.app.world

        def finished(status: str) -> set[str]:
            return {c.order_id for c in changes if c.status == status}

        delivered, cancelled = finished("Delivered"), finished("Cancelled")
        return {
            "new": sum(c.previous is None for c in changes),
            "transitions": dict(Counter(c.status for c in changes if c.previous is not None)),
            "delivered": len(delivered),
            "delivered_total": str(sum(world.by_id[i].total for i in delivered)),
            "cancelled": len(cancelled),
            "cancelled_total": str(sum(world.by_id[i].total for i in cancelled)),
        }


def counts(body: str) -> dict[str, object]:
    found = json.loads(body)
    found.pop("open")
    return dict(found)


async def test_two_days_of_summaries_count_what_the_sandbox_did_once_each_across_a_restart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = SandboxApp(World(seed=11, orders=40, open_orders=10, arrival_rate=1.0, move_rate=0.3))
    path = write_config(
        tmp_path / "orderwatch.toml",
        api={"base_url": "http://127.0.0.1:9", "client_id": app.client_id,
             "client_secret": app.client_secret, "max_rps": 1000.0},
        state={"path": str(tmp_path / "state.db")},
        notify={
            "routes": [{"name": "ops", "urls": ["json://127.0.0.1:9/"], "summary_body": BODY}],
            "summaries": [{"route": "ops", "every": "day", "at": "09:00", "timezone": "UTC"}],
        },
    )  # fmt: skip
    watch = Watch(app, load_settings(path), Clock(at(5, 6)))

    await watch.run(until=at(6, 8, 30))  # Monday 06:00 (the first start) to Tuesday 08:30
    watch.clock.now = at(6, 10)  # stopped across Tuesday 09:00; the world stood still
    await watch.run(until=at(6, 10))  # started and stopped again at 10:00
    await watch.run(until=at(7, 9, 30))  # and once more, to Wednesday 09:30

    store = open_store(tmp_path / "state.db", readonly=True)
    summaries = [d.stored.event for d in store.pending_deliveries() if d.stored.event.note]
    store.close()
    periods = [(s.note.data["start"], s.note.data["end"]) for s in summaries if s.note]
    assert periods == [(at(4, 9), at(5, 9)), (at(5, 9), at(6, 9)), (at(6, 9), at(7, 9))]
    for (start, end), summary in zip(periods, summaries, strict=True):
        assert summary.note is not None
        assert counts(summary.note.body) == watch.truth(float(start), float(end))  # type: ignore[arg-type]
    assert summaries[1].detected_at == at(6, 10)  # sent when the daemon came back
    assert watch.truth(at(5, 9), at(6, 9))["new"] > 10  # a busy day, not an empty one
    assert summaries[1].note is not None
    assert summaries[1].note.title.startswith("Daily summary to Tue 06 Jan 09:00: ")

    assert main(["summary", "--route", "ops", "--dry-run", "--config", str(path)]) == 0
    title, _, body = capsys.readouterr().out.strip().partition("\n\n")
    assert title.startswith("Daily summary to ")
    printed = json.loads(body)
    world = app.world
    assert printed["open"] == dict(Counter(world.by_id[i].status for i in world.open_ids))
    assert counts(body) == watch.truth(at(7, 9), float("inf"))
