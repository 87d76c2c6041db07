"""The watcher's own notices from a running daemon (in-process, against the sandbox on loopback,
a route and a webhook on real receivers): an API outage longer than ``notify.watcher_after`` is
announced once and its end once, even across a restart during the outage; rejected credentials
reach the channel in words, and what changed meanwhile is announced as across a gap."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from orderwatch import _service, load_settings
from orderwatch._client import RetryPolicy
from orderwatch._sandbox import Sandbox, World
from orderwatch._service import Service, ServiceOptions
from orderwatch._store import StoredEvent

from .conftest import SECRET, HookReceiver, Receiver, eventually, sandbox_api, write_config

pytestmark = pytest.mark.anyio

UNREACHABLE = "orderwatch cannot see the Orders API"
RECOVERED = "orderwatch sees the Orders API again"
FAST = RetryPolicy(attempts=2, wait_initial=0.01, wait_max=0.02, wait_jitter=0)


def config(tmp_path: Path, sandbox: Sandbox, receiver: Receiver, hooks: HookReceiver) -> Path:
    return write_config(
        tmp_path / "orderwatch.toml",
        api=sandbox_api(sandbox),
        poll={"interval": 0.1},
        state={"path": str(tmp_path / "state.db")},
        metrics={"listen": ""},
        notify={
            "watcher_after": "1s",
            "routes": [
                {"name": "ops", "urls": [receiver.url], "group_wait": 0, "events": ["watcher"]}
            ],
            "webhooks": [
                {
                    "name": "erp",
                    "url": hooks.url,
                    "secret": SECRET,
                    "events": ["watcher", "status_changed"],
                }
            ],
        },
    )


@asynccontextmanager
async def running(path: Path) -> AsyncIterator[Service]:
    """The daemon from ``path``, in this event loop, until the block ends (a stop)."""
    options = ServiceOptions(config_path=path, handle_signals=False, retry=FAST)
    service = Service(load_settings(path), options)
    async with anyio.create_task_group() as group:
        group.start_soon(service.run)
        yield service
        group.cancel_scope.cancel()


def cycles(service: Service) -> float:
    return service.metrics.registry.get_sample_value("orderwatch_poll_cycles_total") or 0.0


def webhook_types(hooks: HookReceiver, prefix: str) -> list[str]:
    return [str(body["type"]) for body in hooks.accepted() if str(body["type"]).startswith(prefix)]


async def test_an_outage_longer_than_watcher_after_is_announced_once_and_ends_once_across_a_restart(
    tmp_path: Path, sandbox: Sandbox, receiver: Receiver, hooks: HookReceiver
) -> None:
    path = config(tmp_path, sandbox, receiver, hooks)
    async with running(path) as service:
        await eventually(lambda: service.health.last_success is not None, "the first sync")
        sandbox.faults.errors = 1.0  # every request answers 500, 502 or 503 from now on
        await eventually(lambda: UNREACHABLE in receiver.titles(), "the outage's notice")
    [notice] = [body for body in receiver.received if body["title"] == UNREACHABLE]
    assert "Polls have failed since" in notice["message"]
    assert "the Orders API answers with errors: HTTP 50" in notice["message"]

    async with running(path) as service:  # restarted while the API is still down
        started = anyio.current_time()
        await eventually(
            lambda: cycles(service) >= 5 and anyio.current_time() - started > 2.5,
            "failing polls for longer than watcher_after, twice over",
        )
        assert service.health.last_success is None  # it has been failing all along
        sandbox.faults.errors = 0.0
        await eventually(lambda: RECOVERED in receiver.titles(), "the recovery's notice")
        await eventually(
            lambda: len(webhook_types(hooks, "watcher.")) >= 2, "the webhook's two notices"
        )
    assert receiver.titles().count(UNREACHABLE) == 1
    assert receiver.titles().count(RECOVERED) == 1
    assert webhook_types(hooks, "watcher.") == ["watcher.api_unreachable", "watcher.api_recovered"]


async def test_rejected_credentials_reach_the_channel_in_words_and_changes_meanwhile_are_a_gap(
    tmp_path: Path, receiver: Receiver, hooks: HookReceiver
) -> None:
    world = World(seed=7, orders=50, open_orders=8)
    with Sandbox(world, credentials_error="invalid_client") as sandbox:
        configured = sandbox.client_secret
        path = config(tmp_path, sandbox, receiver, hooks)
        async with running(path) as service:
            await eventually(lambda: service.health.last_success is not None, "the first sync")
            sandbox.rotate_secret("rotated-elsewhere-secret")  # the daemon's is now wrong
            await eventually(lambda: UNREACHABLE in receiver.titles(), "the outage's notice")
            target = world.open_ids[0]
            with sandbox.lock:
                world.set_status(target, "Cancelled")
            sandbox.rotate_secret(configured)
            await eventually(lambda: RECOVERED in receiver.titles(), "the recovery's notice")
            await eventually(
                lambda: bool(webhook_types(hooks, "order.status_changed")), "the cancellation"
            )
    [notice] = [body for body in receiver.received if body["title"] == UNREACHABLE]
    assert (
        "the Orders API rejects the client credentials (invalid_client); "
        "check api.client_id / api.client_secret"
    ) in notice["message"]
    [webhook_notice] = [b for b in hooks.accepted() if b["type"] == "watcher.api_unreachable"]
    assert "invalid_client" in str(webhook_notice["data"]["reason"])  # type: ignore[index]
    [change] = [b for b in hooks.accepted() if b["type"] == "order.status_changed"]
    assert change["data"]["id"] == target  # type: ignore[index]
    assert change["data"]["after_gap"] is True  # type: ignore[index]
    for secret in (configured, "rotated-elsewhere-secret"):
        assert secret not in str(receiver.received)
        assert secret not in str(hooks.accepted())


async def test_a_standby_makes_no_watcher_notice_the_leader_announces_an_outage_once(
    tmp_path: Path,
    sandbox: Sandbox,
    receiver: Receiver,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two instances on one database, the standby started once the leader's state says the API
    is failing: the outage is announced once, by the leader."""
    monkeypatch.setattr(_service, "_CONSOLE_TICK", 0.1)  # the standby's clock ticks often

    def config_of(name: str) -> Path:
        return write_config(
            tmp_path / f"{name}.toml",
            api=sandbox_api(sandbox),
            poll={"interval": 0.1},
            state={"url": postgres_url},
            ha={"instance": name, "lease": "2s"},
            metrics={"listen": ""},
            notify={
                "watcher_after": "1s",
                "routes": [
                    {"name": "ops", "urls": [receiver.url], "group_wait": 0, "events": ["watcher"]}
                ],
            },
        )

    announced: list[tuple[str, str]] = []

    def note_notices(name: str, service: Service) -> None:
        """Note which instance commits each watcher notice (its dispatch announces it)."""
        assert service.parts is not None
        announce = service.parts.dispatch.announce

        def noting(stored: list[StoredEvent]) -> None:
            announced.extend(
                (name, s.event.note.case)
                for s in stored
                if s.event.kind == "watcher" and s.event.note is not None
            )
            announce(stored)

        monkeypatch.setattr(service.parts.dispatch, "announce", noting)

    async with running(config_of("a")) as leader:
        await eventually(lambda: leader.health.last_success is not None, "the leader's first sync")
        note_notices("a", leader)
        failed_before = cycles(leader)
        sandbox.faults.errors = 1.0  # every request answers 500, 502 or 503 from now on
        await eventually(lambda: cycles(leader) > failed_before, "a failed poll recorded")
        async with running(config_of("b")) as standby:
            await eventually(lambda: standby.parts is not None, "the standby's parts")
            note_notices("b", standby)
            await eventually(lambda: UNREACHABLE in receiver.titles(), "the outage's notice")
            seen = cycles(leader)
            await eventually(  # well past watcher_after again, the standby's clock ticking
                lambda: cycles(leader) >= seen + 10, "ten more failing polls"
            )
            assert standby.parts is not None
            assert not standby.parts.leadership.leader
    assert receiver.titles().count(UNREACHABLE) == 1
    assert announced == [("a", "api_unreachable")]
