"""Proving that a walk of the order list missed no order. Pure functions, no I/O.

The list is newest first and grows only at the head, so a page read later shows the orders of
the page before it shifted down. A walk whose pages are read in order (each request sent after
the answer for the page before it arrived) therefore never skips an order: a later read of
page k+1 can only show page k's tail again. Pages read side by side (``api.concurrency``) or a
page retried after its successor answered lose that order: the orders that moved from page k
into page k+1 in between are seen by neither. This module decides, from what a walk's answers
showed and in which order they came, whether a hole is possible and which pages close it.

Each answer is a contiguous run of the list as it stood when the server read it, and a run
stays contiguous while orders arrive (they only arrive above it). So the walk saw everything
between its newest and its oldest order exactly when every two orders that are neighbours
among all the orders it saw (ordered by number) are proven neighbours in the list:

1. one answer shows them side by side; or
2. their numbers are consecutive, so nothing can stand between them; or
3. the first is the last order of an answer for page k and the second the first order of an
   answer for page k+1 that is *not earlier*: it was sent after the page-k answer arrived, or
   both were read inside a *quiet window* (two answers for page 1 that show the same newest
   order, the second sent after the first arrived: nothing arrived in between, so every page
   read between them saw the same list).

A pair that is not proven is closed by reading, now, the page after the one where the pair's
first order stood when last seen at the end of an answer, or after the deepest page that has
since shown only newer orders (orders only move down): that page starts at or above the
order that follows it in the list, so it shows the pair's missing neighbours, unless a whole
page of orders arrives meanwhile, and then the next round reads further down. With to_end,
the oldest order seen must also be proven the list's last: the last order of an answer for
the last page, or one followed by an empty page that is not earlier.
"""

from __future__ import annotations

import bisect
import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Fetch", "FetchLog", "pages_to_reread"]


@dataclass(frozen=True, slots=True)
class Fetch:
    """One answer for a list page.

    ``numbers``: the order numbers it showed, as listed (newest first). ``last``: the page was
    the list's last when it was read. ``sent``: how many of the walk's answers had arrived when
    this request went out; ``received``: this answer's place among them (1 for the first).
    """

    page: int
    numbers: tuple[int, ...]
    last: bool
    sent: int
    received: int


class FetchLog:
    """The list answers of one cycle, in the order they arrived; the clock of :class:`Fetch`.

    ``fetches`` are the answers whose orders were recorded; ``probes`` are reads of page 1
    made only to learn whether orders arrived meanwhile (their orders are not recorded).
    """

    def __init__(self) -> None:
        self.fetches: list[Fetch] = []
        self.probes: list[Fetch] = []

    def sending(self) -> int:
        """Stamp a request about to go out: the number of answers already arrived."""
        return len(self.fetches) + len(self.probes)

    def answered(
        self, page: int, numbers: Iterable[int], *, last: bool, sent: int, probe: bool = False
    ) -> Fetch:
        fetch = Fetch(page, tuple(numbers), last, sent, self.sending() + 1)
        (self.probes if probe else self.fetches).append(fetch)
        return fetch

    def of_pages(self, pages: set[int] | None) -> list[Fetch]:
        """The recorded answers for ``pages`` (all of them for None)."""
        return [f for f in self.fetches if pages is None or f.page in pages]

    def snapshots(self) -> list[Fetch]:
        """Every answer for page 1: each says which order was the newest when it was read."""
        return [fetch for fetch in (*self.fetches, *self.probes) if fetch.page == 1]


