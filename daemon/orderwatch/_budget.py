"""Spending a request budget where orders move. Pure functions, no I/O, no clock.

The model (``docs/polling.md``, *A request budget*): a fetchable **unit** (the head page, a
predicted page holding several open orders, or one ``/status`` request) is worth its expected
changes an hour, ``Λ = Σ λ_status`` over the open orders it shows (plus the arrival rate for
the head). Fetched ``f`` times an hour, a change on it waits ``1 / (2 f)`` hours on average, so
the delay accumulated an hour is ``Σ Λ_i / (2 f_i)``. Under ``Σ f_i ≤ B`` that is smallest for
``f_i ∝ √Λ_i`` (the square-root rule; Cho & Garcia-Molina 2003); with a floor (every unit at
least once per ``floor_period``) the rule becomes ``f_i = max(1 / T, c √Λ_i)``, ``c`` found by
bisection so that the budget is spent exactly (water-filling).

What a caller may rely on (property-tested):

- the planned spend never exceeds the budget unless the floor alone needs more
  (``Schedule.floor_wins``; then every unit is fetched exactly at the floor);
- every unit is fetched at least once per ``floor_period``;
- a unit worth more is never fetched less often than one worth less;
- units are built from open orders only: a final order is never part of one.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from orderwatch._models import PAGE_SIZE, is_final

__all__ = [
    "HEAD",
    "Choice",
    "OpenOrder",
    "Schedule",
    "Unit",
    "allocate",
    "allowance",
    "choose",
    "floor_budget",
    "last_fetched",
    "next_due",
    "units_for",
]

HEAD = "head"  # the unit that walks the list from page 1: new orders arrive there
_HOUR = 3600.0
_BISECTIONS = 200  # geometric halvings: enough for any bracket of floats


@dataclass(frozen=True, slots=True)
class OpenOrder:
    """An open order as planning sees it: its status and predicted index (None: unknown)."""

    id: str
    status: str
    index: int | None


@dataclass(frozen=True, slots=True)
class Unit:
    """One request (a page or a ``/status``) and what it shows.

    ``key`` is ``"head"``, ``"page:N"`` or ``"status:ID"``; ``worth`` the expected changes an
    hour on it; ``orders`` the open orders it shows.
    """

    key: str
    worth: float
    orders: tuple[str, ...] = ()
    page: int | None = None


@dataclass(frozen=True, slots=True)
class Schedule:
    """Fetches an hour for each unit (``rates``), and what the model expects of them."""

    rates: Mapping[str, float]
    worth: Mapping[str, float]
    budget: float
    floor_period: float
    floor_wins: bool

    @property
    def spend(self) -> float:
        """Requests an hour the schedule plans."""
        return math.fsum(self.rates.values())

    def interval(self, key: str) -> float:
        """Seconds between two fetches of unit ``key``."""
        rate = self.rates[key]
        return _HOUR / rate if rate > 0 else math.inf

    @property
    def expected_delay(self) -> float:
        """The model's mean seconds from a change to its fetch: ``Σ Λ/(2f) / Σ Λ``."""
        changes = math.fsum(self.worth.values())
        if changes <= 0:
            return 0.0
        waiting = math.fsum(w / (2 * self.rates[k]) for k, w in self.worth.items() if w > 0)
        return _HOUR * waiting / changes


def floor_budget(units: int, floor_period: float) -> float:
    """Requests an hour it takes to fetch ``units`` units once per ``floor_period`` seconds."""
    return units * _HOUR / floor_period


