"""The PostgreSQL backend: one database shared by every instance (psycopg 3).

psycopg is imported when a store is opened, not before: the default install (SQLite) needs no
PostgreSQL library (``pip install 'orderwatch[postgres]'`` brings it).

- Each store is one connection in autocommit mode; a write transaction is an explicit
  ``BEGIN … COMMIT``. A lost connection is a :class:`~orderwatch.StateUnavailableError` (nothing of
  that transaction was written), and the next call connects again.
- The session ends a transaction left idle longer than it may be (a frozen process holding a
  row lock would otherwise block a successor's takeover of the lease).
- A poll's commits (orders and events, durable=False: a
  :meth:`~orderwatch._store._base.Database.batch`, meta values) do not wait for the WAL flush
  (``synchronous_commit = off``, as SQLite's do not wait for an fsync): lost in a crash of the
  server, they are simply observed again. :meth:`sync` makes them durable before anything they
  announce is sent; every other commit is durable when it returns.
- Round trips are what a page costs here, not the work. A batch runs in pipeline mode: its
  writes go out without waiting for their answers. The pages of a batch are read at once
  (:meth:`glance_ahead`, whole rows, so that their lookups ask nothing more); an INSERT of
  several rows is one statement; event sequence numbers are reserved a block at a time (a new
  term as leader starts a new block, so numbers keep rising across instances). A batch of pages
  costs one read and its commit, where it cost six round trips a page of changes.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any, Final

from orderwatch._detect import KnownOrder
from orderwatch._exceptions import StateError, StateUnavailableError
from orderwatch._store._deliveries import SharedDeliveries
from orderwatch._store._interface import Store
from orderwatch._store._lease import SharedLease
from orderwatch._store._records import KNOWN_COLUMNS, known_from_row
from orderwatch._store._schema import POSTGRES_MIGRATIONS, POSTGRES_SCHEMA_VERSION
from orderwatch._store._url import masked_url

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresStore"]

_CONNECT_TIMEOUT: Final = 5  # seconds
_MIGRATION_LOCK: Final = 0x6F77  # serializes schema changes of instances starting together
_SEQ_BLOCK: Final = 256  # event sequence numbers reserved at a time
_MAX_PARAMETERS: Final = 65_535  # the protocol's limit on one statement's parameters
# An INSERT's one row of values: the statement before it, the row, and what follows it.
_VALUES: Final = re.compile(r"(INSERT INTO .+? VALUES )(\([^()]*\))(.*)", re.DOTALL)


@cache
def _placeholders(sql: str) -> str:
    """The portable ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0].strip() if text else type(error).__name__


