"""Pacing under a request budget: the state the budget needs between cycles (what was seen
when, the learned rates, the hour's spend) around the pure choices of :mod:`_budget`.

Each cycle the poller asks :meth:`Pacer.plan` which open orders to look at (and whether to walk
the head), fetches them, then tells :meth:`Pacer.observed` what it saw; :meth:`Pacer.wait`
says when the next cycle is due. No I/O here but the ledger's file.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from orderwatch._budget import (
    HEAD,
    Choice,
    OpenOrder,
    Schedule,
    Unit,
    allocate,
    allowance,
    choose,
    floor_budget,
    last_fetched,
    next_due,
    units_for,
)
from orderwatch._models import is_final
from orderwatch._quota import RequestLedger
from orderwatch._rates import RateLearner

__all__ = ["Pacer", "PacingPlan", "open_units", "plan_summary"]

log = logging.getLogger("orderwatch")

PLANNED_SHARE = 0.95  # of the budget the schedule plans: the rest absorbs fallbacks and retries
_WARN_EVERY = 3600.0  # seconds between two warnings that the floor won over a spent hour
_WINDOW = 3660.0  # seconds a request counts in the ledger (an hour of whole minutes)


def open_units(
    open_orders: Mapping[str, tuple[str, int | None]], arrivals: int, learner: RateLearner
) -> list[Unit]:
    """The units showing ``open_orders`` (id → status, anchor), valued by ``learner``;
    ``arrivals`` turns an anchor into today's index (the last count measured)."""
    orders = [
        OpenOrder(order_id, status, None if anchor is None else anchor + arrivals)
        for order_id, (status, anchor) in open_orders.items()
    ]
    return units_for(orders, learner.exit_rates(), learner.arrival_rate)


@dataclass(frozen=True, slots=True)
class PacingPlan:
    """What a cycle looks at: the head walk, and the open orders whose unit is due."""

    walk_head: bool
    orders: frozenset[str]
    units: tuple[Unit, ...]
    forced: int = 0  # requests beyond the budget to keep the floor
    floor_wins: bool = False  # the floor alone needs more than the budget


