"""Acknowledgements through the daemon's own parts (poller, dispatch, state file) on a fixed
clock against the sandbox: ``orderwatch ack`` stops a stuck order's reminders, and the message
that ends the stay names who acknowledged it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from orderwatch import load_settings
from orderwatch._cli import main
from orderwatch._client import OrdersApi, RetryPolicy
from orderwatch._dispatch import Dispatcher
from orderwatch._metrics import Metrics
from orderwatch._poller import Poller
from orderwatch._sandbox import SandboxApp, World
from orderwatch._service import stuck_rules
from orderwatch._sinks import destinations_for
from orderwatch._store import open_store

from .conftest import write_config

pytestmark = pytest.mark.anyio

STUCK = "AwaitingCertificateAssignment"


@dataclass
class Clock:
    now: float

    def __call__(self) -> float:
        return self.now


async def test_an_ack_stops_the_reminders_and_the_resolution_names_who_acknowledged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = SandboxApp(World(seed=5, orders=30, open_orders=0))  # nothing moves unless told
    state = tmp_path / "state.db"
    path = write_config(
        tmp_path / "orderwatch.toml",
        api={"base_url": "http://127.0.0.1:9", "client_id": app.client_id,
             "client_secret": app.client_secret, "max_rps": 1000.0},
        state={"path": str(state)},
        # the route takes stuck alerts only: the resolution reaches it as the alert's end
        notify={"routes": [{"name": "ops", "urls": ["json://127.0.0.1:9/"], "events": ["stuck"]}]},
        alerts={"stuck": [{"status": STUCK, "after": "1h", "repeat": "1h"}]},
    )  # fmt: skip
    settings = load_settings(path)
    clock = Clock(time.time())
    store = open_store(state)
    [ops] = destinations_for(settings.notify)
    dispatch = Dispatcher(store, [ops], stuck_rules=stuck_rules(settings))

    def stuck_alerts() -> list[int]:
        return [d.stored.event.reminder for d in store.pending_deliveries() if d.stored.event.kind == "stuck"]  # fmt: skip

    transport = app.mock_transport()
    async with OrdersApi(settings.api, transport=transport, retry=RetryPolicy(attempts=1)) as api:
        poller = Poller(api, store, dispatch, Metrics(), clock=clock)

        async def hours(n: int) -> None:
            for _ in range(4 * n):  # a poll every 15 minutes
                clock.now += 900
                await poller.cycle()

        await poller.cycle()  # the first sync
        order = app.world.add_order(status=STUCK)
        await hours(3)
        assert stuck_alerts() == [0, 1]  # the alert after an hour, a reminder an hour later

        assert main(["ack", str(order.number), "--by", "Anna", "--comment", "on it",
                     "--state", str(state)]) == 0  # fmt: skip
        assert f"order #{order.number}: acknowledged by Anna" in capsys.readouterr().out
        await hours(4)
        assert stuck_alerts() == [0, 1]  # no reminder since

        app.world.set_status(order.id, "Delivered")
        await hours(1)
    [end] = [d for d in store.pending_deliveries() if d.stored.event.kind == "status_changed"]
    store.close()
    assert end.route == "ops"
    assert end.stored.event.resolves_stuck
    title, body = ops.templates.render(end.stored.event, end.stored.id)
    assert title == f"Order #{order.number}: {STUCK} → Delivered"
    assert "It was acknowledged by Anna at " in body
    assert '("on it").' in body
    assert f"This resolves the alert that it was stuck in {STUCK}." in body
