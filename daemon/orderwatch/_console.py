"""Chat as the console: the watcher's notices, the summaries, the ack page's access to state.

The I/O shell around the pure :mod:`_watcher`, :mod:`_summary` and :mod:`_silences`:

- :class:`Console` turns poll and delivery outcomes into watcher notices and due summaries into
  summary events, has dispatch plan their deliveries, commits them (so they are sent, retried
  and silenced like any event) and keeps the watcher's state in the state; its store work runs
  through ``Store.call`` (off the event loop on a shared database). With several
  instances on one database only the leader runs it (the service sees to that), and a summary
  is recorded only by the instance that moves its period on (``Store.record_summary``): two
  instances never both send it.
- :func:`build_summary` reads a period from the state.
- :class:`StateDesk` is what the ack page reads and writes, through its own connection (the
  page is served from another thread).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import anyio

from orderwatch._acklink import AckToken
from orderwatch._detect import Event, Note
from orderwatch._dispatch import Dispatcher
from orderwatch._messages import title_for
from orderwatch._settings import Settings, SummarySettings
from orderwatch._silences import Ack, active_ack
from orderwatch._sinks import Destination
from orderwatch._store import Store, StoredEvent, open_store
from orderwatch._summary import StuckOrder, Summary, SummaryTemplates, due_period, summarize
from orderwatch._watcher import Notice, WatcherState, notice_event
from orderwatch._web import EpisodeView

__all__ = [
    "Console",
    "StateDesk",
    "build_summary",
    "summary_event",
    "summary_key",
]

log = logging.getLogger("orderwatch")

_WATCHER_META = "watcher"


def summary_key(summary: SummarySettings) -> str:
    """What the state remembers a summary's last period by."""
    return f"{summary.route}/{summary.every}"


def build_summary(store: Store, start: float, end: float, now: float) -> Summary:
    """The summary of ``start`` … ``end`` from the state; open and stuck orders as of now."""
    events = store.events_between(start, end)
    delivered = {e.order.id for e in events if e.order.status == "Delivered"}
    open_orders = store.open_orders()
    acks = store.acks()
    stuck = [
        StuckOrder(
            known.order.number,
            known.order.status,
            known.status_since,
            active_ack(acks, known.order.id, known.order.status, known.status_since, now),
        )
        for known in open_orders
        if known.stuck_alerts
    ]
    return summarize(
        start=start,
        end=end,
        events=events,
        created_at=store.created_at(delivered),
        open_orders=open_orders,
        stuck=stuck,
    )


def summary_templates(settings: Settings, summary: SummarySettings) -> SummaryTemplates:
    route = next(r for r in settings.notify.routes if r.name == summary.route)
    return SummaryTemplates(
        route.summary_title, route.summary_body, route.format, summary.schedule()
    )


def summary_event(
    settings: Settings, summary: SummarySettings, content: Summary, now: float
) -> Event:
    """The ``summary`` event, made ``now``, that sends ``content`` to ``summary``'s route, in
    the route's words."""
    title, body = summary_templates(settings, summary).render(content)
    data: dict[str, object] = {"route": summary.route, "start": content.start, "end": content.end}
    return Event.about("summary", Note("summary", title, body, data, summary.route), now)


