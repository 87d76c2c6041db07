"""Poll cycles against the sandbox Orders API on loopback: what is announced, what is asked."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from orderwatch._client import OrdersApi, RetryPolicy
from orderwatch._dispatch import Dispatcher
from orderwatch._metrics import Metrics
from orderwatch._poller import Poller
from orderwatch._sandbox import Sandbox, SandboxApp, World
from orderwatch._settings import ApiSettings
from orderwatch._sinks import Destination
from orderwatch._store import Store, StoredEvent, open_store
from orderwatch._stuck import StuckRule

from .conftest import round_trips

pytestmark = pytest.mark.anyio

DEST = Destination(route="ops", key="k", masked="json://…", url="json://127.0.0.1:1/")


@dataclass
class Rig:
    sandbox: Sandbox
    store: Store
    api: OrdersApi
    metrics: Metrics
    announced: list[StoredEvent]

    def poller(self, *, initial: bool = False) -> Poller:
        return Poller(self.api, self.store, self.dispatch(), self.metrics, announce_initial=initial)

    def dispatch(self) -> Dispatcher:
        return Dispatcher(self.store, [DEST], on_committed=self.announced.extend)

    def titles(self) -> list[str]:
        from orderwatch._messages import title_for

        return [title_for(s.event) for s in self.announced]


async def make_rig(
    sandbox: Sandbox, path: Path, transport: httpx.AsyncBaseTransport | None = None
) -> Rig:
    settings = ApiSettings(
        base_url=sandbox.url,
        client_id=sandbox.client_id,
        client_secret=sandbox.client_secret,
        max_rps=1000.0,
    )
    api = OrdersApi(
        settings,
        transport=transport,
        retry=RetryPolicy(attempts=2, wait_initial=0, wait_max=0, wait_jitter=0),
    )
    return Rig(sandbox, open_store(path), api, Metrics(), [])


@pytest.fixture
async def rig(sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[Rig]:
    made = await make_rig(sandbox, tmp_path / "state.db")
    yield made
    await made.api.aclose()
    made.store.close()


def world_changes(rig: Rig, start: int) -> list[str]:
    out = []
    for change in rig.sandbox.world.history[start:]:
        if change.previous is None:
            out.append(f"Order #{change.number}: new order ({change.status})")
        else:
            out.append(f"Order #{change.number}: {change.previous} → {change.status}")
    return out


async def test_the_first_cycle_learns_everything_silently(rig: Rig) -> None:
    report = await rig.poller().cycle()
    assert rig.announced == []
    assert report.full_walk
    assert report.pages == 3  # 50 orders
    assert sum(rig.store.status_counts().values()) == 50
    assert rig.store.first_sync_done


async def test_notify_initial_announces_the_orders_found_at_first_start(rig: Rig) -> None:
    await rig.poller(initial=True).cycle()
    assert len(rig.announced) == 50
    assert all(t.endswith(")") and "new order" in t for t in rig.titles())


async def test_every_change_between_cycles_is_announced_once(rig: Rig) -> None:
    poller = rig.poller()
    await poller.cycle()
    for _ in range(6):
        mark = len(rig.sandbox.world.history)
        rig.sandbox.step()
        expected = sorted(set(world_changes(rig, mark)))
        before = len(rig.announced)
        await poller.cycle()
        assert sorted(rig.titles()[before:]) == expected


async def test_a_quiet_cycle_with_open_orders_near_the_head_reads_one_page(rig: Rig) -> None:
    poller = rig.poller()
    await poller.cycle()
    report = await poller.cycle()
    assert report.requests == 1  # the 8 open orders all sit on page 1
    assert rig.announced == []


async def test_final_orders_are_never_asked_for_by_status(rig: Rig) -> None:
    poller = rig.poller()
    await poller.cycle()
    # push every open order deep into the history, then finish some of them
    for _ in range(45):
        rig.sandbox.world.add_order(status="Delivered")
    await poller.cycle()
    open_ids = set(rig.sandbox.world.open_ids)
    for order_id in list(open_ids)[:3]:
        rig.sandbox.world.set_status(order_id, "Cancelled")
    rig.sandbox.status_requests.clear()
    await poller.cycle()
    await poller.cycle()
    final = {o.id for o in rig.sandbox.world.newest_first if o.status in {"Delivered", "Cancelled"}}
    assert not final & set(rig.sandbox.status_requests[len(rig.sandbox.status_requests) // 2 :])
    assert not final & set(rig.sandbox.status_requests) - open_ids


async def test_open_orders_deep_in_history_are_refreshed_cheaply(rig: Rig) -> None:
    poller = rig.poller()
    await poller.cycle()
    for _ in range(60):
        rig.sandbox.world.add_order(status="Delivered")
    await poller.cycle()  # walks the 3 new pages, learns the shift
    target = rig.sandbox.world.open_ids[0]
    rig.sandbox.world.set_status(target, "Cancelled")
    before = len(rig.announced)
    report = await poller.cycle()
    # page 1 (nothing new) + the page(s) now holding the 8 old open orders, no per-order calls
    assert report.statuses == 0
    assert report.pages <= 3
    number = rig.sandbox.world.by_id[target].number
    assert any(
        t.startswith(f"Order #{number}: ") and t.endswith("→ Cancelled")
        for t in rig.titles()[before:]
    )


async def test_orders_arriving_during_the_walk_are_neither_missed_nor_doubled(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Before every list request two new orders land at the head, shifting every page."""

    class Shifting(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.AsyncHTTPTransport()
            self.active = False

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if self.active and request.url.path == "/v1/orders":
                with sandbox.lock:
                    sandbox.world.add_order()
                    sandbox.world.add_order()
            return await self.inner.handle_async_request(request)

        async def aclose(self) -> None:
            await self.inner.aclose()

    transport = Shifting()
    rig = await make_rig(sandbox, tmp_path / "s.db", transport)
    poller = rig.poller()
    await poller.cycle()
    transport.active = True
    for _ in range(3):
        await poller.cycle()
    transport.active = False
    await poller.cycle()  # catches up with the orders that landed during the last walk
    created = [t for t in rig.titles() if "new order" in t]
    assert len(created) == len(set(created))
    arrived = [c for c in sandbox.world.history if c.previous is None]
    assert len(created) == len(arrived)
    await rig.api.aclose()


async def test_a_failed_cycle_announces_nothing_and_loses_no_order(rig: Rig) -> None:
    from orderwatch import ApiError

    poller = rig.poller()
    await poller.cycle()
    counts = rig.store.status_counts()
    rig.sandbox.forced.extend([500, 500])
    with pytest.raises(ApiError):
        await poller.cycle()
    assert rig.announced == []
    assert rig.store.status_counts() == counts


async def test_a_restart_announces_the_net_change_once_saying_statuses_may_be_missed(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    path = tmp_path / "s.db"
    first = await make_rig(sandbox, path)
    await first.poller().cycle()
    await first.api.aclose()
    first.store.close()
    target = sandbox.world.open_ids[0]
    before = sandbox.world.by_id[target].status
    sandbox.world.set_status(target, "Payed" if before != "Payed" else "ReadyForDelivery")
    sandbox.world.set_status(target, "Cancelled")
    second = await make_rig(sandbox, path)
    poller = second.poller()
    await poller.cycle()
    [stored] = second.announced
    assert (stored.event.previous_status, stored.event.order.status) == (before, "Cancelled")
    assert stored.event.after_gap
    sandbox.world.add_order()
    await poller.cycle()
    assert not second.announced[-1].event.after_gap
    await second.api.aclose()


async def test_an_unknown_status_is_kept_open_reported_and_counted(rig: Rig) -> None:
    poller = rig.poller()
    await poller.cycle()
    target = rig.sandbox.world.open_ids[0]
    rig.sandbox.world.by_id[target].status = "OnHold"
    await poller.cycle()
    assert rig.titles()[-1].endswith("→ OnHold")
    assert rig.store.status_counts()["OnHold"] == 1
    assert target in {k.order.id for k in rig.store.open_orders()}
    assert rig.metrics.orders.labels(status="OnHold")._value.get() == 1


async def test_an_interrupted_first_sync_resumes_without_announcing(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    path = tmp_path / "s.db"
    first = await make_rig(sandbox, path)
    # page 2 fails for good: only page 1 is learned
    calls = {"n": 0}

    class FailSecondList(httpx.AsyncBaseTransport):
        inner = httpx.AsyncHTTPTransport()

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path == "/v1/orders" and "page=2" in str(request.url):
                calls["n"] += 1
                return httpx.Response(503)
            return await self.inner.handle_async_request(request)

        async def aclose(self) -> None:
            await self.inner.aclose()

    await first.api.aclose()
    first = await make_rig(sandbox, path, FailSecondList())
    from orderwatch import ApiError

    with pytest.raises(ApiError):
        await first.poller().cycle()
    assert not first.store.first_sync_done
    assert sum(first.store.status_counts().values()) == 20
    await first.api.aclose()
    first.store.close()
    arrived = [sandbox.world.add_order().number for _ in range(2)]  # while it was down
    second = await make_rig(sandbox, path)
    await second.poller().cycle()
    # the resumed first sync stays silent about old orders, not about ones newer than its start
    assert sorted(second.titles()) == [f"Order #{n}: new order (Created)" for n in arrived]
    assert second.store.first_sync_done
    assert sum(second.store.status_counts().values()) == 52
    await second.api.aclose()


async def test_the_first_sync_logs_its_progress_and_records_it(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="orderwatch")
    await rig.poller().cycle()
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("first sync: page 3 of 3, 50 orders learned") for line in lines)
    assert "first sync done: 50 orders known, 8 open" in lines
    assert rig.store.get_meta("sync_total_pages") == "3"


async def test_orders_arriving_while_the_first_sync_walks_are_announced(rig: Rig) -> None:
    """The first sync is silent about what existed, not about what arrives meanwhile."""
    arrived: list[int] = []

    def arrive() -> None:
        if rig.sandbox.requests["list"] > 1:  # after page 1: the walk is under way
            arrived.append(rig.sandbox.world.add_order().number)

    rig.sandbox.before_list.append(arrive)
    poller = rig.poller()
    await poller.cycle()
    rig.sandbox.before_list.clear()
    assert len(arrived) == 2
    await poller.cycle()  # they landed on page 1 behind the walk: the next cycle sees them
    assert sorted(rig.titles()) == sorted(f"Order #{n}: new order (Created)" for n in arrived)


async def test_a_first_sync_with_unreadable_orders_walks_again_and_announces_nothing_false(
    rig: Rig,
) -> None:
    from orderwatch._sandbox import Faults

    rig.sandbox.faults = Faults(missing=0.3)
    poller = rig.poller()
    await poller.cycle()
    assert not rig.store.first_sync_done  # some orders could not be read: not done yet
    rig.sandbox.faults = Faults()
    await poller.cycle()
    assert rig.store.first_sync_done
    assert sum(rig.store.status_counts().values()) == 50
    assert rig.announced == []  # no order that existed was announced as new


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class InFlight(httpx.AsyncBaseTransport):
    """Counts requests in flight at once (each takes a little while)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner, self.now, self.peak = inner, 0, 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import anyio

        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await anyio.sleep(0.02)
            return await self.inner.handle_async_request(request)
        finally:
            self.now -= 1


def in_memory_api(
    app: SandboxApp, inner: httpx.AsyncBaseTransport | None = None
) -> tuple[OrdersApi, InFlight]:
    """A client of ``app`` (or of ``inner``) through :class:`InFlight` (every request takes
    20 ms), no retries."""
    transport = InFlight(inner or app.mock_transport())
    settings = ApiSettings(
        base_url="http://127.0.0.1:9",
        client_id="sandbox",
        client_secret="sandbox-secret",
        max_rps=10_000.0,
    )
    retry = RetryPolicy(attempts=1, wait_initial=0, wait_max=0, wait_jitter=0)
    return OrdersApi(settings, transport=transport, retry=retry), transport


async def scattered_rig(tmp_path: Path, **poller: object) -> tuple[Rig, Poller, InFlight]:
    """Open orders scattered alone through the history: refreshed by /status, one each."""
    world = World(seed=4, orders=200, open_orders=0)
    for order in world.newest_first[20::15]:
        world.set_status(order.id, "Payed")
    app = SandboxApp(world)
    api, transport = in_memory_api(app)
    rig = Rig(app, open_store(tmp_path / "s.db"), api, Metrics(), [])  # type: ignore[arg-type]
    instance = Poller(api, rig.store, rig.dispatch(), rig.metrics, **poller)  # type: ignore[arg-type]
    await instance.cycle()
    return rig, instance, transport


async def test_independent_requests_run_concurrently_within_api_concurrency(tmp_path: Path) -> None:
    rig, poller, transport = await scattered_rig(tmp_path, concurrency=4)
    transport.peak = 0
    report = await poller.cycle()
    assert report.requests >= 8  # one head page, then pages and /status calls side by side
    assert transport.peak == 4
    await rig.api.aclose()


async def test_one_request_at_a_time_when_concurrency_is_one(tmp_path: Path) -> None:
    rig, poller, transport = await scattered_rig(tmp_path, concurrency=1)
    transport.peak = 0
    await poller.cycle()
    assert transport.peak == 1
    await rig.api.aclose()


async def test_the_slow_full_walk_finds_an_order_the_head_walk_cannot_see(tmp_path: Path) -> None:
    """An order that appears deep in the list (not at the head) is found within one period."""
    clock = FakeClock()
    rig, poller, _ = await scattered_rig(tmp_path, reconcile=100.0, clock=clock)
    hidden = rig.sandbox.world._make_order()
    rig.sandbox.world.newest_first.insert(45, hidden)  # page 3: a lone straggler, read by /status
    rig.sandbox.world.by_id[hidden.id] = hidden
    for _ in range(11):
        clock.now += 10.0  # a tenth of the period: a page more each cycle
        await poller.cycle()
    assert f"Order #{hidden.number}: new order (Created)" in rig.titles()
    await rig.api.aclose()


async def test_an_open_order_unknown_to_the_api_makes_the_next_cycle_walk_everything(
    rig: Rig,
) -> None:
    poller = rig.poller()
    await poller.cycle()
    for _ in range(45):
        rig.sandbox.world.add_order(status="Delivered")
    await poller.cycle()
    gone = rig.sandbox.world.open_ids[0]
    rig.sandbox.world.newest_first.remove(rig.sandbox.world.by_id.pop(gone))
    report = await poller.cycle()
    assert not report.full_walk
    assert (await poller.cycle()).full_walk
    assert not (await poller.cycle()).full_walk


def commits_of(store: Store) -> list[str]:
    """Every COMMIT the store's connection runs from now on."""
    seen: list[str] = []
    store._db.set_trace_callback(lambda sql: seen.append(sql) if sql == "COMMIT" else None)
    return seen


async def moved_walk(tmp_path: Path, concurrency: int) -> tuple[Rig, Poller, list[str]]:
    """A baseline of 200 open orders, then 30 of them cancelled and a full walk requested."""
    world = World(seed=5, orders=200, open_orders=200)
    app = SandboxApp(world)
    api, _ = in_memory_api(app)
    rig = Rig(app, open_store(tmp_path / f"s{concurrency}.db"), api, Metrics(), [])  # type: ignore[arg-type]
    poller = Poller(api, rig.store, rig.dispatch(), rig.metrics, concurrency=concurrency)
    await poller.cycle()
    mark = len(world.history)
    for order_id in world.open_ids[::7][:30]:
        world.set_status(order_id, "Cancelled")
    rig.store.set_meta(full_walk_requested=1)
    return rig, poller, sorted(world_changes(rig, mark))


async def test_pages_that_land_together_are_committed_together(tmp_path: Path) -> None:
    one, one_poller, expected = await moved_walk(tmp_path, concurrency=1)
    commits = commits_of(one.store)
    await one_poller.cycle()
    one_commits = len(commits)
    four, four_poller, _ = await moved_walk(tmp_path, concurrency=4)
    commits = commits_of(four.store)
    report = await four_poller.cycle()
    assert report.pages == 10  # 200 orders
    assert sorted(one.titles()) == sorted(four.titles()) == expected
    # One commit for each group of pages that landed together (and one to sync each group
    # that carried events), where one page at a time commits each page with changes by itself.
    assert len(commits) < one_commits
    await one.api.aclose()
    await four.api.aclose()


async def test_a_batch_that_cannot_be_written_announces_nothing_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orderwatch import StateError

    rig, poller, expected = await moved_walk(tmp_path, concurrency=4)
    record = Store.record
    calls = 0

    def failing_later(self: Store, *args: object, **kwargs: object) -> list[StoredEvent]:
        nonlocal calls
        calls += 1
        if calls == 7:  # page 7, the second of the group 6-9: the whole group rolls back
            raise StateError("state: cannot write s4.db: disk I/O error")
        return record(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Store, "record", failing_later)
    with pytest.raises(StateError):
        await poller.cycle()
    partial = rig.titles()
    assert 0 < len(partial) < len(expected)
    monkeypatch.setattr(Store, "record", record)
    rig.store.set_meta(full_walk_requested=1)
    await poller.cycle()
    # What was rolled back was never announced, and is found again: each change exactly once.
    assert sorted(rig.titles()) == expected
    await rig.api.aclose()


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("number_step", "backend"),
    [(1, "sqlite"), (9, "sqlite"), (1, "postgresql")],
    ids=["consecutive-numbers", "sparse-numbers", "consecutive-numbers-postgresql"],
)
async def test_a_first_sync_under_arrivals_and_retried_pages_learns_every_order(
    tmp_path: Path, number_step: int, backend: str, request: pytest.FixtureRequest
) -> None:
    """Issue 10: 2,500 orders, a new one at the head every 100 ms, one request in ten failing
    and one in thirty dropped, four pages in flight. Retried pages answer after their
    successors while orders shift between them; every order must still be learned (on
    PostgreSQL too, where pages committed together are read ahead at once)."""
    from orderwatch._exceptions import ApiError
    from orderwatch._sandbox import Faults

    world = World(
        seed=10,
        orders=2500,
        open_orders=30,
        arrival_rate=1,
        move_rate=0,
        cancel_rate=0,
        number_step=number_step,
    )
    with Sandbox(world, fault_seed=3) as sandbox:
        settings = ApiSettings(
            base_url=sandbox.url,
            client_id=sandbox.client_id,
            client_secret=sandbox.client_secret,
            max_rps=400.0,
        )
        retry = RetryPolicy(attempts=8, wait_initial=0.05, wait_max=0.3, wait_jitter=0.05)
        location: Path | str = tmp_path / "state.db"
        if backend == "postgresql":
            location = request.getfixturevalue("postgres_url")
        store = open_store(location)
        async with OrdersApi(settings, retry=retry) as api:
            metrics = Metrics()
            poller = Poller(api, store, Dispatcher(store, [DEST]), metrics, concurrency=4)
            sandbox.faults = Faults(errors=0.1, resets=1 / 30)
            sandbox.tick_every(0.1)
            rereads = 0
            for _ in range(10):
                try:
                    rereads += (await poller.cycle()).rereads
                except ApiError:
                    continue
                if store.first_sync_done:
                    break
            sandbox.stop_ticking()
            sandbox.faults = Faults()
            assert store.first_sync_done
            await poller.cycle()  # quiet now: the head walk picks up the last arrivals
        known = {order["id"] for order in store.export()}
        store.close()
    with sandbox.lock:
        missing = [o.number for o in world.newest_first if o.id not in known]
    assert missing == []
    assert rereads > 0  # the faults did open holes, and re-reads closed them


class Reordering(httpx.AsyncBaseTransport):
    """Answers one list page only after its successor answered, with orders arriving at the
    head in between: the pattern that opens a hole between two pages read side by side."""

    def __init__(self, app: SandboxApp) -> None:
        import anyio

        self.app, self.inner = app, app.mock_transport()
        self.late: int | None = None  # the page to answer late
        self.successor: int | None = None
        self.successor_answered = anyio.Event()
        self.pages: list[int] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        page = int(request.url.params.get("page", 0))
        self.pages.append(page)
        if self.late is not None and page == self.late:
            self.late, self.successor = None, page + 1
            await self.successor_answered.wait()
            for _ in range(5):
                self.app.world.add_order(status="Delivered")
        response = await self.inner.handle_async_request(request)
        if page == self.successor:
            self.successor = None
            self.successor_answered.set()
        return response

    async def aclose(self) -> None:
        pass


async def third_reconcile_cycle(tmp_path: Path, *, late: int | None) -> tuple[int, list[int], str]:
    """Re-reads, pages requested and the slow walk's cursor after a cycle whose due slice is
    pages 2 to 4, read four at a time; with ``late``, that page answers after its successor."""
    app = SandboxApp(World(seed=4, orders=200, open_orders=3))
    transport = Reordering(app)
    clock = FakeClock()
    store = open_store(tmp_path / "s.db")
    async with in_memory_api(app, transport)[0] as api:
        poller = Poller(
            api,
            store,
            Dispatcher(store, [DEST]),
            Metrics(),
            concurrency=4,
            reconcile=100.0,
            clock=clock,
        )
        await poller.cycle()  # the first sync
        await poller.cycle()  # the slow walk begins: page 1, read by the head walk anyway
        clock.now += 30.0  # pages 2 to 4 fall due
        transport.late, transport.pages = late, []
        report = await poller.cycle()
    cursor = store.get_meta("reconcile_cursor") or ""
    store.close()
    return report.rereads, [p for p in transport.pages if p > 1], cursor


async def test_a_reconcile_slice_whose_pages_answer_out_of_order_reads_the_gap_again(
    tmp_path: Path,
) -> None:
    rereads, pages, cursor = await third_reconcile_cycle(tmp_path, late=2)
    assert rereads == 1
    assert sorted(pages) == [2, 3, 3, 4]  # page 3 again, sent after page 2 answered
    assert cursor == "5"


async def test_a_quiet_reconcile_slice_costs_no_extra_request(tmp_path: Path) -> None:
    rereads, pages, cursor = await third_reconcile_cycle(tmp_path, late=None)
    assert rereads == 0
    assert sorted(pages) == [2, 3, 4]
    assert cursor == "5"


async def test_on_a_shared_database_no_round_trip_of_a_cycle_blocks_the_event_loop(
    postgres_url: str,
) -> None:
    """Every store call of a cycle (walks, status refreshes, stuck reminders, the reconcile
    slice, meta values) runs in the store's worker thread; what it announces is announced
    back on the event loop."""
    world = World(seed=8, orders=120, open_orders=40)
    app = SandboxApp(world)
    api, _ = in_memory_api(app)
    store = open_store(postgres_url)
    loop = threading.current_thread()
    announced_on: list[bool] = []
    rig = Rig(app, store, api, Metrics(), [])  # type: ignore[arg-type]

    def announce(stored: list[StoredEvent]) -> None:
        announced_on.append(threading.current_thread() is loop)
        rig.announced.extend(s for s in stored if s.event.kind != "stuck")

    dispatch = Dispatcher(
        store, [DEST], stuck_rules=[StuckRule("Payed", after=0.001)], on_committed=announce
    )
    async with api:
        poller = Poller(api, store, dispatch, rig.metrics, concurrency=4, reconcile=60.0)
        blocking = round_trips(store)
        await poller.cycle()  # the first sync
        mark = len(world.history)
        for order_id in world.open_ids[::3]:
            world.set_status(order_id, "Payed")
        world.add_order()
        await poller.cycle()
    store.close()
    assert blocking
    assert not any(blocking)
    assert announced_on
    assert all(announced_on)
    assert sorted(rig.titles()) == sorted(set(world_changes(rig, mark)))


async def test_a_new_term_as_leader_continues_from_what_the_other_leader_learned(
    tmp_path: Path,
) -> None:
    """The request budget's learned rates are read again when this instance leads again:
    another leader kept learning meanwhile, into the same state."""
    import json

    from orderwatch._pacing import Pacer
    from orderwatch._quota import RequestLedger
    from orderwatch._rates import RateLearner

    app = SandboxApp(World(seed=3, orders=40, open_orders=10))
    api, _ = in_memory_api(app)
    store = open_store(tmp_path / "s.db")
    pacer = Pacer(3600.0, 60.0, 1.0, RequestLedger(3600.0, None))
    poller = Poller(api, store, Dispatcher(store, [DEST]), Metrics(), pacer=pacer)
    other = RateLearner()
    other.advance(1000.0, {"Payed": 5})
    other.advance(4600.0, {"Payed": 5})
    other.exited("Payed", 7)
    other.arrived(30)
    store.set_meta(budget_learned=json.dumps(other.to_json()))  # the other leader's last save
    assert pacer.learner.to_json() != other.to_json()
    poller.resume()
    assert pacer.learner.to_json() == other.to_json()
    await api.aclose()
    store.close()


async def test_when_the_floor_needs_more_than_the_budget_every_change_is_still_seen_and_counted(
    tmp_path: Path,
) -> None:
    """A budget that cannot read every page once per ``poll.interval`` loses to the floor:
    nothing goes unread, and each cycle that spends beyond the budget is counted."""
    from orderwatch._pacing import Pacer
    from orderwatch._quota import RequestLedger

    app = SandboxApp(World(seed=4, orders=120, open_orders=50))
    api, _ = in_memory_api(app)
    store = open_store(tmp_path / "s.db")
    now = [1_000_000.0]
    metrics, announced = Metrics(), []
    pacer = Pacer(2.0, 60.0, 1.0, RequestLedger(2.0, None))  # 2 an hour; the floor needs 180
    poller = Poller(
        api, store, Dispatcher(store, [DEST], on_committed=announced.extend), metrics,
        clock=lambda: now[0], pacer=pacer,
    )  # fmt: skip
    await poller.cycle()  # the first sync
    world = app.world
    mark = len(world.history)
    for order_id in list(world.open_ids):
        world.set_status(order_id, "Cancelled")
    now[0] += 61.0
    await poller.cycle()  # one cycle reads all three pages, where the budget allows two
    told = {(s.event.order.number, s.event.order.status) for s in announced}
    assert told == {(c.number, c.status) for c in world.history[mark:]}
    assert len(told) == 50
    counted = metrics.registry.get_sample_value("orderwatch_poll_budget_floor_wins_total")
    assert counted == 1  # the cycle after the first sync planned past the budget
    await api.aclose()
    store.close()
