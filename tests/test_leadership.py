"""Which instance polls: at once and for good on a state file; on a shared database, the holder
of the lease, handed over when it stops."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from orderwatch._leadership import Leadership
from orderwatch._metrics import Health, Metrics
from orderwatch._store import Store, open_store

from .test_service import eventually

pytestmark = pytest.mark.anyio


def leadership(store: Store, name: str) -> tuple[Leadership, Metrics, Health]:
    metrics, health = Metrics(), Health(0.1)
    keeper = Leadership(
        store, instance=name, lease=2.0, interval=0.1, metrics=metrics, health=health
    )
    return keeper, metrics, health


async def test_a_daemon_on_a_state_file_leads_at_once_and_for_good(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db", exclusive=True)
    keeper, metrics, health = leadership(store, "solo")
    with anyio.fail_after(5):
        await keeper.run()  # returns: nothing to renew on a file only this daemon opens
    assert (keeper.leader, keeper.epoch, health.role) == (True, 1, "leader")
    assert metrics.registry.get_sample_value("orderwatch_leader") == 1.0
    await keeper.release()  # a no-op: no other instance waits
    assert keeper.leader
    store.close()


async def test_a_standby_takes_over_once_the_leader_releases_the_lease(postgres_url: str) -> None:
    stores = [open_store(postgres_url) for _ in range(2)]
    (a, a_metrics, _), (b, _, b_health) = leadership(stores[0], "a"), leadership(stores[1], "b")
    async with anyio.create_task_group() as group:
        a_runs = anyio.CancelScope()

        async def run_a() -> None:
            with a_runs:
                await a.run()

        group.start_soon(run_a)
        with anyio.fail_after(5):
            first = await a.wait_elected()
        group.start_soon(b.run)
        await eventually(lambda: b_health.last_contact is not None, "b asking for the lease")
        assert (b.leader, b_health.role) == (False, "standby")
        a_runs.cancel()  # a stops: its lease keeper ends, then it releases the lease
        await a.release()
        assert not a.leader
        assert a_metrics.registry.get_sample_value("orderwatch_leader") == 0.0
        assert a_metrics.registry.get_sample_value("orderwatch_leader_changes_total") == 2.0
        with anyio.fail_after(5):
            second = await b.wait_elected()  # at its next try: well inside the 2 s lease
        assert second == first + 1
        assert b_health.role == "leader"
        group.cancel_scope.cancel()
    assert {(i.name, i.role) for i in stores[0].instances()} == {("a", "stopped"), ("b", "leader")}
    for store in stores:
        store.close()
