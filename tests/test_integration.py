"""The daemon as users run it: a subprocess against the sandbox on loopback, delivering through
apprise to a local HTTP receiver."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from orderwatch._cli import main
from orderwatch._sandbox import Sandbox, World, WorldChange
from orderwatch._store import open_store

from .conftest import Daemon, Receiver, run_cli, sandbox_api, wait_until, write_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SECRET = "cs-9f2b7e4d1a-very-secret"
ONE_BY_ONE = {"group_wait": 0, "digest_threshold": 1000}  # no digests: one message per event
URL_PASSWORD = "pw-77c1e0b9-hook-secret"


def config_for(tmp_path: Path, sandbox: Sandbox, receiver: Receiver, **api: object) -> Path:
    return write_config(
        tmp_path / "orderwatch.toml",
        api=sandbox_api(sandbox, timeout=5.0, **api),
        poll={"interval": 0.3},
        state={"path": str(tmp_path / "state.db")},
        metrics={"listen": "127.0.0.1:0"},
        notify={"routes": [{"name": "hook", "urls": [receiver.url], **ONE_BY_ONE}]},
    )


def metrics_url(daemon: Daemon) -> str:
    wait_until(lambda: "metrics on http://" in daemon.log(), what="the metrics listener")
    match = re.search(r"metrics on (http://\S+/metrics)", daemon.log())
    assert match
    return match.group(1)


def first_sync_done(daemon: Daemon) -> Callable[[], bool]:
    return lambda: "first sync done" in daemon.log()


def expected_title(number: int, previous: str | None, status: str) -> str:
    if previous is None:
        return f"Order #{number}: new order ({status})"
    return f"Order #{number}: {previous} → {status}"


def net_titles(changes: list[WorldChange]) -> list[str]:
    first: dict[str, WorldChange] = {}
    last: dict[str, WorldChange] = {}
    for change in changes:
        first.setdefault(change.order_id, change)
        last[change.order_id] = change
    return [
        expected_title(last[i].number, first[i].previous, last[i].status)
        for i in first
        if first[i].previous != last[i].status
    ]


def test_changes_are_announced_metrics_served_and_sigterm_exits_cleanly(
    tmp_path: Path, sandbox: Sandbox, receiver: Receiver, daemon_factory: Callable[[Path], Daemon]
) -> None:
    daemon = daemon_factory(config_for(tmp_path, sandbox, receiver)).start()
    scrape_url = metrics_url(daemon)
    wait_until(first_sync_done(daemon), what="the first sync")
    assert receiver.titles() == []  # the first sync is silent
    mark = len(sandbox.world.history)
    sandbox.step(4)  # atomically: the daemon can only see each order's net change
    expected = Counter(net_titles(sandbox.world.history[mark:]))
    assert expected, "the seeded world moves in four steps"
    wait_until(lambda: Counter(receiver.titles()) == expected, what=f"{expected}")

    scrape = httpx.get(scrape_url, timeout=5).text
    for name in (
        "orderwatch_orders{",
        "orderwatch_transitions_total{",
        "orderwatch_poll_cycles_total ",
        "orderwatch_api_requests_total{",
        "orderwatch_last_successful_poll_timestamp_seconds ",
        "orderwatch_notifications_total{",
    ):
        assert name in scrape, name
    for status in (
        "Created",
        "Payed",
        "ReadyForDelivery",
        "PartiallyDelivered",
        "AwaitingCertificateAssignment",
        "Delivered",
        "Cancelled",
    ):
        assert f'orderwatch_orders{{status="{status}"}}' in scrape
    assert 'orderwatch_api_requests_total{code="200",endpoint="list"}' in scrape
    assert (
        f'orderwatch_notifications_total{{outcome="sent",route="hook"}} {float(sum(expected.values()))}'
        in scrape
    )

    started = time.monotonic()
    assert daemon.terminate() == 0
    assert time.monotonic() - started < 10
    assert "Traceback" not in daemon.log()


def test_sigkill_with_deliveries_pending_then_restart_delivers_everything_exactly_once(
    tmp_path: Path, sandbox: Sandbox, receiver: Receiver, daemon_factory: Callable[[Path], Daemon]
) -> None:
    config = config_for(tmp_path, sandbox, receiver)
    daemon = daemon_factory(config).start()
    wait_until(first_sync_done(daemon), what="the first sync")
    receiver.fail_with = 503
    world = sandbox.world
    a, b, c = world.open_ids[:3]
    expected: list[str] = []
    with sandbox.lock:
        for order_id, status in ((a, "Cancelled"), (b, "Delivered")):
            expected.append(
                expected_title(world.by_id[order_id].number, world.by_id[order_id].status, status)
            )
            world.set_status(order_id, status)
        new = world.add_order()
        expected.append(expected_title(new.number, None, "Created"))

    def pending() -> int:
        store = open_store(tmp_path / "state.db", readonly=True)
        try:
            return store.queue_counts()["pending"]
        finally:
            store.close()

    wait_until(lambda: pending() == 3, what="three pending deliveries")
    wait_until(lambda: "failed: " in daemon.log(), what="a failed delivery")
    daemon.kill()

    # While the daemon is down, order c moves twice: it is announced once, as the net change.
    before = world.by_id[c].status
    with sandbox.lock:
        world.set_status(c, "Payed" if before != "Payed" else "ReadyForDelivery")
        world.set_status(c, "Cancelled")
    expected.append(expected_title(world.by_id[c].number, before, "Cancelled"))
    receiver.fail_with = None

    daemon_factory(config).start()
    wait_until(lambda: len(receiver.titles()) >= len(expected), what="every delivery")
    time.sleep(1.5)  # several more cycles: nothing may arrive twice
    assert sorted(receiver.titles()) == sorted(expected)
    gap_note = [r["message"] for r in receiver.received if r["title"] == expected[-1]]
    assert "intermediate statuses may have been missed" in gap_note[0]
    assert pending() == 0


def test_no_secret_reaches_logs_metrics_or_notifications(
    tmp_path: Path, receiver: Receiver, daemon_factory: Callable[[Path], Daemon]
) -> None:
    with Sandbox(
        World(seed=3, orders=30, open_orders=6), client_secret=SECRET, token_lifetime=2
    ) as sandbox:
        port = receiver.server.server_address[1]
        secret_url = f"json://orderwatch:{URL_PASSWORD}@127.0.0.1:{port}/hook"
        failing_url = f"json://orderwatch:{URL_PASSWORD}@127.0.0.1:1/hook"
        config = write_config(
            tmp_path / "orderwatch.toml",
            api={
                "base_url": sandbox.url,
                "client_id": "sandbox",
                "client_secret": SECRET,
                "max_rps": 200.0,
            },
            poll={"interval": 0.3},
            state={"path": str(tmp_path / "state.db")},
            metrics={"listen": "127.0.0.1:0"},
            notify={
                "initial": True,
                "routes": [{"name": "hook", "urls": [secret_url, failing_url], "group_wait": 0.5}],
            },
        )
        daemon = Daemon(config, tmp_path / "daemon.log", args=("--log-level", "DEBUG")).start()
        try:
            scrape_url = metrics_url(daemon)
            wait_until(lambda: "30 new orders" in receiver.titles(), what="the initial digest")
            time.sleep(2.5)  # a token expiry and refresh
            sandbox.step(3)
            time.sleep(1)
            scrape = httpx.get(scrape_url, timeout=5).text
            tokens = list(sandbox._tokens)
        finally:
            daemon.terminate()
    assert len(tokens) >= 2
    export = run_cli("state", "export", "--config", str(config))
    assert export.returncode == 0
    log = daemon.log()
    assert "failed: " in log  # the failing destination was logged, masked
    notifications = str(receiver.received)
    for secret in (SECRET, URL_PASSWORD, *tokens):
        assert secret not in log
        assert secret not in scrape
        assert secret not in notifications
        assert secret not in export.stdout + export.stderr


def test_rejected_credentials_are_one_clear_line_and_the_daemon_keeps_running(
    tmp_path: Path, sandbox: Sandbox, receiver: Receiver, daemon_factory: Callable[[Path], Daemon]
) -> None:
    config = config_for(tmp_path, sandbox, receiver, client_secret="wrong-secret-value")
    daemon = daemon_factory(config).start()
    wait_until(lambda: sandbox.requests["token"] >= 3, what="several cycles")
    log = daemon.log()
    line = "the token endpoint rejected the client credentials (invalid_request); check api.client_id and api.client_secret"
    assert log.count(line) == 1
    assert "wrong-secret-value" not in log
    assert daemon.proc is not None
    assert daemon.proc.poll() is None
    assert daemon.terminate() == 0
    assert "Traceback" not in daemon.log()


def test_an_unreachable_api_is_logged_and_survived(
    tmp_path: Path, sandbox: Sandbox, receiver: Receiver, daemon_factory: Callable[[Path], Daemon]
) -> None:
    config = config_for(tmp_path, sandbox, receiver, base_url="http://127.0.0.1:1")
    daemon = daemon_factory(config).start()
    wait_until(lambda: "api: token: connection failed" in daemon.log(), what="the failure")
    time.sleep(1)
    assert daemon.proc is not None
    assert daemon.proc.poll() is None
    assert daemon.terminate() == 0
    assert "Traceback" not in daemon.log()


def test_notify_test_reports_each_destination_masked_and_fails_if_any_failed(
    tmp_path: Path, receiver: Receiver
) -> None:
    port = receiver.server.server_address[1]
    config = write_config(
        tmp_path / "c.toml",
        api={"base_url": "https://api.example", "token": "t0ken-value"},
        notify={
            "routes": [
                {"name": "good", "urls": [f"json://me:{URL_PASSWORD}@127.0.0.1:{port}/hook"]},
                {"name": "bad", "urls": [f"json://me:{URL_PASSWORD}@127.0.0.1:1/hook"]},
            ]
        },
    )
    result = run_cli("notify-test", "--config", str(config))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"ok     good: json://me:****@127.0.0.1:{port}/hook")
    assert lines[1].startswith("FAILED bad: json://me:****@127.0.0.1:1/hook: ")
    assert URL_PASSWORD not in result.stdout + result.stderr
    assert receiver.titles() == ["orderwatch: test message"]


def test_status_shows_counts_open_orders_and_the_last_poll(
    tmp_path: Path, sandbox: Sandbox, receiver: Receiver, daemon_factory: Callable[[Path], Daemon]
) -> None:
    config = config_for(tmp_path, sandbox, receiver)
    daemon = daemon_factory(config).start()
    wait_until(first_sync_done(daemon), what="the first sync")
    daemon.terminate()
    result = run_cli("status", "--config", str(config))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "first sync: done" in out
    assert "orders: 50" in out
    assert re.search(r"Delivered\s+\d+", out)
    assert "open orders: 8" in out
    newest_open = max(sandbox.world.by_id[i].number for i in sandbox.world.open_ids)
    assert f"#{newest_open}" in out
    assert "last successful poll: 20" in out
    missing = run_cli("status", "--state", str(tmp_path / "none.db"))
    assert missing.returncode == 1
    assert (
        missing.stderr.strip()
        == f"orderwatch: state: {tmp_path / 'none.db'} does not exist (has orderwatch run yet?)"
    )


def test_the_sandbox_command_serves_the_documented_api(tmp_path: Path) -> None:
    out = tmp_path / "sandbox.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orderwatch",
                "sandbox",
                "--port",
                "0",
                "--seed",
                "5",
                "--orders",
                "45",
                "--list-key",
                "orders",
                "--token-lifetime",
                "120",
                "--client-secret",
                "s",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: "sandbox Orders API on http://" in out.read_text(), what="the sandbox")
        url = re.search(r"on (http://\S+)", out.read_text()).group(1)  # type: ignore[union-attr]
        bad = httpx.post(
            f"{url}/connect/token",
            data={"client_id": "sandbox", "client_secret": "x", "grant_type": "client_credentials"},
        )
        assert (bad.status_code, bad.json()) == (400, {"error": "invalid_request"})
        token = httpx.post(
            f"{url}/connect/token",
            data={"client_id": "sandbox", "client_secret": "s", "grant_type": "client_credentials"},
        ).json()
        assert token["expires_in"] == 120
        assert token["scope"] == "external-api"
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        assert httpx.get(f"{url}/v1/orders?page=1").status_code == 401
        page = httpx.get(f"{url}/v1/orders?page=3", headers=auth).json()
        assert (page["totalPages"], page["currentPage"], page["pageSize"]) == (3, 3, 20)
        assert len(page["orders"]) == 5
        numbers = [o["number"] for o in page["orders"]]
        assert numbers == sorted(numbers, reverse=True)
        first = page["orders"][0]
        assert set(first) == {"id", "number", "createdDate", "status", "participantLogin", "total"}
        status = httpx.get(f"{url}/v1/orders/{first['id'].upper()}/status", headers=auth)
        assert status.json() == {"status": first["status"]}
        assert httpx.get(f"{url}/v1/orders/nope/status", headers=auth).status_code == 404
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0


def test_the_sandbox_command_serves_a_shop_day_whose_orders_arrive_and_move(
    tmp_path: Path,
) -> None:
    """``--scenario shop-day`` at an hour of the shop a second: its pace is printed, new orders
    reach the head and listed orders change status within a second or so; faults still apply."""
    out = tmp_path / "sandbox.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "orderwatch", "sandbox", "--scenario", "shop-day",
                "--port", "0", "--seed", "3", "--orders", "40", "--speed", "3600",
                "--arrivals-per-day", "500", "--dwell-scale", "0.5", "--start-hour", "10",
                "--fault-wrong-types", "1",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until(lambda: "scenario shop-day:" in out.read_text(), timeout=10, what="the shop")
        text = out.read_text()
        url = re.search(r"sandbox Orders API on (http://\S+) ", text).group(1)  # type: ignore[union-attr]
        pace = re.search(r"scenario shop-day: .*", text).group(0)  # type: ignore[union-attr]
        assert "3600 shop seconds a second (2d 12h a minute), shop time 10:00" in pace
        assert "500 new orders a day, 4x as many an hour 9:00-18:00" in pace
        assert "mean stays (x0.5): Created 2m 30s, Payed 15m 00s" in pace
        token = httpx.post(
            f"{url}/connect/token",
            data={"client_id": "sandbox", "client_secret": "sandbox-secret",
                  "grant_type": "client_credentials"},
            timeout=5,
        ).json()  # fmt: skip
        auth = {"Authorization": f"Bearer {token['access_token']}"}

        def head() -> list[dict[str, object]]:
            page = httpx.get(f"{url}/v1/orders?page=1", headers=auth, timeout=5).json()
            assert page["totalPages"] > 2  # the day before and the morning: more than --orders
            return page["data"]  # type: ignore[no-any-return]

        first = head()
        assert all(isinstance(order["number"], str) for order in first)  # the fault applies
        newest = int(str(first[0]["number"]))
        seen = {str(order["id"]): order["status"] for order in first}

        def moved() -> bool:
            return any(
                httpx.get(f"{url}/v1/orders/{order_id}/status", headers=auth, timeout=5).json()
                != {"status": status}
                for order_id, status in seen.items()
            )

        wait_until(lambda: int(str(head()[0]["number"])) > newest, timeout=10, what="arrivals")
        wait_until(moved, timeout=10, what="a listed order changing status")
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (["--scenario", "shop-day", "--open", "3"],
         "--open applies only to --scenario steps, not shop-day"),
        (["--scenario", "shop-day", "--arrival-rate", "1", "--open", "3"],
         "--open, --arrival-rate apply only to --scenario steps, not shop-day"),
        (["--speed", "10"], "--speed applies only to --scenario shop-day, not steps"),
        (["--scenario", "shop-day", "--speed", "0"],
         "argument --speed: must be > 0 and <= 86,400, not 0"),
        (["--scenario", "shop-day", "--speed", "1e7"],
         "argument --speed: must be > 0 and <= 86,400, not 1e7"),
        (["--scenario", "shop-day", "--speed", "inf"],
         "argument --speed: not a finite number: 'inf'"),
        (["--scenario", "shop-day", "--dwell-scale", "-1"],
         "argument --dwell-scale: must be > 0 and <= 1,000, not -1"),
        (["--scenario", "shop-day", "--arrivals-per-day", "0"],
         "argument --arrivals-per-day: must be > 0 and <= 1,000,000, not 0"),
        (["--fault-errors", "1.5"], "argument --fault-errors: must be >= 0 and <= 1, not 1.5"),
        (["--fault-shift", "-1"], "argument --fault-shift: must be from 0 to 1000, not -1"),
        (["--token-lifetime", "nan"], "argument --token-lifetime: not a finite number: 'nan'"),
        (["--scenario", "shop-day", "--speed", "86400", "--arrivals-per-day", "1000000"],
         ("--speed x --arrivals-per-day: 1,000,000 new orders a second, more than the sandbox "
          "keeps up with (1,000)")),
        (["--scenario", "shop-day", "--start-hour", "24"],
         "argument --start-hour: must be from 0 to 23, not 24"),
        (["--scenario", "shop-day", "--tick", "0"],
         "argument --tick: must be > 0 and <= 86,400, not 0"),
        (["--port", "70000"], "argument --port: must be from 0 to 65535, not 70000"),
    ],
)  # fmt: skip
def test_a_sandbox_option_that_is_wrong_or_not_for_the_scenario_is_refused_in_one_line(
    options: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["sandbox", "--port", "0", *options])
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines()[-1] == f"orderwatch sandbox: error: {error}"
    assert len(captured.err.splitlines()) == 2  # the short usage line and the error


def test_the_sandbox_is_deterministic_for_a_seed() -> None:
    def run(seed: int) -> list[WorldChange]:
        world = World(seed=seed, orders=40, open_orders=10)
        for _ in range(20):
            world.step()
        return world.history

    assert run(11) == run(11)
    assert run(11) != run(12)
    moves = run(11)
    assert any(c.previous is None for c in moves)
    assert any(c.status == "Cancelled" for c in moves)
    assert any(c.status == "Delivered" for c in moves)
