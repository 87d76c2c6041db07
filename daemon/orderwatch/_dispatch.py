"""Dispatch: who is told of each event, and when. The poller detects; this decides.

For every event it picks the destinations (:func:`~orderwatch._routing.recipients`, pure),
plans each delivery by its route's policy (:func:`~orderwatch._routing.plan_delivery`, pure),
turns stuck orders into reminders (none for an acknowledged stay: :func:`_stuck.stuck_events`),
says in a stuck episode's end who acknowledged it, and, once a commit holds them, tells the
courier. The set of
disabled webhooks has one owner, :class:`DisabledWebhooks`: the courier disables, dispatch
skips, a reload forgets the ones no longer configured.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace

from orderwatch._detect import Event
from orderwatch._messages import title_for
from orderwatch._routing import plan_delivery, recipients
from orderwatch._sinks import Destination
from orderwatch._store import Store, StoredEvent, Target
from orderwatch._stuck import StuckRule, stuck_events

__all__ = ["DisabledWebhooks", "Dispatcher"]

log = logging.getLogger("orderwatch")


class DisabledWebhooks:
    """Webhooks that answered 410 Gone: nothing is sent to them until their configuration
    changes (a new URL or secret makes a new destination key). Kept in the state file."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._keys = set(store.disabled_webhooks())

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def disable(self, key: str, route: str, reason: str, *, now: float) -> int:
        """Disable webhook ``key``; returns how many pending deliveries became dead letters."""
        self._keys.add(key)
        return self._store.disable_webhook(key, route, reason, now=now)

    def keep_only(self, configured: Collection[str]) -> None:
        """Forget disabled webhooks that are no longer configured as they were."""
        self._store.forget_disabled_except(configured)
        self._keys = set(self._store.disabled_webhooks())


class Dispatcher:
    """Decides the deliveries of events and announces them once committed."""

    def __init__(
        self,
        store: Store,
        destinations: Sequence[Destination],
        *,
        disabled: DisabledWebhooks | None = None,
        stuck_rules: Sequence[StuckRule] = (),
        on_committed: Callable[[list[StoredEvent]], None] = lambda _: None,
    ) -> None:
        self._store = store
        self._destinations = list(destinations)
        self._disabled = disabled if disabled is not None else DisabledWebhooks(store)
        self._stuck_rules = list(stuck_rules)
        self._on_committed = on_committed

    def configure(
        self, destinations: Sequence[Destination], stuck_rules: Sequence[StuckRule] = ()
    ) -> None:
        """Route future events to ``destinations`` (a reload); committed ones keep theirs."""
        self._destinations = list(destinations)
        self._stuck_rules = list(stuck_rules)

    def plan(self, events: Sequence[Event], now: float) -> list[tuple[Event, list[Target]]]:
        """Each event with the deliveries it makes. The end of a stuck episode (the transition
        out of the status, or a reminder once an acknowledgement expired) says who
        acknowledged it, and when."""
        return [(self._with_ack(event), self._targets(event, now)) for event in events]

    def announce(self, stored: list[StoredEvent]) -> None:
        """``stored`` is committed: log each event and wake whoever delivers them."""
        for item in stored:
            log.info("%s", title_for(item.event))
        if stored:
            self._on_committed(stored)

    def remind_stuck(self, now: float) -> int:
        """Record and announce the stuck alerts due ``now``; returns how many."""
        stored = self.stuck_reminders(now)
        self.announce(stored)
        return len(stored)

    def stuck_reminders(self, now: float) -> list[StoredEvent]:
        """Record the stuck alerts due ``now`` (the store's part of :meth:`remind_stuck`, for a
        caller that runs it in the store's worker thread and announces on the event loop)."""
        if not self._stuck_rules:
            return []
        events = stuck_events(self._store.open_orders(), self._stuck_rules, now, self._store.acks())
        if not events:
            return []
        return self._store.record({}, [], self.plan(events, now), anchors_before={}, now=now)

    def _with_ack(self, event: Event) -> Event:
        if not (event.resolves_stuck or event.kind == "stuck") or event.previous_since is None:
            return event
        status = event.previous_status if event.resolves_stuck else event.order.status
        if status is None:
            return event
        ack = self._store.ack_of_episode(event.order.id, status, event.previous_since)
        return event if ack is None else replace(event, acknowledged=ack.describe_when())

    def _targets(self, event: Event, now: float) -> list[Target]:
        alerted: set[str] = set()
        if event.resolves_stuck:
            alerted = {key for _, key in self._store.stuck_recipients(event.order.id)}
        chosen = recipients(event, self._destinations, disabled=self._disabled, alerted=alerted)
        targets = []
        for destination in chosen:
            plan = plan_delivery(destination.policy, event.order.status, now)
            targets.append(Target(destination.route, destination.key, plan.due_at, plan.held))
        return targets