class Console:
    """Watcher notices and summaries, committed as events. Runs in the daemon's event loop.

    ``dispatch`` decides who is told (:func:`_routing.recipients`: a summary goes to its route,
    a failing destination's notice to the others) and wakes the courier; ``on_blind`` is called
    when an API outage is announced (the changes found after it are changes across a gap).

    Every store call goes through :meth:`~orderwatch._store.Store.call` (in a worker thread on
    a shared database): the decisions and the commits run there, what was committed is
    announced back on the event loop. One outcome is handled at a time, in order: the watcher's
    state moves on only once its commit holds (a failed one is decided again)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        destinations: Sequence[Destination],
        dispatch: Dispatcher,
        *,
        on_blind: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store, self._dispatch, self._clock = store, dispatch, clock
        self._on_blind = on_blind
        self._settings = settings
        self._keys = {d.key for d in destinations}
        self._state: WatcherState | None = None  # read from the store when first needed
        self._reconfigured = True  # outages of destinations not in ``_keys`` to forget
        self._lock = anyio.Lock()

    async def resume(self) -> None:
        """Take the watcher's state from the store again (when this instance becomes the
        leader: another may have moved it on meanwhile)."""
        async with self._lock:
            self._state = None

    def configure(self, settings: Settings, destinations: Sequence[Destination]) -> None:
        """Use these settings from now on (reload); outages of destinations no longer
        configured are forgotten (with the next outcome or tick)."""
        self._settings = settings
        self._keys = {d.key for d in destinations}
        self._reconfigured = True

    # -- the watcher ------------------------------------------------------------------------

    async def poll_outcome(self, reason: str | None) -> None:
        """A poll cycle ended: ``reason`` None when it succeeded, else why it failed (words)."""
        async with self._lock:
            state = await self._current()
            decision = state.poll(ok=reason is None, now=self._clock(), reason=reason)
            await self._update(decision.state, decision.notices)
        await self.tick()

    async def delivery_outcome(self, destination: Destination, error: str | None) -> None:
        """A send ended (the courier's hook): ``error`` None when it was accepted."""
        async with self._lock:
            state = await self._current()
            decision = state.delivery(
                destination.key,
                destination.route,
                ok=error is None,
                now=self._clock(),
                reason=error,
            )
            await self._update(decision.state, decision.notices)

    async def tick(self) -> None:
        """Send what is due now: notices of outages that lasted ``notify.watcher_after``, and
        summaries whose time has come."""
        async with self._lock:
            now = self._clock()
            state = await self._current()
            decision = state.due(now, self._settings.notify.watcher_after)
            await self._update(decision.state, decision.notices)
            if self._settings.notify.summaries:
                summaries = await self._store.call(
                    partial(self._record_summaries, self._settings, now)
                )
                for route, event, stored in summaries:
                    log.info("summary for %s: %s", route, title_for(event))
                    self._dispatch.announce(stored)

    async def _current(self) -> WatcherState:
        """The watcher's state (under the lock): read from the store when not yet, without
        the outages of destinations no longer configured."""
        state = self._state
        if state is None:
            state = WatcherState.from_json(
                await self._store.call(partial(self._store.get_meta, _WATCHER_META))
            )
            self._state, self._reconfigured = state, True
        if self._reconfigured:
            state = await self._update(state.forget_except(self._keys), [])
            self._reconfigured = False
        return state

    async def _update(self, state: WatcherState, notices: list[Notice]) -> WatcherState:
        """Commit ``state`` and ``notices`` (under the lock), then announce the notices;
        returns ``state``, now the watcher's."""
        if not notices:
            if state != self._state:
                await self._store.call(
                    partial(self._store.set_meta, **{_WATCHER_META: state.to_json()})
                )
            self._state = state
            return state
        stored = await self._store.call(partial(self._record_notices, state, notices))
        self._state = state
        for notice in notices:
            log.log(
                logging.INFO if notice.case.endswith("recovered") else logging.WARNING,
                "watcher: %s%s",
                notice.case,
                f" ({notice.name})" if notice.name else "",
            )
            if notice.case == "api_unreachable":
                self._on_blind()
        self._dispatch.announce(stored)
        return state

    def _record_notices(self, state: WatcherState, notices: list[Notice]) -> list[StoredEvent]:
        """The store's part of :meth:`_update` (in the store's worker thread)."""
        now = self._clock()
        plan = [
            (event, targets)
            for event, targets in self._dispatch.plan([notice_event(n) for n in notices], now)
            if targets
        ]
        # The notices and the state that they were sent commit at once: none is sent twice.
        return self._store.record_notes(plan, meta={_WATCHER_META: state.to_json()})

    # -- summaries --------------------------------------------------------------------------

    def _record_summaries(
        self, settings: Settings, now: float
    ) -> list[tuple[str, Event, list[StoredEvent]]]:
        """Record the summaries due ``now`` (in the store's worker thread): each one's route,
        event and what was committed, to announce on the event loop."""
        recorded = []
        for summary in settings.notify.summaries:
            key = summary_key(summary)
            schedule = summary.schedule()
            last = self._store.summary_sent(key)
            if last is None:  # the first start only sets the clock going
                self._store.record_summary(key, schedule.last_due(now), [])
                continue
            period = due_period(schedule, last, now)
            if period is None:
                continue
            start, end = period
            content = build_summary(self._store, start, end, now)
            event = summary_event(settings, summary, content, now)
            plan = [(e, targets) for e, targets in self._dispatch.plan([event], now) if targets]
            stored = self._store.record_summary(key, end, plan)
            if stored is not None:  # else another instance recorded (and sends) it
                recorded.append((summary.route, event, stored))
        return recorded


class StateDesk:
    """The ack page's view of the state (a file's path or a database's URL), through a
    connection of its own per request."""

    def __init__(self, location: Path | str, clock: Callable[[], float] = time.time) -> None:
        self._location, self._clock = location, clock

    def episode(self, order_id: str) -> EpisodeView | None:
        store = open_store(self._location)
        try:
            known = store.lookup([order_id]).get(order_id)
            if known is None:
                return None
            ack = store.ack_of_episode(order_id, known.order.status, known.status_since)
            if ack is not None and not ack.covers(
                known.order.status, known.status_since, self._clock()
            ):
                ack = None
            return EpisodeView(known.order.number, known.order.status, known.status_since, ack)
        finally:
            store.close()

    def acknowledge(self, token: AckToken, by: str | None, comment: str | None) -> Ack | None:
        store = open_store(self._location)
        try:
            known = store.lookup([token.order_id]).get(token.order_id)
            if known is None or known.order.status != token.status:
                return None
            if abs(known.status_since - token.since) >= 0.001:
                return None
            ack = Ack(
                known.order.id,
                known.order.number,
                known.order.status,
                known.status_since,
                self._clock(),
                math.inf,
                by,
                comment,
            )
            store.add_ack(ack)
            log.info("order #%d: %s (ack page)", ack.number, ack.describe())
            return ack
        finally:
            store.close()
