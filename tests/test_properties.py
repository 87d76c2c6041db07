"""Properties over random histories: whatever happens between requests (arrivals shifting the
pages, orders moving, duplicated and malformed items), the daemon's events equal the net
changes it could observe. The sandbox app runs in-process through ``httpx.MockTransport``."""

from __future__ import annotations

import contextlib
import random
import tempfile
from pathlib import Path

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from orderwatch import ApiError
from orderwatch._client import OrdersApi, RetryPolicy
from orderwatch._dispatch import Dispatcher
from orderwatch._metrics import Metrics
from orderwatch._poller import Poller
from orderwatch._sandbox import Faults, SandboxApp, World
from orderwatch._settings import ApiSettings
from orderwatch._store import StoredEvent, open_store

from .invariants import Delivered, violations

OPERATIONS = st.lists(
    st.sampled_from(["add", "burst", "move", "move", "cancel", "unknown", "none"]), max_size=30
)
NO_RETRIES = RetryPolicy(attempts=1, wait_initial=0, wait_max=0, wait_jitter=0)


def delivered(stored: list[StoredEvent]) -> list[Delivered]:
    return [
        Delivered(
            s.id,
            f"order.{s.event.kind}",
            s.event.order.number,
            s.event.previous_status,
            s.event.order.status,
        )
        for s in stored
    ]


async def scenario(seed: int, operations: list[str], faults: Faults, cycles: int) -> list[str]:
    world = World(seed=seed, orders=130, open_orders=6)
    rng = random.Random(seed)
    for order in rng.sample(world.newest_first[10:], 14):  # open orders deep in the history
        world.set_status(order.id, rng.choice(["Created", "Payed", "ReadyForDelivery"]))
    app = SandboxApp(world, faults=Faults(), fault_seed=seed)
    pending = list(operations)

    def meddle() -> None:
        """Between requests: the next random operation, shifting pages or moving an order."""
        if not pending:
            return
        op = pending.pop(0)
        if op == "add":
            world.add_order()
        elif op == "burst":  # a page's worth of arrivals: every predicted position shifts
            for _ in range(rng.randint(5, 25)):
                world.add_order()
        elif op in {"move", "cancel", "unknown"} and world.open_ids:
            order = world.by_id[rng.choice(world.open_ids)]
            nexts = {"Created": "Payed", "Payed": "ReadyForDelivery", "ReadyForDelivery": "AwaitingCertificateAssignment",
                     "PartiallyDelivered": "Delivered", "AwaitingCertificateAssignment": "Delivered"}  # fmt: skip
            target = {"cancel": "Cancelled", "unknown": "OnHold"}.get(
                op, nexts.get(order.status, "Delivered")
            )
            world.set_status(order.id, target)

    settings_ = ApiSettings(
        base_url="http://127.0.0.1:9",
        client_id="sandbox",
        client_secret="sandbox-secret",
        max_rps=10_000.0,
    )
    announced: list[StoredEvent] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "s.db")
        async with OrdersApi(settings_, transport=app.mock_transport(), retry=NO_RETRIES) as api:
            poller = Poller(
                api, store, Dispatcher(store, [], on_committed=announced.extend), Metrics()
            )
            await poller.cycle()  # the first sync, quiet
            initial = {o.number: o.status for o in world.newest_first}
            mark = len(world.history)
            app.before_list.append(meddle)
            app.faults = faults
            for _ in range(cycles):
                with contextlib.suppress(ApiError):  # a failed cycle must produce nothing false
                    await poller.cycle()
            app.before_list.clear()
            app.faults = Faults()
            pending.clear()
            await poller.cycle()
            await poller.cycle()
        store.close()
    now = {o.number: o.status for o in world.newest_first}
    return violations(initial, world.history[mark:], now, delivered(announced), complete=True)


@settings(max_examples=40)
@given(seed=st.integers(0, 10_000), operations=OPERATIONS, cycles=st.integers(1, 4))
def test_events_equal_the_net_observable_changes_whatever_happens_between_requests(
    seed: int, operations: list[str], cycles: int
) -> None:
    assert anyio.run(scenario, seed, operations, Faults(), cycles) == []


@settings(max_examples=25)
@given(
    seed=st.integers(0, 10_000),
    operations=OPERATIONS,
    duplicates=st.floats(0, 0.5),
    missing=st.floats(0, 0.3),
    errors=st.floats(0, 0.3),
    truncated=st.floats(0, 0.3),
)
def test_malformed_and_failed_answers_never_produce_a_false_event(  # noqa: PLR0917 - hypothesis
    seed: int,
    operations: list[str],
    duplicates: float,
    missing: float,
    errors: float,
    truncated: float,
) -> None:
    faults = Faults(duplicates=duplicates, missing=missing, errors=errors, truncated=truncated,
                    wrong_types=0.3, old_spelling=True, trailing_comma=True, alternate_keys=True)  # fmt: skip
    assert anyio.run(scenario, seed, operations, faults, 3) == []