class PostgresStore(SharedLease, SharedDeliveries, Store):
    """A PostgreSQL database. Use :meth:`open`; close it with :meth:`close`."""

    latest_schema = POSTGRES_SCHEMA_VERSION
    console_schema = 2

    def __init__(self, url: str, *, idle_timeout: float, application: str = "orderwatch") -> None:
        self.url = url
        self._application = application
        self.location = masked_url(url)
        self._idle_timeout = idle_timeout
        self._connection: psycopg.Connection[Any] | None = None
        self._in_batch = False
        self._lock = threading.RLock()
        self._durable = True  # the session's synchronous_commit is the server's (durable)
        self._seqs: list[int] = []  # reserved event sequence numbers, not yet used
        self._read: dict[str, tuple[Any, ...]] = {}  # rows read ahead of their lookup
        self._covered: frozenset[str] = frozenset()  # the ids that read asked for
        self._ahead = False  # glance_ahead's promise holds: writes leave the rows read valid

    @property
    def shared(self) -> bool:
        return True

    @classmethod
    def open(
        cls,
        url: str,
        *,
        readonly: bool = False,
        idle_timeout: float = 30.0,
        application: str = "orderwatch",
    ) -> PostgresStore:
        """Connect to the database at ``url`` and bring its schema up to date (unless
        ``readonly``). ``idle_timeout``: how long a transaction may sit idle before the server
        ends the session. ``application``: how the server's session list names it."""
        store = cls(url, idle_timeout=idle_timeout, application=application)
        try:
            store._prepare(readonly=readonly)
        except BaseException:
            store.close()
            raise
        return store

    # -- the connection ---------------------------------------------------------------------

    def _db(self) -> psycopg.Connection[Any]:
        if self._connection is not None and not self._connection.closed:
            return self._connection
        try:
            import psycopg  # noqa: PLC0415 - optional: only PostgreSQL users install it
        except ImportError:
            raise StateError(
                "state: PostgreSQL needs the psycopg driver: pip install 'orderwatch[postgres]'"
            ) from None
        try:
            self._connection = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=_CONNECT_TIMEOUT,
                application_name=self._application,
                # No server-side prepared statements: a plan fixed while the tables were small
                # (a first sync) would keep scanning them whole once they are large.
                prepare_threshold=None,
            )
            self._connection.execute(
                "SELECT set_config('idle_in_transaction_session_timeout', %s, false)",
                (str(max(1, int(self._idle_timeout * 1000))),),
            )
            self._durable = True
        except psycopg.Error as error:
            self._connection = None
            raise self._error("cannot reach", error) from None
        return self._connection

    def _error(self, doing: str, error: Exception) -> StateError:
        """The driver's ``error`` as one line naming the store, never its password."""
        import psycopg  # noqa: PLC0415 - only reached once a connection was attempted

        reason = _reason(error)
        if isinstance(error, psycopg.OperationalError) or (
            self._connection is not None and self._connection.broken
        ):
            return StateUnavailableError(f"state: cannot reach {self.location}: {reason}")
        return StateError(f"state: cannot {doing} {self.location}: {reason}")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _prepare(self, *, readonly: bool) -> None:
        with self._write(durable=True):
            db = self._db()
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            version = self._version()
            if version > POSTGRES_SCHEMA_VERSION:
                raise StateError(
                    f"state: {self.location} was written by a newer orderwatch "
                    f"(schema {version}, this one reads up to {POSTGRES_SCHEMA_VERSION})"
                )
            if readonly:
                if version == 0:
                    raise StateError(
                        f"state: {self.location} holds no orderwatch state "
                        "(has orderwatch run yet?)"
                    )
                return
            if version == 0:
                db.execute("CREATE TABLE orderwatch_schema (version INTEGER NOT NULL)")
                db.execute("INSERT INTO orderwatch_schema (version) VALUES (0)")
            for step in range(version + 1, POSTGRES_SCHEMA_VERSION + 1):
                db.execute(POSTGRES_MIGRATIONS[step])
            db.execute("UPDATE orderwatch_schema SET version = %s", (POSTGRES_SCHEMA_VERSION,))

    def _version(self) -> int:
        db = self._db()
        row = db.execute("SELECT to_regclass('orderwatch_schema') IS NOT NULL").fetchone()
        if row is None or not row[0]:
            return 0
        found = db.execute("SELECT version FROM orderwatch_schema").fetchone()
        return 0 if found is None else int(found[0])

    @property
    def schema_version(self) -> int:
        try:
            return self._version()
        except Exception as error:  # noqa: BLE001 - psycopg is optional: its errors by name
            raise self._error("read", error) from None

    # -- moving in (``_migrate``) ------------------------------------------------------------

    def row_count(self) -> int:
        """Rows of orders, events and meta values: 0 in a database no orderwatch has used."""
        return int(
            self._query(
                "SELECT (SELECT count(*) FROM orders) + (SELECT count(*) FROM events) "
                "+ (SELECT count(*) FROM meta) AS n"
            )[0]["n"]
        )

    def event_count(self) -> int:
        return int(self._query("SELECT count(*) AS n FROM events")[0]["n"])

    def copy_rows(self, table: str, columns: str, rows: Sequence[Sequence[object]]) -> None:
        """Append ``rows`` to ``table`` with ``COPY`` (inside the caller's transaction)."""
        with (
            self._db().cursor() as cursor,
            cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)

    def restart_sequences(self) -> None:
        """Continue event sequence numbers and silence ids after the highest stored (after a
        copy)."""
        for table, column in (("events", "seq"), ("silences", "id")):
            self._execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                f"coalesce(max({column}), 0) + 1, false) FROM {table}"
            )

    # -- the primitives ---------------------------------------------------------------------

    def _exclusive(self) -> AbstractContextManager[object]:
        return self._lock

    @contextmanager
    def batch(self) -> Iterator[None]:
        # One transaction in pipeline mode: writes do not wait for their answers.
        import psycopg  # noqa: PLC0415 - a store exists only where psycopg does

        with self._lock:
            if self._in_batch:
                yield
                return
            try:
                with self._db().pipeline(), super().batch():
                    yield
            except psycopg.Error as error:
                raise self._error("write", error) from None

    @contextmanager
    def _write(self, *, durable: bool) -> Iterator[None]:
        import psycopg  # noqa: PLC0415 - a store exists only where psycopg does

        db = self._db()
        try:
            if durable != self._durable:
                db.execute(
                    "RESET synchronous_commit" if durable else "SET synchronous_commit = off"
                )
                self._durable = durable
            with db.transaction():
                yield
        except psycopg.Error as error:
            raise self._error("write", error) from None
        finally:
            self._forget(ahead_too=True)

    def sync(self) -> None:
        """Make every commit so far durable, the poller's included (another connection's):
        when the server has written WAL it has not flushed, one durable commit flushes it
        all (the log is one sequence). One round trip when there is nothing to flush."""
        with self._lock:
            [(flushed,)] = self._tuples(
                "SELECT pg_current_wal_flush_lsn() >= pg_current_wal_insert_lsn()"
            )
            if flushed:
                return
            with self._transaction(durable=True):
                self._execute(
                    "INSERT INTO meta (key, value) VALUES ('syncs', '1') ON CONFLICT (key) "
                    "DO UPDATE SET value = (meta.value::bigint + 1)::text"
                )

    def fence(self, holder: str | None, epoch: int | None) -> None:
        super().fence(holder, epoch)
        # Numbers reserved in an earlier term may be lower than another leader's since.
        self._seqs = []

    def _execute(self, sql: str, params: Sequence[object] = ()) -> int:
        self._forget()
        return self._db().execute(_placeholders(sql), params).rowcount

    def _executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        self._forget()
        insert = _VALUES.fullmatch(sql)
        if insert is None or len(rows) < 2:  # one row: nothing to join
            with self._db().cursor() as cursor:
                cursor.executemany(_placeholders(sql), rows)
            return
        # An INSERT of several rows as one statement: one execution on the server, not one
        # a row (the protocol's bind and execute per row cost more than the row itself).
        head, row, tail = insert.groups()
        per_statement = _MAX_PARAMETERS // max(1, row.count("?"))
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            self._db().execute(
                _placeholders(f"{head}{', '.join([row] * len(chunk))}{tail}"),
                [value for values in chunk for value in values],
            )

    def _reserve_event_seqs(self, count: int) -> list[int]:
        if len(self._seqs) < count:
            rows = self._db().execute(
                "SELECT nextval(pg_get_serial_sequence('events', 'seq')) "
                "FROM generate_series(1, %s)",
                (max(count - len(self._seqs), _SEQ_BLOCK),),
            )
            self._seqs.extend(sorted(int(seq) for (seq,) in rows.fetchall()))
        taken, self._seqs = self._seqs[:count], self._seqs[count:]
        return taken

    def _forget(self, *, ahead_too: bool = False) -> None:
        """Drop the rows read ahead: a write may have changed them (unless the caller of
        :meth:`glance_ahead` promised otherwise, until the transaction ends)."""
        if ahead_too:
            self._ahead = False
        if not self._ahead:
            self._read, self._covered = {}, frozenset()

    def _read_orders(self, ids: Collection[str]) -> None:
        marks = ",".join("?" * len(ids))
        rows = self._tuples(f"SELECT {KNOWN_COLUMNS} FROM orders WHERE id IN ({marks})", ids)
        self._read, self._covered = {row[0]: row for row in rows}, frozenset(ids)

    def glance_ahead(self, pages: Sequence[Collection[str]]) -> None:
        # The whole rows of every page at once: their glances and lookups need no round trip
        # (so the server works through a page's writes while the next page is detected).
        if self._in_batch:
            self._read_orders([order_id for ids in pages for order_id in ids])
            self._ahead = True

    def glance(self, ids: Collection[str]) -> dict[str, tuple[str, int | None]]:
        # Whole rows: the lookup of the changed ones that follows needs no round trip.
        if not ids:
            return {}
        if not self._covered.issuperset(ids):
            self._forget(ahead_too=True)
            self._read_orders(ids)
        read = self._read
        return {i: (read[i][2], read[i][8]) for i in ids if i in read}  # status, anchor

    def lookup(self, ids: Collection[str]) -> dict[str, KnownOrder]:
        if ids and self._covered.issuperset(ids):  # nothing written since they were read
            return {i: known_from_row(self._read[i]) for i in ids if i in self._read}
        return super().lookup(ids)

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        import psycopg  # noqa: PLC0415
        from psycopg.rows import dict_row  # noqa: PLC0415

        try:
            with self._lock, self._db().cursor(row_factory=dict_row) as cursor:
                cursor.execute(_placeholders(sql), params)
                # Every caller reads rows (a SELECT, or RETURNING); in a pipeline, fetching
                # is what waits for the answer (the description is not there before).
                return cursor.fetchall()
        except psycopg.Error as error:
            raise self._error("read", error) from None

    def _tuples(self, sql: str, params: Collection[object] = ()) -> list[tuple[Any, ...]]:
        import psycopg  # noqa: PLC0415

        try:
            with self._lock, self._db().cursor() as cursor:
                cursor.execute(_placeholders(sql), tuple(params))
                return cursor.fetchall()
        except psycopg.Error as error:
            raise self._error("read", error) from None
