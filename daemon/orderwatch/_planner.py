"""Poll planning: which requests a cycle makes. Pure functions, no I/O.

The cost model: a list page costs one request and shows 20 orders; ``/status`` costs one
request and shows one. A cycle therefore

1. walks the list from page 1 while the pages hold orders it has never seen (new orders
   arrive at the head), or to the end when it must learn everything (the first sync) or when
   the list does not look newest-first;
2. refreshes every open order the walk did not show: by fetching the page where it is predicted
   to sit when that page holds at least ``MIN_ORDERS_PER_PAGE`` of them, else by ``/status``.

An order's index is predicted as ``anchor + arrivals`` (see ``_detect.KnownOrder``);
a prediction is verified by id, and an order not found where predicted falls back to ``/status``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from orderwatch._models import PAGE_SIZE, OrderPage

__all__ = [
    "RefreshPlan",
    "Straggler",
    "arrivals_from_sightings",
    "head_walk_continues",
    "missing_from_page",
    "next_interval",
    "plan_refresh",
    "reconcile_pages",
]

MIN_ORDERS_PER_PAGE = 2  # a page showing two wanted orders already beats two /status calls


@dataclass(frozen=True, slots=True)
class Straggler:
    """An open order the head walk did not show. ``anchor`` is None when its place is unknown."""

    id: str
    anchor: int | None


@dataclass(frozen=True, slots=True)
class RefreshPlan:
    """Pages to fetch (each with the ids expected on it) and ids to ask ``/status`` for."""

    pages: dict[int, tuple[str, ...]] = field(default_factory=dict)
    statuses: tuple[str, ...] = ()

    @property
    def requests(self) -> int:
        return len(self.pages) + len(self.statuses)


def head_walk_continues(
    page: OrderPage, page_number: int, *, oldest_is_new: bool, full_walk: bool
) -> bool:
    """Whether the walk must fetch page ``page_number + 1`` after ``page``.

    ``oldest_is_new``: the last (oldest) order on the page was unknown when the cycle started,
    so more unseen orders may follow it.
    """
    if not page.orders or page_number >= page.total_pages:
        return False
    return full_walk or oldest_is_new


def arrivals_from_sightings(sightings: Iterable[tuple[int, int | None]]) -> int | None:
    """The arrivals counter implied by known orders seen at known indexes.

    ``sightings`` are ``(index now, remembered anchor)`` pairs. The first pair with an anchor
    decides: the head walk sees it earliest, before later arrivals can shift the list further.
    """
    for index, anchor in sightings:
        if anchor is not None:
            return max(index - anchor, 0)
    return None


def plan_refresh(
    stragglers: Iterable[Straggler],
    arrivals: int,
    *,
    page_size: int = PAGE_SIZE,
    min_orders_per_page: int = MIN_ORDERS_PER_PAGE,
    total_pages: int | None = None,
) -> RefreshPlan:
    """The cheapest requests that show every straggler, by predicted position."""
    by_page: defaultdict[int, list[str]] = defaultdict(list)
    statuses: list[str] = []
    for straggler in stragglers:
        if straggler.anchor is None:
            statuses.append(straggler.id)
            continue
        page = (straggler.anchor + arrivals) // page_size + 1
        if total_pages is not None and page > total_pages:
            statuses.append(straggler.id)  # predicted past the end: the page would tell nothing
            continue
        by_page[page].append(straggler.id)
    pages: dict[int, tuple[str, ...]] = {}
    for page, ids in sorted(by_page.items()):
        if len(ids) >= min_orders_per_page:
            pages[page] = tuple(ids)
        else:
            statuses.extend(ids)
    return RefreshPlan(pages=pages, statuses=tuple(statuses))


def missing_from_page(expected: Sequence[str], page: OrderPage) -> list[str]:
    """The expected ids a fetched page did not show: they fall back to ``/status``."""
    shown = {order.id for order in page.orders}
    return [order_id for order_id in expected if order_id not in shown]


def next_interval(
    current: float, *, changed: bool, interval: float, min_interval: float | None
) -> float:
    """The wait before the next cycle: ``min_interval`` right after a cycle that saw changes,
    then doubling with each quiet cycle, back up to ``interval``."""
    if min_interval is None:
        return interval
    if changed:
        return min_interval
    return min(interval, max(current, min_interval) * 2)


def reconcile_pages(
    cursor: int,
    total_pages: int,
    *,
    started: float,
    now: float,
    full_sync_interval: float,
    skip: set[int],
) -> tuple[list[int], int, float]:
    """The slice of the slow full walk due ``now``: ``(pages, next cursor, sweep start)``.

    A sweep reads every page once per ``full_sync_interval``, page ``k`` of ``n`` becoming due
    ``(k - 1) / n`` of the way through, so it never bursts and a small list is not re-read
    every cycle. Pages the cycle already fetched (``skip``) count as read. When a sweep is
    done, the next starts a ``full_sync_interval`` after the last one began.
    """
    if total_pages <= 0:
        return [], cursor, started
    if cursor > total_pages:
        if now - started < full_sync_interval:
            return [], cursor, started
        cursor, started = 1, now
    due = min(total_pages, int(total_pages * (now - started) / full_sync_interval) + 1)
    pages = [page for page in range(cursor, due + 1) if page not in skip]
    return pages, max(cursor, due + 1), started
