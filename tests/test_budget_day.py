"""The request budget in the daemon, on a compressed stretch of the sandbox's shop day (the full
day runs in ``benchmarks/day.py``)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from orderwatch._quota import ledger_path
from orderwatch._sandbox import DayPace, Sandbox, ShopDay

from .conftest import Daemon, run_cli, sandbox_api, wait_until, write_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

SPEED = 720.0  # shop seconds a wall second: an hour of the shop in 5 s
INTERVAL = 1800 / SPEED  # poll.interval: half an hour of shop time
BUDGET = 1200 * SPEED  # 1,200 requests a shop hour, per wall hour


@pytest.fixture
def shop() -> Iterator[Sandbox]:
    # Shop time 10:00 is now: working hours.
    start = time.time() - 10 * 3600 / SPEED
    world = ShopDay(
        seed=5,
        orders=400,
        pace=DayPace(arrivals_per_day=300, old_open=10),
        speed=SPEED,
        start=start,
    )
    with Sandbox(world) as running:
        running.tick_every(0.02)
        yield running


def test_a_budgeted_daemon_sees_every_change_counts_every_request_and_shows_its_plan(
    tmp_path: Path, shop: Sandbox, daemon_factory: Callable[[Path], Daemon]
) -> None:
    state = tmp_path / "state.db"
    config = write_config(
        tmp_path / "orderwatch.toml",
        api=sandbox_api(shop, max_rps=1000.0, timeout=5.0),
        poll={"interval": INTERVAL, "min_interval": 0.1, "budget": f"{BUDGET / 3600:g}/s"},
        state={"path": str(state)},
        metrics={"listen": "127.0.0.1:0"},
    )
    daemon = daemon_factory(config).start()
    wait_until(lambda: "first sync done" in daemon.log(), what="the first sync")
    mark = len(shop.world.history)
    time.sleep(1.5 * 3600 / SPEED)  # an hour and a half of the shop
    with shop.lock:
        window = shop.world.history[mark:]
    numbers = {change.number for change in window}
    assert len(numbers) > 10, "the shop moves"

    def announced() -> set[int]:
        """Orders with an event committed (delivery is the courier's, tested elsewhere)."""
        return {int(n) for n in re.findall(r"INFO +Order #(\d+)", daemon.log())}

    wait_until(
        lambda: numbers <= announced(),
        timeout=INTERVAL * 2 + 10,
        what=f"every change: {sorted(numbers - announced())[:20]} of {len(numbers)}",
    )

    match = re.search(r"metrics on (http://\S+/metrics)", daemon.log())
    assert match
    scrape = httpx.get(match.group(1), timeout=5).text
    assert f"orderwatch_poll_budget {BUDGET:.1f}" in scrape
    assert 'orderwatch_status_exit_rate_per_hour{status="Created"}' in scrape
    assert "orderwatch_expected_notification_delay_seconds " in scrape
    assert "orderwatch_poll_budget_floor_wins_total 0.0" in scrape
    assert daemon.terminate() == 0

    minutes = json.loads(ledger_path(state).read_text())["minutes"]
    assert sum(minutes.values()) >= shop.requests["list"] + shop.requests["status"]
    status = run_cli("status", "--config", str(config))
    assert "request budget: learned rates (per hour)" in status.stdout
    assert "head (page 1 on)" in status.stdout
    assert "Traceback" not in daemon.log()

    small = write_config(
        tmp_path / "small.toml",
        api=sandbox_api(shop),
        poll={"interval": "5m", "budget": "13/h"},
        state={"path": str(state)},
    )
    refused = run_cli("check-config", "--config", str(small))
    assert refused.returncode == 2
    assert re.fullmatch(
        r"poll\.budget: 13/h cannot read the \d+ pages and orders holding open orders once per "
        r"poll\.interval \(300s\): the smallest budget that does is \d+/h \(or lengthen "
        r"poll\.interval\)\n",
        refused.stderr,
    )
