"""An invariant checker independent of the daemon's code: it compares what receivers got with
the sandbox's own history.

- Nothing false: every delivered ``order.created`` is an order that arrived after the first sync,
  in a status it really had; every ``order.status_changed`` goes from a status the order had to
  one it had later (a net change may skip what nobody saw).
- Nothing twice: one event id per change; an id delivered twice carries the same content (only a
  delivery in flight at a crash may repeat).
- Nothing lost (once the daemon has caught up): each new order announced, and each order's chain
  of announced changes leads from its first-sync status to its status now.

The sandbox only moves orders forward, so a given change (order, from, to) happens at most once.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from orderwatch._sandbox import WorldChange


@dataclass(frozen=True)
class Delivered:
    event_id: str
    type: str
    number: int
    previous: str | None
    status: str


def from_webhook(body: Mapping[str, object], event_id: str) -> Delivered:
    data = body["data"]
    assert isinstance(data, dict)
    return Delivered(
        event_id,
        str(body["type"]),
        int(data["number"]),
        data["previous_status"],
        str(data["status"]),
    )


def _false(
    statuses: Mapping[int, list[str]], initial: Mapping[int, str], event: Delivered
) -> str | None:
    seq = statuses.get(event.number)
    if seq is None:
        return f"#{event.number}: announced but never existed"
    if event.type == "order.created":
        if event.number in initial:
            return f"#{event.number}: announced as new but existed at the first sync"
        if event.status not in seq:
            return f"#{event.number}: announced new as {event.status}, never had it"
    elif event.type == "order.status_changed":
        steps = [i for i, s in enumerate(seq) if s == event.previous]
        if not any(event.status in seq[i + 1 :] for i in steps):
            return f"#{event.number}: {event.previous} → {event.status} never happened"
    return None


def _missing(
    initial: Mapping[int, str], now: Mapping[int, str], events: list[Delivered]
) -> list[str]:
    chains: dict[int, dict[str | None, str]] = defaultdict(dict)
    created: dict[int, str] = {}
    for event in events:
        if event.type == "order.created":
            created[event.number] = event.status
        elif event.type == "order.status_changed":
            chains[event.number][event.previous] = event.status
    found = []
    for number, status in now.items():
        start = initial.get(number, created.get(number))
        if start is None:
            found.append(f"#{number}: a new order never announced")
            continue
        reached, seen = start, {start}
        while reached in chains[number] and chains[number][reached] not in seen:
            reached = chains[number][reached]
            seen.add(reached)
        if reached != status:
            found.append(f"#{number}: announcements end at {reached}, the order is {status}")
    return found


def violations(
    initial: Mapping[int, str],
    history: Iterable[WorldChange],
    now: Mapping[int, str],
    delivered: Iterable[Delivered],
    *,
    complete: bool,
) -> list[str]:
    """Everything wrong with ``delivered``; ``complete``: also demand nothing is missing."""
    statuses: dict[int, list[str]] = {n: [s] for n, s in initial.items()}
    for change in history:
        statuses.setdefault(change.number, []).append(change.status)
    found: list[str] = []
    by_id: dict[str, Delivered] = {}
    for item in delivered:
        if item.event_id in by_id and by_id[item.event_id] != item:
            found.append(f"event {item.event_id} delivered with two contents")
        by_id[item.event_id] = item
    events = list(by_id.values())
    found += [problem for e in events if (problem := _false(statuses, initial, e))]
    same = Counter((e.type, e.number, e.previous, e.status) for e in events)
    found += [
        f"#{key[1]}: {key[2]} → {key[3]} announced {n} times" for key, n in same.items() if n > 1
    ]
    return found + (_missing(initial, now, events) if complete else [])