def allocate(
    units: Sequence[Unit],
    budget: float,
    *,
    floor_period: float,
    max_rate: float = math.inf,
) -> Schedule:
    """Fetches an hour for each of ``units`` under ``budget`` requests an hour.

    ``floor_period``: seconds; every unit is fetched at least this often. ``max_rate``: the
    most fetches an hour any one unit gets (the cycle cannot run faster); spend left over by it
    stays unspent.
    """
    floor = _HOUR / floor_period
    worth = {u.key: max(u.worth, 0.0) for u in units}
    ceiling = max(max_rate, floor)
    if not units:
        return Schedule({}, worth, budget, floor_period, floor_wins=False)
    if floor * len(units) >= budget:
        rates = dict.fromkeys(worth, floor)
        return Schedule(rates, worth, budget, floor_period, floor * len(units) > budget)
    roots = {key: math.sqrt(w) for key, w in worth.items()}

    def spend(c: float) -> float:
        return math.fsum(min(ceiling, max(floor, c * r)) for r in roots.values())

    positive = [r for r in roots.values() if r > 0]
    if not positive or spend(ceiling / min(positive)) <= budget:
        # Every unit that changes can be at the ceiling (or none changes): no c spends more.
        c = ceiling / min(positive) if positive else 0.0
    else:
        # At `low` every unit sits at the floor (under budget); at `high` the fastest unit
        # alone takes the budget or the rest of them are at the ceiling (at or over budget).
        # The bracket may span hundreds of orders of magnitude: halve it geometrically.
        low, high = floor / max(positive), budget / max(positive)
        if spend(high) <= budget:
            # The fastest unit reached the ceiling before it took the whole budget.
            low, high = high, ceiling / min(positive)
        for _ in range(_BISECTIONS):
            middle = math.sqrt(low * high)
            if not low < middle < high:
                break
            low, high = (middle, high) if spend(middle) <= budget else (low, middle)
        c = low  # the side that stays within the budget
    rates = {key: min(ceiling, max(floor, c * r)) for key, r in roots.items()}
    return Schedule(rates, worth, budget, floor_period, floor_wins=False)


def units_for(
    orders: Iterable[OpenOrder],
    exit_rates: Mapping[str, float],
    arrivals: float,
    *,
    page_size: int = PAGE_SIZE,
    min_orders_per_page: int = 2,
) -> list[Unit]:
    """The units that show every open order, each with its worth (changes an hour).

    The head (page 1, walked on while it shows new orders) is always a unit, worth the
    ``arrivals`` an hour plus its open orders' exit rates. Other orders go by predicted page
    when a page shows ``min_orders_per_page`` of them, else by ``/status`` (as in
    :func:`orderwatch._planner.plan_refresh`). Final orders are skipped: they never change.
    """
    head_orders: list[str] = []
    head_worth = arrivals
    by_page: defaultdict[int, list[OpenOrder]] = defaultdict(list)
    lone: list[OpenOrder] = []
    for order in orders:
        if is_final(order.status):
            continue
        if order.index is None:
            lone.append(order)
            continue
        page = order.index // page_size + 1
        if page == 1:
            head_orders.append(order.id)
            head_worth += exit_rates.get(order.status, 0.0)
        else:
            by_page[page].append(order)
    units = [Unit(HEAD, head_worth, tuple(head_orders), 1)]
    for page, on_page in sorted(by_page.items()):
        if len(on_page) >= min_orders_per_page:
            worth = math.fsum(exit_rates.get(o.status, 0.0) for o in on_page)
            units.append(Unit(f"page:{page}", worth, tuple(o.id for o in on_page), page))
        else:
            lone.extend(on_page)
    units.extend(Unit(f"status:{o.id}", exit_rates.get(o.status, 0.0), (o.id,), None) for o in lone)
    return units


@dataclass(frozen=True, slots=True)
class Choice:
    """The units a cycle fetches, and how many it left for later (``deferred``: the hour's
    budget is spent) or fetched beyond the budget to keep the floor (``forced``)."""

    units: tuple[Unit, ...]
    deferred: int = 0
    forced: int = 0


def last_fetched(unit: Unit, seen: Mapping[str, float]) -> float:
    """When ``unit`` was last fetched as a whole: the oldest sighting of what it shows (pages
    shift as orders arrive, so a unit is as fresh as its stalest order). ``seen`` maps order
    ids, and :data:`HEAD` for the head walk, to when they were last seen (absent: never)."""
    keys = (HEAD, *unit.orders) if unit.key == HEAD else unit.orders
    return min((seen.get(key, -math.inf) for key in keys), default=-math.inf)


