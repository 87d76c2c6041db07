"""The one interface the poller, the courier and the CLI talk to, whichever the backend."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Final, TypeVar

import anyio

from orderwatch._models import FINAL_STATUSES
from orderwatch._store._acks import Acks
from orderwatch._store._deliveries import Deliveries
from orderwatch._store._lease import SoleLease
from orderwatch._store._meta import Meta
from orderwatch._store._notes import Notes

__all__ = ["Store"]

_T = TypeVar("_T")
_FINAL_IN_SQL: Final = ", ".join(f"'{status}'" for status in sorted(FINAL_STATUSES))

# Invariants of the stored data, each a count of rows that break it (for `state check`).
_INVARIANTS = {
    "deliveries of events that do not exist": "SELECT count(*) AS n FROM deliveries "
    "WHERE event_seq NOT IN (SELECT seq FROM events)",
    "events of orders that do not exist": "SELECT count(*) AS n FROM events "
    "WHERE order_id != '' AND order_id NOT IN (SELECT id FROM orders)",
    "orders whose final flag disagrees with their status": "SELECT count(*) AS n FROM orders "
    f"WHERE is_final != CASE WHEN status IN ({_FINAL_IN_SQL}) THEN 1 ELSE 0 END",
    "sent or dead deliveries without a completion time": "SELECT count(*) AS n FROM "
    "deliveries WHERE state != 'pending' AND done_at IS NULL",
}


class Store(Notes, Acks, Deliveries, Meta, SoleLease):
    """The state: orders and events, notices and summaries, acknowledgements and silences, the
    outbox, meta values, the leader lease.

    Open one with :func:`~orderwatch._store.open_store`; close it with :meth:`close`. Errors
    opening, reading or writing raise :class:`~orderwatch.StateError` naming the store (a path,
    or a URL without its password).
    """

    latest_schema: int  # the schema version this orderwatch writes
    console_schema: int  # the first schema version with acks, silences and summaries sent

    @property
    @abstractmethod
    def schema_version(self) -> int: ...

    @property
    def has_console(self) -> bool:
        """True once the schema holds acks, silences and summaries sent (a store opened read-only
        that the daemon has not migrated yet has none)."""
        return self.schema_version >= self.console_schema

    @property
    def shared(self) -> bool:
        """True when several instances may use this store at once (they then take turns)."""
        return False

    @abstractmethod
    def close(self) -> None: ...

    _limiter: anyio.CapacityLimiter | None = None

    async def call(self, function: Callable[[], _T]) -> _T:
        """Run ``function`` (a call of this store) without blocking the event loop on a
        database round trip: in a worker thread for a shared database, one call at a time (one
        connection); inline for a file only this daemon uses (its connection stays on the
        event loop's thread, as fast as before)."""
        if not self.shared:
            return function()
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(1)
        return await anyio.to_thread.run_sync(function, limiter=self._limiter)

    def sync(self) -> None:
        """Make every commit so far durable, if one is not yet (before anything is sent)."""

    def _engine_problems(self) -> list[str]:
        """What the database engine's own check finds (nothing, where it has none)."""
        return []

    def check(self) -> list[str]:
        """Problems found (empty when sound): the engine's own check, then the invariants."""
        problems = self._engine_problems()
        if problems:
            return problems
        for what, sql in _INVARIANTS.items():
            count = self._query(sql)[0]["n"]
            if count:
                problems.append(f"{count} {what}")
        return problems