@dataclass(slots=True)
class Pacer:
    """The request budget's memory between cycles. ``budget``: requests an hour;
    ``floor_period``: seconds (``poll.interval``); ``shortest``: the shortest cycle, seconds."""

    budget: float
    floor_period: float
    shortest: float
    ledger: RequestLedger
    learner: RateLearner = field(default_factory=RateLearner)
    seen: dict[str, float] = field(default_factory=dict)  # order id (and HEAD) → last seen
    schedule: Schedule | None = None
    units: list[Unit] = field(default_factory=list)
    floor_warned: bool = False
    spent_warned_at: float = -math.inf  # the floor last won over an hour already spent
    walked_all_at: float = -math.inf  # the last full walk (a first sync among them) ended
    _counts: dict[str, int] = field(default_factory=dict)

    def plan(
        self, open_orders: Mapping[str, tuple[str, int | None]], arrivals: int, now: float
    ) -> PacingPlan:
        """``open_orders``: id → (status, anchor); ``arrivals``: the counter that turns an
        anchor into today's index (the last one measured)."""
        # Only open orders are planned: what became final is forgotten.
        self.seen = {k: t for k, t in self.seen.items() if k in open_orders or k == HEAD}
        schedule, need = self._allocate(open_orders, arrivals)
        floor_wins = need > self.budget
        if floor_wins and not self.floor_warned:
            log.warning(
                "budget: %d open pages and orders need %d requests an hour to be read once per "
                "poll.interval, more than poll.budget (%d/h); keeping the interval",
                len(self.units),
                math.ceil(need),
                self.budget,
            )
        elif not floor_wins and self.floor_warned:
            log.info("budget: the open orders fit poll.budget again")
        self.floor_warned = floor_wins
        choice = self._choose(schedule, need, now, walked=False)
        chosen = {order_id for unit in choice.units for order_id in unit.orders}
        walk = any(unit.key == HEAD for unit in choice.units)
        return PacingPlan(walk, frozenset(chosen), choice.units, choice.forced, floor_wins)

    def _choose(self, schedule: Schedule, need: float, now: float, *, walked: bool) -> Choice:
        """The units due now within the hour's room (``walked``: the head walk is done), with
        the ledger's limit set for the cycle."""
        cycle = self.wait(now)
        room, feasible = self._room(now, cycle)
        choice = choose(
            self.units, schedule, self.seen, now, cycle=cycle, allowance=room, walked=walked
        )
        self._let_through(choice, need, feasible, now)
        return choice

    def _room(self, now: float, cycle: float) -> tuple[float, bool]:
        """Units the cycle may fetch, and whether the hour can hold the floor at all. Where it
        can, room is kept for the floor's reads in the hour to come (a unit due now is read
        now, then again a floor later); where it cannot (a first sync or a full walk spent
        the hour), the floor will win anyway and the cycle gets what the hour has left."""
        deadlines = []
        for unit in self.units:
            deadline = last_fetched(unit, self.seen) + self.floor_period
            deadlines.append(now + self.floor_period if deadline <= now + cycle else deadline)
        room = allowance(self.budget, self.ledger.spent, deadlines, self.floor_period, now)
        if room < 0:
            return self.budget - self.ledger.spent(now), False
        return room, True

    def _let_through(self, choice: Choice, need: float, feasible: bool, now: float) -> None:
        """Set the ledger's limit for the cycle: the budget, or the floor's need if that is
        more. When the hour cannot hold the floor (``feasible`` False) because a first sync or
        a full walk spent it, a cycle that must read units beyond it is not held: the floor
        wins, with a WARNING at most once an hour. Otherwise the budget holds (a request waits
        for room in the ledger)."""
        walk_counts = now - self.walked_all_at < _WINDOW  # a full walk is in the ledger's hour
        if choice.forced and not feasible and need <= self.budget and walk_counts:
            if now - self.spent_warned_at >= _WARN_EVERY:
                self.spent_warned_at = now
                log.warning(
                    "budget: this hour's %d requests (a first sync or full walk among them) "
                    "leave no room for the %d pages and orders due at poll.interval; reading "
                    "them anyway (poll.budget %d/h)",
                    self.ledger.spent(now),
                    choice.forced,
                    self.budget,
                )
            self.ledger.per_hour = math.inf
            return
        self.ledger.per_hour = max(self.budget, need)

    def after_walk(
        self,
        open_orders: Mapping[str, tuple[str, int | None]],
        arrivals: int,
        now: float,
        shown: Iterable[str],
        *,
        seen_at: float | None = None,
    ) -> PacingPlan:
        """The pages and ``/status`` requests of a cycle that has just walked the head, chosen
        again from the arrivals the walk measured (``arrivals``) and the orders it ``shown``:
        planned before the walk, a page would straddle two once new orders pushed it down.
        ``seen_at``: when the walk started (default ``now``). An open order placed on the
        head that the walk did not show is looked at too (its place was wrong)."""
        shown = set(shown)
        for order_id in shown:
            self.seen[order_id] = now if seen_at is None else seen_at
        self.seen[HEAD] = now if seen_at is None else seen_at
        schedule, need = self._allocate(open_orders, arrivals)
        choice = self._choose(schedule, need, now, walked=True)
        chosen = {order_id for unit in choice.units for order_id in unit.orders}
        chosen.update(
            order_id
            for unit in self.units
            if unit.key == HEAD
            for order_id in unit.orders
            if order_id not in shown
        )
        return PacingPlan(
            walk_head=True,
            orders=frozenset(chosen),
            units=choice.units,
            forced=choice.forced,
            floor_wins=need > self.budget,
        )

    def _allocate(
        self, open_orders: Mapping[str, tuple[str, int | None]], arrivals: int
    ) -> tuple[Schedule, float]:
        """Form the units and their schedule; also returns the requests an hour the floor
        needs."""
        self.units = open_units(open_orders, arrivals, self.learner)
        need = floor_budget(len(self.units), self.floor_period)
        self.schedule = allocate(
            self.units,
            max(self.budget * PLANNED_SHARE, need),
            floor_period=self.floor_period,
            max_rate=3600 / self.shortest,
        )
        return self.schedule, need

    def wait(self, now: float) -> float:
        """Seconds until the next cycle: when the next unit falls due, within
        [``shortest``, ``floor_period``]."""
        if self.schedule is None:
            return self.shortest
        due = next_due(self.units, self.schedule, self.seen, now)
        return min(self.floor_period, max(self.shortest, due))

    def observed(
        self,
        now: float,
        seen: Iterable[str],
        *,
        head_walked: bool,
        counts: Mapping[str, int],
        exits: Mapping[str, int],
        arrivals: int,
        seen_at: float | None = None,
        walked_all: bool = False,
    ) -> None:
        """What a cycle saw: the orders it showed, whether it walked the head, the orders per
        status after it, the exits from each status and the new orders it found (and
        ``walked_all``: whether it walked the whole list, a first sync or not). ``seen_at``:
        when the cycle started (default ``now``): an order counts as seen then, never later
        than it was, so no unit is thought fresher than it is and the floor holds."""
        at = now if seen_at is None else seen_at
        if walked_all:
            self.walked_all_at = now
        for order_id in seen:
            self.seen[order_id] = at
        if head_walked:
            self.seen[HEAD] = at
        self.learner.advance(now, self._counts)
        for status, count in exits.items():
            self.learner.exited(status, count)
        if head_walked:
            self.learner.arrived(arrivals)
        self._counts = {s: n for s, n in counts.items() if n > 0 and not is_final(s)}


def plan_summary(schedule: Schedule, units: Iterable[Unit]) -> list[tuple[str, int, float, float]]:
    """The planned fetch interval per group of units, for ``orderwatch status``:
    ``(group, units, shortest seconds, longest seconds)``."""
    groups: dict[str, list[float]] = {}
    for unit in units:
        if unit.key == HEAD:
            group = "head (page 1 on)"
        elif unit.page is not None:
            group = f"pages {_band(unit.page)}"
        else:
            group = "/status requests"
        groups.setdefault(group, []).append(schedule.interval(unit.key))
    return [(g, len(v), min(v), max(v)) for g, v in groups.items()]


def _band(page: int) -> str:
    """2-10, 11-100, 101-1000, …: pages grouped by how deep they are."""
    if page <= 10:
        return "2-10"
    low = 10 ** math.floor(math.log10(page - 1))
    return f"{low + 1}-{low * 10}"