def pages_to_reread(
    fetches: Sequence[Fetch], *, snapshots: Sequence[Fetch] = (), to_end: bool
) -> list[int]:
    """The pages to read again so that ``fetches`` are proven to show every order between the
    newest and the oldest they show (and, with ``to_end``, down to the end of the list); empty
    when they are. ``snapshots`` are the answers for page 1 that tell quiet windows.

    A pair of neighbours that no rule proves and no re-read can help (the list contradicts
    itself: an order seen between two orders that one answer shows side by side) is left alone.
    """
    seen = sorted({n for fetch in fetches for n in fetch.numbers}, reverse=True)
    if not seen:
        return []
    quiet = _quiet_windows(snapshots)
    by_page: defaultdict[int, list[Fetch]] = defaultdict(list)
    for fetch in fetches:
        by_page[fetch.page].append(fetch)
    proven = _proven_pairs(fetches, by_page, quiet)
    ends = _ends(fetches)
    beyond = _Beyond(fetches)
    unproven = [a for a, b in itertools.pairwise(seen) if b != a - 1 and (a, b) not in proven]
    if to_end and not _ends_the_list(seen[-1], fetches, by_page, quiet):
        unproven.append(seen[-1])
    return sorted({max(ends[a].page, beyond.deepest_above(a)) + 1 for a in unproven if a in ends})


def _proven_pairs(
    fetches: Sequence[Fetch],
    by_page: Mapping[int, Sequence[Fetch]],
    quiet: Sequence[tuple[int, int]],
) -> set[tuple[int, int]]:
    """Neighbours proven by one answer (rule 1) or by abutting answers (rule 3)."""
    proven: set[tuple[int, int]] = set()
    for fetch in fetches:
        proven.update((a, b) for a, b in itertools.pairwise(fetch.numbers) if a > b)
    for fetch in fetches:
        if not fetch.numbers:
            continue
        end = fetch.numbers[-1]
        proven.update(
            (end, after.numbers[0])
            for after in by_page.get(fetch.page + 1, ())
            if after.numbers and after.numbers[0] < end and _not_earlier(fetch, after, quiet)
        )
    return proven


def _ends(fetches: Sequence[Fetch]) -> dict[int, Fetch]:
    """Each order that ends an answer -> the latest answer it ends."""
    ends: dict[int, Fetch] = {}
    for fetch in sorted(fetches, key=lambda f: f.received):  # a later answer replaces one
        if fetch.numbers:
            ends[fetch.numbers[-1]] = fetch
    return ends


class _Beyond:
    """Where an order has moved to at least: an answer for page k showing only newer orders
    means it stood below page k then, and orders only ever move further down."""

    def __init__(self, fetches: Sequence[Fetch]) -> None:
        ordered = sorted((f.numbers[-1], f.page) for f in fetches if f.numbers)
        self._oldest = [oldest for oldest, _ in ordered]
        self._deepest: list[int] = []  # the deepest page among answers from here on
        deepest = 0
        for _, page in reversed(ordered):
            deepest = max(deepest, page)
            self._deepest.append(deepest)
        self._deepest.reverse()

    def deepest_above(self, number: int) -> int:
        """The deepest page read whose every order is newer than ``number`` (0 if none)."""
        i = bisect.bisect_right(self._oldest, number)
        return self._deepest[i] if i < len(self._deepest) else 0


def _quiet_windows(snapshots: Sequence[Fetch]) -> list[tuple[int, int]]:
    """``(after, before)`` pairs: answers sent once answer ``after`` had arrived and arrived
    before answer ``before`` was sent all saw the same list."""
    windows = []
    for first, second in itertools.permutations(snapshots, 2):
        if (
            first.numbers
            and second.numbers
            and first.numbers[0] == second.numbers[0]
            and second.sent >= first.received
        ):
            windows.append((first.received, second.sent))
    return windows


def _not_earlier(first: Fetch, second: Fetch, quiet: Sequence[tuple[int, int]]) -> bool:
    """Whether ``second`` certainly saw the list no earlier than ``first`` did."""
    if second.sent >= first.received:
        return True
    return any(
        after <= min(first.sent, second.sent) and max(first.received, second.received) <= before
        for after, before in quiet
    )


def _ends_the_list(
    oldest: int,
    fetches: Sequence[Fetch],
    by_page: Mapping[int, Sequence[Fetch]],
    quiet: Sequence[tuple[int, int]],
) -> bool:
    for fetch in fetches:
        if not fetch.numbers or fetch.numbers[-1] != oldest:
            continue
        if fetch.last:
            return True
        if any(
            not after.numbers and _not_earlier(fetch, after, quiet)
            for after in by_page.get(fetch.page + 1, ())
        ):
            return True
    return False
