"""The primitives a backend provides, on which every concern of the store is written once.

A backend (SQLite, PostgreSQL) says how to run a statement, how a write transaction begins,
commits and fails, and how event sequence numbers are reserved. The concerns (orders and
events, the outbox, meta values, the leader lease) are written in portable SQL with ``?``
placeholders against these primitives.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Final

__all__ = ["DATABASE_NOW", "Database"]

# The database server's clock in seconds (PostgreSQL): what every instance's leases and claims
# are timed by, since the hosts' clocks may disagree.
DATABASE_NOW: Final = "extract(epoch FROM clock_timestamp())::float8"


class Database(ABC):
    """One connection to one backend. ``location`` names it in messages (never a password)."""

    location: str
    _in_batch: bool = False

    # -- what a backend provides -------------------------------------------------------------

    @abstractmethod
    def _query(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        """Rows addressable by column name; a failure is a :class:`StateError` naming the store."""

    @abstractmethod
    def _tuples(self, sql: str, params: Collection[object] = ()) -> list[tuple[Any, ...]]:
        """Rows as plain tuples (the hot paths: a third cheaper than named rows)."""

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run one statement inside the current write transaction; its row count."""

    @abstractmethod
    def _executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        """Run one statement per row inside the current write transaction."""

    @abstractmethod
    def _write(self, *, durable: bool) -> AbstractContextManager[None]:
        """A write transaction: committed when the block ends, rolled back when it raises
        (a driver's error becomes a :class:`StateError` naming the store)."""

    @abstractmethod
    def _reserve_event_seqs(self, count: int) -> list[int]:
        """``count`` rising event sequence numbers, never handed out before (in a write
        transaction)."""

    def _before_commit(self) -> None:  # noqa: B027 - a hook: empty unless a backend adds one
        """Last check of a write transaction, inside it (the leader's epoch: see ``_lease``)."""

    def _exclusive(self) -> AbstractContextManager[object]:
        """Held for a whole transaction: a store used from more than one thread (a shared
        database's, whose calls run in a worker thread) never interleaves two transactions on
        its one connection. Nothing to hold where one thread does everything (SQLite)."""
        return nullcontext()

    # -- transactions, the same for every backend --------------------------------------------

    @contextmanager
    def _transaction(self, *, durable: bool = True) -> Iterator[None]:
        with self._exclusive():
            if self._in_batch:  # inside batch(): its commit is this one's
                yield
                return
            with self._write(durable=durable):
                yield
                self._before_commit()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Write everything done inside as one transaction: a group commit, for pages that
        arrived together (a commit costs as much CPU as a page's parsing and lookup)."""
        with self._exclusive():
            if self._in_batch:
                yield  # already inside a batch: part of it
                return
            with self._transaction(durable=False):
                self._in_batch = True
                try:
                    yield
                finally:
                    self._in_batch = False
