"""One poll cycle: ask the API what the planner chose, hand each answer to change detection,
commit the result with its deliveries. The I/O shell around :mod:`_detect` and :mod:`_planner`.

A cycle that fails half-way keeps what it committed (every commit is a real observation) and
produces nothing from what it could not read: no event, no vanished order.

Every store call goes through :meth:`~orderwatch._store.Store.call`: inline on a state file, in
the store's worker thread on a shared database, so that a round trip never blocks the event
loop (a page's detection and commit travel there together, as one call). What a commit
announces is announced back on the event loop.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from functools import partial

import anyio
import anyio.lowlevel

from orderwatch._client import OrdersApi
from orderwatch._detect import (
    Change,
    NewOrder,
    Transition,
    detect_changes,
    events_for,
    settled,
)
from orderwatch._dispatch import Dispatcher
from orderwatch._exceptions import first_orderwatch_error
from orderwatch._metrics import Metrics
from orderwatch._models import PAGE_SIZE, OrderPage, is_final
from orderwatch._pacing import Pacer, PacingPlan, plan_summary
from orderwatch._planner import (
    Straggler,
    arrivals_from_sightings,
    head_walk_continues,
    missing_from_page,
    plan_refresh,
    reconcile_pages,
)
from orderwatch._store import Store, StoredEvent
from orderwatch._walk import FetchLog, pages_to_reread

__all__ = ["Poller"]

log = logging.getLogger("orderwatch")

_PROGRESS_EVERY = 10.0  # seconds between first-sync progress lines
_FIRST_SYNC_WALKS = 3  # full walks a first sync makes while some orders are unreadable
# Rounds of re-reads a walk may take to prove it missed no order; each round is sent after
# every earlier answer, so one round closes a gap unless a page of orders arrives meanwhile.
_REREAD_ROUNDS = 20


@dataclass(slots=True)
class CycleReport:
    """What one cycle did."""

    pages: int = 0
    statuses: int = 0
    new_orders: int = 0
    transitions: int = 0
    events: int = 0
    rereads: int = 0  # list pages read again to prove a walk missed no order (in ``pages``)
    full_walk: bool = False
    exits: Counter[str] = field(default_factory=Counter)  # transitions, by the status left

    @property
    def requests(self) -> int:
        return self.pages + self.statuses


class _Progress:
    """First-sync progress: a log line every few seconds, a bar on an interactive stderr."""

    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self._store, self._clock = store, clock
        self._started = clock()
        self._last_line = 0.0
        self._bar = sys.stderr.isatty()

    async def update(self, page: int, total_pages: int, learned: int) -> None:
        now = self._clock()
        eta = ""
        if page and total_pages > page:
            remaining = (now - self._started) / page * (total_pages - page)
            eta = f", about {int(remaining // 60)}m{int(remaining % 60):02d}s left"
        if self._bar:
            done = int(30 * page / max(total_pages, 1))
            sys.stderr.write(
                f"\r  first sync [{'#' * done}{'.' * (30 - done)}] {page}/{total_pages}{eta}   "
            )
            sys.stderr.flush()
        if now - self._last_line >= _PROGRESS_EVERY or page >= total_pages or page == 1:
            self._last_line = now
            # `orderwatch status` shows this; written as often as the log line, not every page
            await self._store.call(
                partial(
                    self._store.set_meta,
                    sync_page=page,
                    sync_total_pages=total_pages,
                    sync_orders=learned,
                )
            )
            if self._bar:
                sys.stderr.write("\n")
            log.info(
                "first sync: page %d of %d, %d orders learned%s", page, total_pages, learned, eta
            )


class Poller:
    """Runs poll cycles against ``api``, recording into ``store``."""

    def __init__(
        self,
        api: OrdersApi,
        store: Store,
        dispatch: Dispatcher,
        metrics: Metrics,
        *,
        announce_initial: bool = False,
        clock: Callable[[], float] = time.time,
        on_page: Callable[[], None] = lambda: None,
        concurrency: int = 1,
        reconcile: float | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        """``dispatch`` decides who is told of what the cycles detect. ``concurrency``:
        independent requests in flight at once (inside the rate budget). ``reconcile``: the
        period in which to re-read the whole list, a few pages a cycle. ``pacer``: a request
        budget (``poll.budget``): each cycle fetches only what it says is due."""
        self._api, self._store, self._metrics = api, store, metrics
        self._dispatch = dispatch
        self._announce_initial = announce_initial
        self._clock = clock
        self._on_page = on_page
        self._concurrency = concurrency
        self._reconcile = reconcile
        self._newer_than: int | None = None
        self._unknown_to_api: set[str] = set()
        self._pacer = pacer
        self._total_pages = 1  # the list's length when last walked
        self.resume()
        if pacer is not None:
            metrics.poll_budget.set(pacer.budget)

    def resume(self) -> None:
        """Take the state as it stands: at start, and when this instance leads again after
        another did (the counts, and the rates the request budget learned, moved on)."""
        # Changes seen in the first cycle after a restart may span the time nobody watched.
        self._after_gap = self._store.first_sync_done
        self._counts: Counter[str] = Counter(self._store.status_counts())
        self._unknown_to_api.clear()
        self._metrics.set_order_counts(self._counts)
        if self._pacer is not None:
            saved = self._store.get_meta("budget_learned")
            if saved:
                self._pacer.learner.restore(json.loads(saved))

    def configure(self, *, announce_initial: bool, reconcile: float | None = None) -> None:
        """Apply a reloaded configuration."""
        self._announce_initial = announce_initial
        self._reconcile = reconcile

    @property
    def open_count(self) -> int:
        return sum(n for status, n in self._counts.items() if not is_final(status))

    async def cycle(self) -> CycleReport:
        """Run one cycle. Raises :class:`~orderwatch.ApiError` if it could not finish."""
        store = self._store
        report = CycleReport()
        first_sync, state, full_walk = await store.call(self._start_cycle)
        pacing = None if full_walk else await store.call(self._pace)
        # The floor made the cycle spend beyond the budget (counted once a cycle).
        floor_won = pacing is not None and (pacing.floor_wins or pacing.forced > 0)
        if pacing is None or pacing.walk_head:
            total_pages = await self._walk_head(
                state, report, full_walk=full_walk, first_sync=first_sync
            )
            self._total_pages = total_pages
        else:
            total_pages = self._total_pages  # positions follow the arrivals last measured
        if full_walk and not first_sync:
            await store.call(partial(store.set_meta, full_walk_requested=int(state.walk_unproven)))
        await store.call(partial(self._settle_arrivals, state))
        if pacing is not None and pacing.walk_head and not report.full_walk:
            pacing = await store.call(partial(self._pace_after_walk, state))
            floor_won = floor_won or pacing.forced > 0
        if floor_won:
            self._metrics.floor_wins.inc()
        await self._refresh_stragglers(
            state, report, total_pages, only=None if pacing is None else pacing.orders
        )
        if self._reconcile is not None and not full_walk:
            await self._reconcile_slice(state, report, total_pages)
        if not first_sync:
            reminders = await store.call(partial(self._dispatch.stuck_reminders, self._clock()))
            self._dispatch.announce(reminders)
            report.events += len(reminders)
        if first_sync:
            await store.call(partial(self._finish_first_sync, state))
        self._after_gap = False
        await store.call(partial(store.set_meta, last_successful_poll=self._clock()))
        if self._pacer is not None:
            await store.call(partial(self._paced, state, report, pacing))
        return report

    def _start_cycle(self) -> tuple[bool, _CycleState, bool]:
        """What a cycle starts from: whether it is (part of) the first sync, its state, and
        whether it walks the whole list."""
        first_sync = not self._store.first_sync_done
        # Meta keys keep the names older state files have ("baseline_*" is the first sync).
        head = self._store.get_meta("baseline_head") if first_sync else None
        self._newer_than = None if head is None else int(head)
        state = _CycleState(
            started=self._clock(),
            open_anchors=self._store.open_anchors(),
            arrivals=0 if not any(self._counts.values()) else None,
            previous_arrivals=self._store.arrivals,
            announce_new=self._announce_initial or not first_sync,
        )
        full_walk = first_sync or self._store.get_meta("full_walk_requested") == "1"
        return first_sync, state, full_walk

    def _pace(self) -> PacingPlan | None:
        """What the request budget says this cycle fetches (None: no budget)."""
        if self._pacer is None:
            return None
        pacing = self._pacer.plan(self._store.open_statuses(), self._store.arrivals, self._clock())
        if self._pacer.schedule is not None:
            self._metrics.expected_delay.set(self._pacer.schedule.expected_delay)
        return pacing

    def _pace_after_walk(self, state: _CycleState) -> PacingPlan:
        """The pages and ``/status`` requests due, placed by the arrivals the walk measured."""
        assert self._pacer is not None  # noqa: S101 - checked by the caller
        pacing = self._pacer.after_walk(
            self._store.open_statuses(),
            self._store.arrivals,
            self._clock(),
            state.seen,
            seen_at=state.started,
        )
        if self._pacer.schedule is not None:
            self._metrics.expected_delay.set(self._pacer.schedule.expected_delay)
        return pacing

    def _paced(self, state: _CycleState, report: CycleReport, pacing: PacingPlan | None) -> None:
        """Tell the request budget what the cycle saw; keep what it learned."""
        assert self._pacer is not None  # noqa: S101 - checked by the caller
        # A full walk's new orders are the list, not arrivals.
        self._pacer.observed(
            self._clock(),
            state.seen,
            head_walked=(pacing is None or pacing.walk_head) and not report.full_walk,
            counts=self._counts,
            exits=report.exits,
            arrivals=report.new_orders,
            seen_at=state.started,
            walked_all=report.full_walk,
        )
        for status, rate in self._pacer.learner.exit_rates().items():
            self._metrics.exit_rate.labels(status=status).set(rate)
        plan = (
            []
            if self._pacer.schedule is None
            else plan_summary(self._pacer.schedule, self._pacer.units)
        )
        self._store.set_meta(
            budget_learned=json.dumps(self._pacer.learner.to_json()),
            budget_plan=json.dumps({"arrivals": self._pacer.learner.arrival_rate, "groups": plan}),
        )

    async def _walk_head(
        self, state: _CycleState, report: CycleReport, *, full_walk: bool, first_sync: bool
    ) -> int:
        """Pages from 1 while they hold unseen orders (all of them in a full walk)."""
        progress = _Progress(self._store, self._clock) if first_sync else None
        report.full_walk = full_walk
        page_number = 1
        while True:
            page = await self._list(page_number, state, report)
            if first_sync and self._newer_than is None and page_number == 1:
                # Orders above today's newest arrive while the first sync walks: they are news.
                self._newer_than = max((o.number for o in page.orders), default=0)
                await self._store.call(
                    partial(self._store.set_meta, baseline_head=self._newer_than)
                )
            if not report.full_walk and state.unordered:  # _list checked this page's order
                log.warning(
                    "order list is not newest-first on page %d; walking it all", page_number
                )
                report.full_walk = True
            (glance,) = await self._ingest([(page_number, page)], state, report)
            if progress is not None:
                await progress.update(page_number, page.total_pages, state.learned)
            oldest_is_new = bool(page.orders) and page.orders[-1].id not in glance
            if not head_walk_continues(
                page, page_number, oldest_is_new=oldest_is_new, full_walk=report.full_walk
            ):
                return page.total_pages
            if report.full_walk:
                # Every page is wanted: the rest need not wait for each other.
                return await self._walk_rest(
                    page_number + 1, page.total_pages, state, report, progress
                )
            page_number += 1

    async def _walk_rest(
        self,
        first: int,
        total_pages: int,
        state: _CycleState,
        report: CycleReport,
        progress: _Progress | None,
    ) -> int:
        """The rest of a full walk, ``concurrency`` pages at a time, in windows, so that a
        growing ``totalPages`` is followed and an empty page ends the walk."""
        window = 8 * self._concurrency
        while first <= total_pages:
            numbers = range(first, min(total_pages, first + window - 1) + 1)
            pages: list[OrderPage] = []

            async def fetch(number: int, into: list[OrderPage]) -> None:
                into.append(await self._fetch_page(number, state, report))

            await self._concurrently([partial(fetch, n, pages) for n in numbers])
            await self._probe_if_unproven(state, report, {numbers[0] - 1, *numbers})
            total_pages = max([total_pages, *(p.total_pages for p in pages)])
            first = numbers[-1] + 1
            if progress is not None:
                await progress.update(numbers[-1], total_pages, state.learned)
            if any(not p.orders for p in pages):
                break  # past the end of the list
        if not await self._close_gaps(state, report, None, to_end=True):
            state.walk_unproven = True
        return total_pages

    async def _refresh_stragglers(
        self,
        state: _CycleState,
        report: CycleReport,
        total_pages: int,
        *,
        only: frozenset[str] | None = None,
    ) -> None:
        """Open orders the walk did not show (of ``only``, when the budget chose): their
        predicted pages, else ``/status``."""
        stragglers = [
            Straggler(order_id, anchor)
            for order_id, anchor in state.open_anchors.items()
            if order_id not in state.seen and (only is None or order_id in only)
        ]
        plan = plan_refresh(stragglers, state.arrivals or 0, total_pages=total_pages)
        by_status = list(plan.statuses)

        async def fetch(number: int, expected: tuple[str, ...]) -> None:
            page = await self._fetch_page(number, state, report)
            by_status.extend(missing_from_page(expected, page))

        await self._concurrently([partial(fetch, n, e) for n, e in plan.pages.items()])
        # Not before: a page fetched just now may have shown an order after all.
        await self._concurrently(
            [
                partial(self._refresh_by_status, order_id, report, state)
                for order_id in dict.fromkeys(by_status)
                if order_id not in state.seen
            ]
        )

    async def _list(
        self, number: int, state: _CycleState, report: CycleReport, *, probe: bool = False
    ) -> OrderPage:
        """Read list page ``number``, noting in the cycle's log when it was sent and answered."""
        sent = state.log.sending()
        page = await self._api.list_orders(number)
        report.pages += 1
        if not page.numbers_decrease:
            state.unordered = True
        numbers = (order.number for order in page.orders)
        state.log.answered(number, numbers, last=number >= page.total_pages, sent=sent, probe=probe)
        if not probe:
            state.fetched.add(number)
        return page

    async def _probe_if_unproven(
        self, state: _CycleState, report: CycleReport, pages: set[int]
    ) -> None:
        """After a window of pages read side by side that their orders alone do not prove
        gapless, read page 1: if its newest order is the one the window began under, nothing
        arrived while the window was read (one request, where re-reads would cost several)."""
        if not state.unordered and pages_to_reread(state.log.of_pages(pages), to_end=False):
            report.rereads += 1
            self._metrics.list_rereads.inc()
            await self._list(1, state, report, probe=True)

    async def _close_gaps(
        self, state: _CycleState, report: CycleReport, pages: set[int] | None, *, to_end: bool
    ) -> bool:
        """Read pages again until the answers for ``pages`` (all for None) are proven to show
        every order between their newest and oldest (down to the list's end with ``to_end``);
        see :mod:`_walk`. False when they could not be proven within the allowed rounds."""
        if state.unordered:
            return True  # not newest-first: no order of arrival to reason from; walked whole
        probed = False
        for _ in range(_REREAD_ROUNDS):
            wanted = pages_to_reread(
                state.log.of_pages(pages), snapshots=state.log.snapshots(), to_end=to_end
            )
            if not wanted:
                return True
            if len(wanted) > 1 and not probed:
                # One read of page 1 may prove that nothing arrived: cheaper than the re-reads.
                probed = True
                report.rereads += 1
                self._metrics.list_rereads.inc()
                await self._list(1, state, report, probe=True)
                continue
            report.rereads += len(wanted)
            self._metrics.list_rereads.inc(len(wanted))
            if pages is not None:
                pages.update(wanted)
            await self._concurrently([partial(self._fetch_page, n, state, report) for n in wanted])
        log.warning(
            "the list changed too fast to prove that a walk missed no order; it is walked again"
        )
        return False

    async def _fetch_page(self, number: int, state: _CycleState, report: CycleReport) -> OrderPage:
        """Fetch and ingest one of several pages in flight. Pages that land together are
        ingested together, in one transaction (a group commit): after landing, a fetch lets
        the others land theirs, and the first to resume ingests them all: all that landed
        before the store takes them (on a shared database, also those that landed while the
        commit before ran in the store's thread)."""
        page = await self._list(number, state, report)
        state.landed.append((number, page))
        await anyio.lowlevel.checkpoint()
        if state.landed and not state.commit_queued:  # else the queued commit takes it
            state.commit_queued = True
            count, committed = await self._store.call(partial(self._commit_landed, state))
            self._publish(committed, report)
            for _ in range(count):
                self._on_page()
        return page

    def _commit_landed(self, state: _CycleState) -> tuple[int, list[_Committed]]:
        """Commit every page landed so far (none: another call took them); how many."""
        state.commit_queued = False  # a page landing from now on queues the next commit
        landed: list[tuple[int, OrderPage]] = []
        with suppress(IndexError):  # a deque's popleft is atomic: pages may land meanwhile
            while True:
                landed.append(state.landed.popleft())
        if not landed:
            return 0, []
        _, committed = self._commit_pages(sorted(landed, key=lambda item: item[0]), state)
        return len(landed), committed

    async def _ingest(
        self, pages: list[tuple[int, OrderPage]], state: _CycleState, report: CycleReport
    ) -> list[dict[str, tuple[str, int | None]]]:
        """Detect and record the changes ``pages`` (number, page) show, in one transaction;
        then count and announce them. Returns what the state knew of each page's orders
        before (id → status, anchor)."""
        glances, committed = await self._store.call(partial(self._commit_pages, pages, state))
        self._publish(committed, report)
        for _ in pages:
            self._on_page()
        return glances

    def _commit_pages(
        self, pages: list[tuple[int, OrderPage]], state: _CycleState
    ) -> tuple[list[dict[str, tuple[str, int | None]]], list[_Committed]]:
        """The store's part of :meth:`_ingest`: look up, detect and write, in one transaction."""
        glances: list[dict[str, tuple[str, int | None]]] = []
        committed: list[_Committed] = []
        ids = [[order.id for order in page.orders] for _, page in pages]
        with self._store.batch():
            if len(ids) > 1 and sum(map(len, ids)) == len(set().union(*ids)):
                self._store.glance_ahead(ids)  # no order on two pages: see its promise
            for (number, page), page_ids in zip(pages, ids, strict=True):
                glance = self._store.glance(page_ids)
                committed.append(self._ingest_page(page, number, glance, state))
                glances.append(glance)
        return glances, committed

    async def _concurrently(self, jobs: Sequence[Callable[[], Awaitable[object]]]) -> None:
        """Run ``jobs`` at most ``concurrency`` at a time; the first API or state error is raised
        as is (the service tells those apart; a group of them would hide them)."""
        if not jobs:
            return
        limiter = anyio.CapacityLimiter(self._concurrency)

        async def run(job: Callable[[], Awaitable[object]]) -> None:
            async with limiter:
                await job()

        try:
            async with anyio.create_task_group() as group:
                for job in jobs:
                    group.start_soon(run, job)
        except BaseExceptionGroup as errors:
            first = first_orderwatch_error(errors)
            if first is None:
                raise
            raise first from None

    async def _reconcile_slice(
        self, state: _CycleState, report: CycleReport, total_pages: int
    ) -> None:
        """A few more pages of the slow full walk (``poll.full_sync_interval``)."""
        assert self._reconcile is not None  # noqa: S101 - checked by the caller
        store = self._store
        now = self._clock()
        cursor_meta, started_meta = await store.call(
            lambda: (store.get_meta("reconcile_cursor"), store.get_meta("reconcile_started"))
        )
        first = int(cursor_meta or 1)
        pages, cursor, started = reconcile_pages(
            first,
            total_pages,
            started=float(started_meta or now),
            now=now,
            full_sync_interval=self._reconcile,
            skip=state.fetched,
        )
        await self._concurrently([partial(self._fetch_page, n, state, report) for n in pages])
        # The slice spans the pages it read and those the cycle had read already.
        span = set(range(first if first <= total_pages else 1, cursor))
        if not await self._close_gaps(state, report, span, to_end=False):
            return  # the slice stays due: the next cycle reads it again
        await store.call(
            partial(store.set_meta, reconcile_cursor=cursor, reconcile_started=started)
        )

    def _finish_first_sync(self, state: _CycleState) -> None:
        if state.walk_unproven:
            return  # the walk may have missed orders: the next cycle walks again
        if state.rejected:
            tries = int(self._store.get_meta("baseline_tries") or 0) + 1
            self._store.set_meta(baseline_tries=tries)
            if tries < _FIRST_SYNC_WALKS:
                # An unreadable order learned later would be announced as new: walk again.
                log.warning(
                    "first sync: %d orders could not be read; walking the list again",
                    state.rejected,
                )
                return
            log.warning(
                "first sync: %d orders still unreadable after %d walks; going on without them",
                state.rejected,
                tries,
            )
        self._store.set_meta(baseline_done=1)
        log.info(
            "first sync done: %d orders known, %d open",
            sum(self._counts.values()),
            self.open_count,
        )

    def _ingest_page(
        self,
        page: OrderPage,
        page_number: int,
        glance: dict[str, tuple[str, int | None]],
        state: _CycleState,
    ) -> _Committed:
        if page.rejected:
            state.rejected += page.rejected
            self._metrics.malformed_orders.inc(page.rejected)
            log.warning("page %d: %d malformed orders ignored", page_number, page.rejected)
        base = (page_number - 1) * PAGE_SIZE
        anchors_before = {order_id: anchor for order_id, (_, anchor) in glance.items()}
        if state.arrivals is None:
            state.arrivals = arrivals_from_sightings(
                (base + i, anchors_before[o.id])
                for i, o in enumerate(page.orders)
                if o.id in anchors_before
            )
            if state.arrivals is not None:
                self._flush_deferred(state)
        anchors: dict[str, int] = {}
        if state.arrivals is None:  # anchors follow once the arrivals counter is known
            state.deferred.extend((order.id, base + i) for i, order in enumerate(page.orders))
        else:
            for i, order in enumerate(page.orders):
                anchors[order.id] = base + i - state.arrivals
        # Most known orders show the status the state holds: only the others are read whole.
        unchanged = settled({i: status for i, (status, _) in glance.items()}, page.orders)
        known = self._store.lookup([order_id for order_id in glance if order_id not in unchanged])
        changes = detect_changes(known, [o for o in page.orders if o.id not in unchanged])
        state.seen.update(order.id for order in page.orders)
        state.learned += sum(isinstance(change, NewOrder) for change in changes)
        return self._record(anchors, changes, anchors_before, announce_new=state.announce_new)

    def _flush_deferred(self, state: _CycleState) -> None:
        """Give the new orders seen before the arrivals counter was known their anchors."""
        arrivals = state.arrivals or 0
        anchors = [(order_id, index - arrivals) for order_id, index in state.deferred]
        state.deferred.clear()
        self._store.set_anchors(anchors)

    def _settle_arrivals(self, state: _CycleState) -> None:
        if state.arrivals is None:
            # No known order in sight: every order walked arrived since the last cycle.
            state.arrivals = state.previous_arrivals + len(state.deferred)
            self._flush_deferred(state)
        if state.arrivals != state.previous_arrivals:
            self._store.set_meta(arrivals=state.arrivals)

    async def _refresh_by_status(
        self, order_id: str, report: CycleReport, state: _CycleState
    ) -> None:
        status = await self._api.order_status(order_id)
        report.statuses += 1
        state.seen.add(order_id)
        committed = await self._store.call(partial(self._commit_status, order_id, status))
        if committed is not None:
            self._publish([committed], report)

    def _commit_status(self, order_id: str, status: str | None) -> _Committed | None:
        """Record what ``/status`` said of ``order_id``: its change, if any (None: nothing to
        announce)."""
        # Compare with what the store holds now, never with a snapshot from the cycle's start.
        known = self._store.lookup([order_id]).get(order_id)
        if known is None:
            return None
        if status is None:
            if known.order.id not in self._unknown_to_api:
                # An open order the API does not know: the list is not what we think. Walk it
                # all, once (an order that stays unknown does not make every cycle a full walk).
                self._store.set_meta(full_walk_requested=1)
                self._unknown_to_api.add(known.order.id)
                log.warning(
                    "order #%d: the API answers 404 for its status; keeping it open as %s",
                    known.order.number,
                    known.order.status,
                )
            return None
        self._unknown_to_api.discard(known.order.id)
        observed = replace(known.order, status=status)
        changes = detect_changes({known.order.id: known}, [observed])
        return self._record({}, changes, {}, announce_new=True)

    def _record(
        self,
        anchors: Mapping[str, int],
        changes: list[Change],
        anchors_before: Mapping[str, int | None],
        *,
        announce_new: bool,
    ) -> _Committed:
        """Write ``changes`` with their events and deliveries (in the caller's transaction, if
        it has one); :meth:`_publish` tells the rest of the daemon once it is committed."""
        now = self._clock()
        events = events_for(
            changes,
            announce_new=announce_new,
            after_gap=self._after_gap,
            now=now,
            newer_than=self._newer_than,
        )
        plan = self._dispatch.plan(events, now)
        stored = self._store.record(anchors, changes, plan, anchors_before=anchors_before, now=now)
        return _Committed(changes, stored, now)

    def _publish(self, committed: Sequence[_Committed], report: CycleReport) -> None:
        """Count, measure and announce what a commit wrote."""
        for item in committed:
            for change in item.changes:
                if isinstance(change, NewOrder):
                    report.new_orders += 1
                    self._counts[change.order.status] += 1
                else:
                    report.transitions += 1
                    report.exits[change.previous_status] += 1
                    self._counts[change.previous_status] -= 1
                    self._counts[change.order.status] += 1
                    self._measure(change, item.at)
            report.events += len(item.stored)
            self._dispatch.announce(item.stored)
        if any(item.changes for item in committed):
            self._metrics.set_order_counts(self._counts)

    def _measure(self, change: Transition, now: float) -> None:
        self._metrics.transitions.labels(
            from_status=change.previous_status, to_status=change.order.status
        ).inc()
        if change.previous.since_exact:  # only a stay whose start orderwatch saw
            self._metrics.status_duration.labels(status=change.previous_status).observe(
                now - change.previous.status_since
            )

    def mark_gap(self) -> None:
        """The watcher has been blind (an announced API outage): the changes the next
        successful cycle finds are announced as changes across a gap."""
        self._after_gap = True


@dataclass(frozen=True, slots=True)
class _Committed:
    """What one page (or one /status answer) wrote: to count and announce after the commit."""

    changes: list[Change]
    stored: list[StoredEvent]
    at: float


@dataclass(slots=True)
class _CycleState:
    started: float  # by the poller's clock
    open_anchors: dict[str, int | None]  # only what planning needs: memory is per open order
    arrivals: int | None
    previous_arrivals: int
    announce_new: bool = True
    seen: set[str] = field(default_factory=set)
    fetched: set[int] = field(default_factory=set)
    deferred: list[tuple[str, int]] = field(default_factory=list)
    landed: deque[tuple[int, OrderPage]] = field(default_factory=deque)  # fetched, not ingested
    commit_queued: bool = False  # a commit of landed pages waits for the store
    learned: int = 0
    rejected: int = 0
    log: FetchLog = field(default_factory=FetchLog)  # every list answer, in order of arrival
    unordered: bool = False  # a page was not newest-first: walks cannot be proven
    walk_unproven: bool = False  # a full walk may have missed orders
