"""The service in-process against the sandbox: it polls, delivers, reloads and stops cleanly."""

from __future__ import annotations

import logging
import re
import socket
from pathlib import Path

import anyio
import httpx
import pytest

from orderwatch import OrderwatchError, StateError, load_settings
from orderwatch._metrics import Health, Metrics
from orderwatch._sandbox import Sandbox
from orderwatch._service import (
    STOP_TIMEOUT,
    Service,
    ServiceOptions,
    build_parts,
    run_service,
)
from orderwatch._settings import Settings
from orderwatch._store import open_store
from orderwatch._systemd import SystemdNotifier
from orderwatch._webhooks import TIMEOUT as WEBHOOK_TIMEOUT

from .conftest import Receiver, eventually, sandbox_api, write_config

ROOT = Path(__file__).parent.parent

pytestmark = pytest.mark.anyio


def config(tmp_path: Path, sandbox: Sandbox, receiver: Receiver, **route: object) -> Path:
    return write_config(
        tmp_path / "orderwatch.toml",
        api=sandbox_api(sandbox),
        poll={"interval": 0.2},
        state={"path": str(tmp_path / "state.db")},
        metrics={"listen": "127.0.0.1:0"},
        notify={
            "routes": [
                {
                    "name": "hook",
                    "urls": [receiver.url],
                    "group_wait": 0,
                    "digest_threshold": 1000,
                    **route,
                }
            ]
        },
    )


async def test_it_polls_delivers_reloads_from_its_file_and_stops_cleanly(
    tmp_path: Path, sandbox: Sandbox, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="orderwatch")
    path = config(tmp_path, sandbox, receiver)
    ports: list[int] = []
    service = Service(
        load_settings(path),
        ServiceOptions(config_path=path, handle_signals=False, on_metrics_port=ports.append),
    )
    async with anyio.create_task_group() as group:
        group.start_soon(service.run)
        await eventually(lambda: service.health.last_success is not None, "the first sync")
        assert service.parts is not None
        new = sandbox.world.add_order()
        await eventually(
            lambda: f"Order #{new.number}: new order (Created)" in receiver.titles(), "delivery"
        )
        async with httpx.AsyncClient() as client:
            scrape = (await client.get(f"http://127.0.0.1:{ports[0]}/metrics")).text
        assert re.search(r"^orderwatch_poll_cycles_total [1-9]", scrape, re.MULTILINE)

        # an invalid file changes nothing
        original = path.read_text()
        path.write_text(original.replace("interval = 0.2", "interval = -1"))
        service.reload()
        assert "reload rejected: poll.interval: must be > 0" in caplog.text
        assert service.settings.poll.interval == 0.2

        # a valid one applies routes and poll settings at once, and names what needs a restart
        path.write_text(
            original.replace("interval = 0.2", "interval = 0.3\nmin_interval = 0.1")
            .replace("urls = [", 'statuses = ["Cancelled"]\nurls = [')
            .replace("max_rps = 200.0", "max_rps = 100.0")
        )
        service.reload()
        assert "configuration reloaded: 1 routes, 0 webhooks, 1 destinations, every 0.3s" in (
            caplog.text
        )
        assert "reload: changes to [api] take effect at restart" in caplog.text
        assert (service.settings.poll.interval, service.settings.poll.min_interval) == (0.3, 0.1)
        assert service.health.interval == 0.3
        assert service.settings.api.max_rps == 200.0
        quiet = sandbox.world.add_order()
        target = sandbox.world.open_ids[0]
        sandbox.world.set_status(target, "Cancelled")
        number = sandbox.world.by_id[target].number
        await eventually(
            lambda: any(t.startswith(f"Order #{number}: ") for t in receiver.titles()),
            "the cancellation",
        )
        assert f"Order #{quiet.number}: new order (Created)" not in receiver.titles()
        group.cancel_scope.cancel()

    assert service.parts is None
    assert "orderwatch stopped" in caplog.text
    stopping = service.metrics.registry.get_sample_value(
        "orderwatch_lifecycle", {"orderwatch_lifecycle": "stopping"}
    )
    assert stopping == 1.0
    open_store(tmp_path / "state.db", exclusive=True).close()  # the lock is released
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", ports[0]))  # the metrics listener is closed


async def test_a_state_file_held_by_another_daemon_is_one_error_not_a_group(
    tmp_path: Path, sandbox: Sandbox, receiver: Receiver
) -> None:
    settings = load_settings(config(tmp_path, sandbox, receiver))
    holder = open_store(settings.state.path, exclusive=True)
    try:
        with pytest.raises(StateError, match="another orderwatch"):
            await run_service(settings, ServiceOptions(handle_signals=False))
    finally:
        holder.close()


async def test_parts_built_before_a_failure_are_closed_again(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings.model_validate(
            {
                "api": sandbox_api(sandbox),
                "state": {"path": str(tmp_path / "state.db")},
                "metrics": {"listen": f"127.0.0.1:{port}"},
            }
        )
        with pytest.raises(OrderwatchError, match=str(port)):
            async with build_parts(
                settings,
                ServiceOptions(handle_signals=False),
                metrics=Metrics(),
                health=Health(30),
                notifier=SystemdNotifier({}),
            ):
                pytest.fail("built with the metrics port taken")
    open_store(tmp_path / "state.db", exclusive=True).close()  # the state file was let go


def test_the_unit_container_and_docs_give_a_stop_the_time_the_code_may_take() -> None:
    """A send already under way is finished at shutdown: a webhook's may take its whole
    timeout, so the stop timeout exceeds it, and everything that kills a slow stop agrees."""
    assert STOP_TIMEOUT > WEBHOOK_TIMEOUT
    seconds = f"{STOP_TIMEOUT:g}"
    unit = (ROOT / "systemd" / "orderwatch.service").read_text()
    assert re.findall(r"^TimeoutStopSec=(.*)$", unit, re.MULTILINE) == [f"{seconds}s"]
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    assert f"--stop-timeout {seconds} " in deploy
    assert f"docker stop -t {seconds}" in deploy
    assert f"stop_grace_period: {seconds}s" in deploy
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert f"within {seconds} seconds" in operations
    for doc in (deploy, operations):
        assert "within 10 seconds" not in doc
        assert "gives it 10 seconds" not in doc