def choose(
    units: Sequence[Unit],
    schedule: Schedule,
    seen: Mapping[str, float],
    now: float,
    *,
    cycle: float,
    allowance: float = math.inf,
    walked: bool = False,
) -> Choice:
    """The units to fetch in a cycle at ``now``, the next one ``cycle`` seconds later.

    A unit is due when its interval ends before the middle of its next chance (rounding to
    the nearer chance keeps the mean interval on plan). A page is placed by the head walk
    (which measures the arrivals that shift it), so a page is fetched only in a cycle that
    walks the head, and its next chance is the next head walk. Due units that would pass the
    floor before the next cycle come first and are always fetched (a page among them brings
    the head walk with it); then the head; then the others, most overdue first, while
    ``allowance`` (units the hour's budget still has room for) lasts. ``walked``: the cycle
    has walked the head already (``units`` are placed by it): pages may be fetched, the head
    is not chosen again.
    """
    head_every = schedule.interval(HEAD) if HEAD in schedule.rates else cycle
    due: list[tuple[bool, float, Unit]] = []
    for unit in units:
        age = now - last_fetched(unit, seen)
        interval = schedule.interval(unit.key) if unit.key in schedule.rates else math.inf
        chance = max(cycle, head_every) if _placed(unit) else cycle
        urgent = age + cycle > schedule.floor_period
        if urgent or age + chance / 2 >= interval:
            due.append((urgent, age / interval, unit))
    head = next((unit for unit in units if unit.key == HEAD), None)
    if walked:
        due = [item for item in due if item[2] is not head]
    elif head is not None and any(urgent and _placed(unit) for urgent, _, unit in due):
        # An urgent page needs the head walk that places it: the walk is urgent too.
        due = [item for item in due if item[2] is not head]
        due.append((True, math.inf, head))
    elif head is not None and not any(unit is head for _, _, unit in due):
        due = [item for item in due if not _placed(item[2])]  # they wait for the next walk
    due.sort(key=lambda item: (not item[0], item[2] is not head, -item[1]))
    chosen: list[Unit] = []
    forced = deferred = 0
    for urgent, _, unit in due:
        if len(chosen) < allowance:
            chosen.append(unit)
        elif urgent:
            chosen.append(unit)
            forced += 1
        else:
            deferred += 1
    return Choice(tuple(chosen), deferred, forced)


def _placed(unit: Unit) -> bool:
    """Whether ``unit`` is a page found by prediction (its place depends on the arrivals)."""
    return unit.key.startswith("page:")


def next_due(
    units: Sequence[Unit], schedule: Schedule, seen: Mapping[str, float], now: float
) -> float:
    """Seconds from ``now`` until the first unit falls due (0 if one is overdue). A page
    falls due with the head walk that places it, or when it would pass the floor."""

    def wait(unit: Unit) -> float:
        return last_fetched(unit, seen) + schedule.interval(unit.key) - now

    walk = min((wait(u) for u in units if u.key == HEAD and u.key in schedule.rates), default=0.0)
    waits = [
        min(max(wait(unit), walk), last_fetched(unit, seen) + schedule.floor_period - now)
        if _placed(unit)
        else wait(unit)
        for unit in units
        if unit.key in schedule.rates
    ]
    return max(0.0, min(waits, default=schedule.floor_period))


def allowance(
    budget: float,
    still_counted: Callable[[float], int],
    deadlines: Iterable[float],
    floor_period: float,
    now: float,
    *,
    step: float = 60.0,
) -> float:
    """Requests a cycle at ``now`` may spend without leaving the coming hour too little for
    the floor: at every moment ``now + x`` of the next hour, the requests already made that
    still count then (``still_counted(now + x)``), plus what the cycle spends, plus the floor
    reads due by then (each unit at its ``deadline``, then every ``floor_period``) must fit
    in ``budget``. Without the reserve, an hour a first sync mostly spent goes to the units
    worth most, and the floor's reads, all due together later, find no room."""
    ordered = sorted(deadlines)
    room = budget - still_counted(now)
    x = step
    while x <= _HOUR:
        until = now + x
        floor_reads, k = 0, 0
        while (count := bisect.bisect_right(ordered, until - k * floor_period)) > 0:
            floor_reads += count  # units due by ``until`` for the (k+1)-th time
            k += 1
        room = min(room, budget - still_counted(until) - floor_reads)
        x += step
    return room
