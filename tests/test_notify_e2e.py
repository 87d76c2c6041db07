"""Notifications end to end: the daemon as a subprocess, the sandbox, real receivers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from orderwatch._sandbox import Sandbox

from .conftest import (
    SECRET,
    Daemon,
    HookReceiver,
    Receiver,
    run_cli,
    sandbox_api,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def config(
    tmp_path: Path, sandbox: Sandbox, *, alerts: dict[str, object] | None = None, **notify: object
) -> Path:
    sections: dict[str, dict[str, object]] = {"notify": dict(notify)}
    if alerts:
        sections["alerts"] = alerts
    return write_config(
        tmp_path / "orderwatch.toml",
        api=sandbox_api(sandbox),
        poll={"interval": 0.3},
        state={"path": str(tmp_path / "state.db")},
        metrics={"listen": ""},
        **sections,
    )


def erp(url: str, **filters: object) -> dict[str, object]:
    return {"name": "erp", "url": url, "secret": SECRET, **filters}


def test_signed_webhooks_survive_a_receiver_outage_and_a_kill(
    tmp_path: Path, sandbox: Sandbox, hooks: HookReceiver, daemon_factory: Callable[[Path], Daemon]
) -> None:
    cfg = config(tmp_path, sandbox, webhooks=[erp(hooks.url)])
    daemon = daemon_factory(cfg).start()
    wait_until(lambda: "first sync done" in daemon.log(), what="the first sync")
    hooks.answer = 503
    world = sandbox.world
    with sandbox.lock:
        a, b = world.open_ids[:2]
        world.set_status(a, "Cancelled")
        new = world.add_order()
    wait_until(
        lambda: "erp" in daemon.log() and "failed: HTTP 503" in daemon.log(), what="a failing post"
    )
    daemon.kill()
    with sandbox.lock:
        world.set_status(b, "Delivered")
    hooks.answer = 204
    daemon_factory(cfg).start()
    wait_until(lambda: len(hooks.accepted()) >= 3, what="three webhook posts")
    time.sleep(1)
    bodies = hooks.accepted()
    assert len(bodies) == 3
    by_number = {body["data"]["number"]: body for body in bodies}  # type: ignore[index]
    assert by_number[world.by_id[a].number]["type"] == "order.status_changed"
    assert by_number[world.by_id[a].number]["data"]["status"] == "Cancelled"  # type: ignore[index]
    assert by_number[new.number]["type"] == "order.created"
    assert by_number[new.number]["data"]["previous_status"] is None  # type: ignore[index]
    assert by_number[world.by_id[b].number]["data"]["after_gap"] is True  # type: ignore[index]
    ids = [headers["webhook-id"] for headers, _ in hooks.posts]
    assert len(set(ids)) == 3
    assert all(
        body["data"]["event_id"] == headers["webhook-id"]
        for (headers, _), body in zip(hooks.posts, bodies, strict=True)
    )  # type: ignore[index]


def test_a_stuck_order_alerts_reminds_and_its_transition_resolves_it(
    tmp_path: Path, sandbox: Sandbox, receiver: Receiver, daemon_factory: Callable[[Path], Daemon]
) -> None:
    world = sandbox.world
    target = world.open_ids[0]
    status = "PartiallyDelivered"  # the target alone: one alert every repeat, not a flood
    for order_id in world.open_ids:
        world.by_id[order_id].status = status if order_id == target else "Payed"
    number = world.by_id[target].number
    cfg = config(
        tmp_path, sandbox,
        routes=[{"name": "stuck-only", "urls": [receiver.url], "events": ["stuck"], "group_wait": 0}],
        alerts={"stuck": [{"status": status, "after": "1s", "repeat": "2s"}]},
    )  # fmt: skip
    daemon = daemon_factory(cfg).start()
    wait_until(
        lambda: sum(f"Order #{number}: stuck in {status}" in t for t in receiver.titles()) >= 2,
        what="an alert and a reminder",
    )
    reminder = [r for r in receiver.received if f"Order #{number}: stuck in" in str(r["title"])][1]
    assert "(reminder 1)" in str(reminder["message"])
    with sandbox.lock:
        world.set_status(target, "Cancelled")
    resolved = f"Order #{number}: {status} → Cancelled"
    wait_until(lambda: resolved in receiver.titles(), what="the resolving transition")
    message = next(r["message"] for r in receiver.received if r["title"] == resolved)
    assert f"This resolves the alert that it was stuck in {status}." in str(message)
    others = [t for t in receiver.titles() if "stuck in" not in t and t != resolved]
    assert others == []  # the route takes stuck events only, plus what resolves them
    assert daemon.terminate() == 0


def test_a_burst_becomes_one_digest(
    tmp_path: Path, sandbox: Sandbox, receiver: Receiver, daemon_factory: Callable[[Path], Daemon]
) -> None:
    cfg = config(tmp_path, sandbox, routes=[{
        "name": "ops", "urls": [receiver.url], "group_wait": 1, "digest_threshold": 3,
    }])  # fmt: skip
    daemon = daemon_factory(cfg).start()
    wait_until(lambda: "first sync done" in daemon.log(), what="the first sync")
    with sandbox.lock:
        for _ in range(12):
            sandbox.world.add_order()
    wait_until(lambda: receiver.titles() != [], what="the digest")
    time.sleep(1.5)
    [digest] = receiver.received
    assert digest["title"] == "12 new orders"
    assert "new order (Created): 12" in str(digest["message"])
    assert daemon.terminate() == 0


def test_routes_explain_shows_who_gets_what_without_sending(
    tmp_path: Path, sandbox: Sandbox, receiver: Receiver
) -> None:
    cfg = config(tmp_path, sandbox, routes=[
        {"name": "cancellations", "urls": [receiver.url], "statuses": ["Cancelled"], "title": "{{ number }} cancelled ({{ previous_status }})"},
        {"name": "everything", "urls": [receiver.url]},
    ], webhooks=[erp("http://127.0.0.1:1/x", statuses=["Delivered"])])  # fmt: skip
    result = run_cli(
        "routes", "explain", "--config", str(cfg), "--status", "Cancelled", "--from", "Payed"
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "+ route cancellations (json://127.0.0.1:" in out
    assert "    title: 3048 cancelled (Payed)" in out
    assert "+ route everything" in out
    assert "    title: Order #3048: Payed → Cancelled" in out
    assert "- webhook erp (http://127.0.0.1:1/x): not matched" in out
    assert "2 destination(s) would receive it; nothing was sent." in out
    assert receiver.received == []
    hook = run_cli(
        "routes",
        "explain",
        "--config",
        str(cfg),
        "--status",
        "Delivered",
        "--event",
        "status_changed",
        "--from",
        "PartiallyDelivered",
    )
    assert '"type": "order.status_changed"' in hook.stdout


def test_outbox_list_retry_and_drop(
    tmp_path: Path, sandbox: Sandbox, receiver: Receiver, daemon_factory: Callable[[Path], Daemon]
) -> None:
    receiver.fail_with = 500
    cfg = config(
        tmp_path, sandbox, routes=[{"name": "ops", "urls": [receiver.url], "group_wait": 0}]
    )
    daemon = daemon_factory(cfg).start()
    wait_until(lambda: "first sync done" in daemon.log(), what="the first sync")
    with sandbox.lock:
        first, second = sandbox.world.add_order(), sandbox.world.add_order()
    wait_until(lambda: "failed: " in daemon.log(), what="a failure")
    daemon.terminate()
    listed = run_cli("outbox", "list", "--config", str(cfg))
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[-1] == "2 deliveries"
    assert any(
        f"Order #{first.number}: new order (Created)" in line and "pending" in line
        for line in lines
    )
    event_id = next(line.split()[0] for line in lines if f"#{second.number}:" in line)
    assert run_cli("outbox", "drop", "--config", str(cfg)).returncode == 1  # says which
    dropped = run_cli("outbox", "drop", "--config", str(cfg), "--event", event_id)
    assert dropped.stdout.strip() == "1 deliveries dropped"
    retried = run_cli("outbox", "retry", "--config", str(cfg), "--route", "ops")
    assert retried.stdout.startswith("1 deliveries due now")
    receiver.fail_with = None
    daemon_factory(cfg).start()
    wait_until(lambda: receiver.titles() != [], what="the retried delivery")
    time.sleep(1)
    assert receiver.titles() == [f"Order #{first.number}: new order (Created)"]


def test_notify_test_covers_webhooks_and_status_shows_a_gone_one(
    tmp_path: Path, sandbox: Sandbox, hooks: HookReceiver, daemon_factory: Callable[[Path], Daemon]
) -> None:
    cfg = config(tmp_path, sandbox, webhooks=[erp(hooks.url)])
    tested = run_cli("notify-test", "--config", str(cfg))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.startswith(f"ok     erp: {hooks.url}")
    [body] = hooks.accepted()
    assert body["type"] == "orderwatch.test"
    hooks.answer = 410
    daemon = daemon_factory(cfg).start()
    wait_until(lambda: "first sync done" in daemon.log(), what="the first sync")
    with sandbox.lock:
        sandbox.world.add_order()
    wait_until(lambda: "answered 410 Gone: disabled" in daemon.log(), what="the webhook disabled")
    daemon.terminate()
    status = run_cli("status", "--config", str(cfg))
    assert "webhook erp: disabled: the receiver answered 410 Gone" in status.stdout
    restarted = daemon_factory(cfg).start()
    wait_until(
        lambda: "notify: webhook erp stays disabled" in restarted.log(), what="still disabled"
    )
    restarted.terminate()
    assert json.loads(json.dumps(hooks.accepted()))  # the test post only
