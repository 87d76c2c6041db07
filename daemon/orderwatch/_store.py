"""The state store: one SQLite file (WAL) holding orders, events and the outbox.

What a caller may rely on:

- :meth:`Store.record` commits, in one transaction, the orders a batch observed, the events its
  changes caused and one pending delivery per event and destination. Nothing is sent before
  that commit returns.
- A delivery leaves ``pending`` only through :meth:`Store.mark_sent` (after the destination
  accepted it) or :meth:`Store.mark_dead`. A crash at any moment leaves it pending.
- Final orders stay in the file but are never loaded into memory as a group.

Errors opening or writing the file raise :class:`~orderwatch.StateError` naming the path.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from orderwatch._detect import Change, Event, KnownOrder, NewOrder, Note
from orderwatch._exceptions import StateError
from orderwatch._models import FINAL_STATUSES, Order, is_final
from orderwatch._silences import Ack, Silence

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Delivery", "Store", "StoredEvent", "Target"]

SCHEMA_VERSION: Final = 3
_FINAL_IN_SQL: Final = ", ".join(f"'{status}'" for status in sorted(FINAL_STATUSES))

# One script per schema version; a file at version N runs scripts N+1 … SCHEMA_VERSION in one
# transaction. Never edit a released script: add the next one.
MIGRATIONS: Final = {
    1: """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE orders (
    id                TEXT PRIMARY KEY,
    number            INTEGER NOT NULL,
    status            TEXT NOT NULL,
    is_final          INTEGER NOT NULL,
    status_since      REAL NOT NULL,
    since_exact       INTEGER NOT NULL,
    first_seen        REAL NOT NULL,
    anchor            INTEGER,
    created_date      TEXT,
    participant_login TEXT,
    total             TEXT
);
CREATE INDEX orders_open ON orders (number) WHERE is_final = 0;
CREATE TABLE events (
    seq                  INTEGER PRIMARY KEY AUTOINCREMENT,
    id                   TEXT NOT NULL UNIQUE,
    kind                 TEXT NOT NULL,
    order_id             TEXT NOT NULL,
    previous_status      TEXT,
    status               TEXT NOT NULL,
    previous_since       REAL,
    previous_since_exact INTEGER NOT NULL,
    detected_at          REAL NOT NULL,
    after_gap            INTEGER NOT NULL,
    order_json           TEXT NOT NULL
);
CREATE TABLE deliveries (
    event_seq       INTEGER NOT NULL REFERENCES events (seq),
    route           TEXT NOT NULL,
    destination     TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error      TEXT,
    done_at         REAL,
    PRIMARY KEY (event_seq, destination)
);
CREATE INDEX deliveries_pending
    ON deliveries (destination, event_seq) WHERE state = 'pending';
""",
    2: """
ALTER TABLE orders ADD COLUMN stuck_alerts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN stuck_last REAL;
ALTER TABLE events ADD COLUMN resolves_stuck INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN reminder INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN age_from REAL;
CREATE TABLE disabled_webhooks (
    destination TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    disabled_at REAL NOT NULL
);
CREATE INDEX events_order ON events (order_id, kind);
CREATE INDEX deliveries_dead ON deliveries (destination) WHERE state = 'dead';
""",
    3: """
ALTER TABLE events ADD COLUMN acknowledged TEXT;
ALTER TABLE events ADD COLUMN note_json TEXT;
CREATE INDEX events_time ON events (detected_at);
CREATE TABLE deliveries_v3 (
    event_seq       INTEGER NOT NULL REFERENCES events (seq),
    route           TEXT NOT NULL,
    destination     TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'dead', 'silenced')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error      TEXT,
    done_at         REAL,
    held            INTEGER NOT NULL DEFAULT 0,
    age_from        REAL,
    silenced_by     INTEGER,
    PRIMARY KEY (event_seq, destination)
);
INSERT INTO deliveries_v3 (event_seq, route, destination, state, attempts, next_attempt_at,
    last_error, done_at, held, age_from)
    SELECT event_seq, route, destination, state, attempts, next_attempt_at, last_error, done_at,
        held, age_from FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_v3 RENAME TO deliveries;
CREATE INDEX deliveries_pending
    ON deliveries (destination, event_seq) WHERE state = 'pending';
CREATE INDEX deliveries_dead ON deliveries (destination) WHERE state = 'dead';
CREATE INDEX deliveries_silenced ON deliveries (event_seq) WHERE state = 'silenced';
CREATE TABLE acks (
    order_id TEXT NOT NULL,
    number   INTEGER NOT NULL,
    status   TEXT NOT NULL,
    since    REAL NOT NULL,
    at       REAL NOT NULL,
    until    REAL,
    by       TEXT,
    comment  TEXT,
    PRIMARY KEY (order_id, status, since)
);
CREATE TABLE silences (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    statuses   TEXT,
    orders     TEXT,
    routes     TEXT,
    events     TEXT,
    created_at REAL NOT NULL,
    ends_at    REAL NOT NULL,
    comment    TEXT,
    created_by TEXT
);
CREATE TABLE summaries_sent (
    summary    TEXT PRIMARY KEY,
    period_end REAL NOT NULL
);
""",
}


@dataclass(frozen=True, slots=True)
class Target:
    """Where and when one event is to be delivered. ``destination_key`` is the destination's
    ``key`` (a hash, never its URL); the tables call it ``destination``."""

    route: str
    destination_key: str
    due_at: float
    held: bool = False


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event with the identity the store gave it (``id`` is stable across retries)."""

    seq: int
    id: str
    event: Event


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivery of one event to one destination. ``age_from`` starts its age limit."""

    stored: StoredEvent
    route: str
    destination_key: str
    attempts: int
    next_attempt_at: float
    held: bool = False
    age_from: float = 0.0
    state: str = "pending"
    last_error: str | None = None


def _order_json(order: Order) -> str:
    return json.dumps(
        {
            "id": order.id,
            "number": order.number,
            "status": order.status,
            "createdDate": order.created_date,
            "participantLogin": order.participant_login,
            "total": None if order.total is None else str(order.total),
        }
    )


def _order_from_json(text: str) -> Order:
    data = json.loads(text)
    total = data.get("total")
    return Order(
        id=data["id"],
        number=data["number"],
        status=data["status"],
        created_date=data.get("createdDate"),
        participant_login=data.get("participantLogin"),
        total=None if total is None else Decimal(total),
    )


_KNOWN_COLUMNS: Final = (
    "id, number, status, created_date, participant_login, total, status_since, since_exact, "
    "anchor, stuck_alerts, stuck_last"
)


def _selection(event_id: str | None, route: str | None) -> tuple[str, list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    if event_id is not None:
        clauses.append("event_seq = (SELECT seq FROM events WHERE id = ?)")
        params.append(event_id)
    if route is not None:
        clauses.append("route = ?")
        params.append(route)
    return (" AND ".join(clauses) or "1"), params


def _note(text: str | None) -> Note | None:
    if not text:
        return None
    data = json.loads(text)
    return Note(
        data["case"], data["title"], data["body"], data.get("data") or {}, data.get("about")
    )


def _note_json(note: Note | None) -> str | None:
    if note is None:
        return None
    return json.dumps(
        {
            "case": note.case,
            "title": note.title,
            "body": note.body,
            "data": note.data,
            "about": note.about,
        },
        ensure_ascii=False,
    )


def _event(row: sqlite3.Row) -> Event:
    return Event(
        kind=row["kind"],
        order=_order_from_json(row["order_json"]),
        previous_status=row["previous_status"],
        previous_since=row["previous_since"],
        previous_since_exact=bool(row["previous_since_exact"]),
        detected_at=row["detected_at"],
        after_gap=bool(row["after_gap"]),
        resolves_stuck=bool(row["resolves_stuck"]),
        reminder=row["reminder"],
        acknowledged=row["acknowledged"],
        note=_note(row["note_json"]),
    )


def _delivery(row: sqlite3.Row) -> Delivery:
    return Delivery(
        stored=StoredEvent(seq=row["seq"], id=row["id"], event=_event(row)),
        route=row["route"],
        destination_key=row["destination"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        held=bool(row["held"]),
        age_from=row["age_from"],
        state=row["state"],
        last_error=row["last_error"],
    )


def _known(row: Sequence[Any]) -> KnownOrder:
    """A row of ``_KNOWN_COLUMNS`` (a plain tuple where speed counts: one per order a page)."""
    (order_id, number, status, created, login, total, since, exact, anchor, alerts, last) = row
    return KnownOrder(
        Order(order_id, number, status, created, login, None if total is None else Decimal(total)),
        since,
        bool(exact),
        anchor,
        alerts,
        last,
    )


def _order_rows(
    changes: Sequence[Change], anchors: Mapping[str, int], now: float
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """The parameters of the INSERTs (new orders) and UPDATEs (transitions) ``changes`` need."""
    inserts: list[tuple[object, ...]] = []
    updates: list[tuple[object, ...]] = []
    for change in changes:
        order = change.order
        fields = (
            order.number,
            order.status,
            int(is_final(order.status)),
            order.created_date,
            order.participant_login,
            None if order.total is None else str(order.total),
            order.id,
        )
        if isinstance(change, NewOrder):
            inserts.append((*fields, now, now, anchors.get(order.id)))
        else:
            updates.append((*fields, now, anchors.get(order.id)))
    return inserts, updates


class Store:
    """The SQLite state file. Use :meth:`open`; close it with :meth:`close`."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path
        self._lock_fd: int | None = None
        self._durable = True
        self._in_batch = False
        self._unsynced = False  # events committed since the last fsync

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False, exclusive: bool = False) -> Store:
        """Open (and create, unless ``readonly``) the state file at ``path``.

        ``exclusive`` (the daemon) also takes ``<path>.lock``: a second daemon on the same file
        would announce every change twice, so it is refused.
        """
        path = Path(path)
        if readonly and not path.exists():
            raise StateError(f"state: {path} does not exist (has orderwatch run yet?)")
        lock_fd = cls._lock(path) if exclusive else None
        try:
            if readonly:
                db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
            else:
                if not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    # Owner-only from the first byte: the file holds order data.
                    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
                db = sqlite3.connect(path, isolation_level=None, timeout=5.0)
            db.row_factory = sqlite3.Row
            store = cls(db, path)
            store._prepare(readonly=readonly)
        except sqlite3.Error as error:
            cls._unlock(lock_fd)
            raise StateError(f"state: cannot open {path}: {error}") from None
        except OSError as error:
            cls._unlock(lock_fd)
            raise StateError(f"state: cannot open {path}: {error.strerror or error}") from None
        except StateError:
            cls._unlock(lock_fd)
            raise
        store._lock_fd = lock_fd
        return store

    @staticmethod
    def _lock(path: Path) -> int:
        lock_path = path.with_name(path.name + ".lock")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        except OSError as error:
            raise StateError(f"state: cannot open {lock_path}: {error.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StateError(
                f"state: {path} is in use by another orderwatch (pid {holder}); "
                "two daemons on one state file would announce every change twice"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return fd

    @staticmethod
    def _unlock(fd: int | None) -> None:
        if fd is not None:
            os.close(fd)  # closing releases the flock

    def _prepare(self, *, readonly: bool) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StateError(
                f"state: {self.path} was written by a newer orderwatch "
                f"(schema {version}, this one reads up to {SCHEMA_VERSION})"
            )
        if readonly:
            return
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute("PRAGMA foreign_keys = ON")
        if version < SCHEMA_VERSION:
            scripts = "".join(MIGRATIONS[v] for v in range(version + 1, SCHEMA_VERSION + 1))
            try:
                self._db.executescript(
                    f"BEGIN IMMEDIATE; {scripts} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                )
            except sqlite3.Error:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        try:
            self._db.close()
        except sqlite3.Error as error:
            raise StateError(f"state: cannot close {self.path}: {error}") from None
        finally:
            self._unlock(self._lock_fd)
            self._lock_fd = None

    # -- integrity and export ---------------------------------------------------------------

    def check(self) -> list[str]:
        """Problems found in the file (empty when it is sound): SQLite's own integrity check,
        then orderwatch's invariants."""
        problems = [
            f"sqlite: {row[0]}"
            for row in self._db.execute("PRAGMA integrity_check").fetchall()
            if row[0] != "ok"
        ]
        if problems:
            return problems
        checks = {
            "deliveries of events that do not exist": "SELECT count(*) FROM deliveries "
            "WHERE event_seq NOT IN (SELECT seq FROM events)",
            "events of orders that do not exist": "SELECT count(*) FROM events "
            "WHERE order_id != '' AND order_id NOT IN (SELECT id FROM orders)",
            "orders whose final flag disagrees with their status": "SELECT count(*) FROM orders "
            f"WHERE is_final != (status IN ({_FINAL_IN_SQL}))",
            "sent or dead deliveries without a completion time": "SELECT count(*) FROM "
            "deliveries WHERE state != 'pending' AND done_at IS NULL",
        }
        for what, sql in checks.items():
            count = self._db.execute(sql).fetchone()[0]
            if count:
                problems.append(f"{count} {what}")
        return problems

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def export(self) -> Iterable[dict[str, object]]:
        """Every order with its status history (events), oldest order first, for JSON lines.

        Holds no secret: the state file never stores URLs or credentials.
        """
        orders = self._db.execute(
            "SELECT id, number, status, created_date, participant_login, total, first_seen, "
            "status_since FROM orders ORDER BY number"
        )
        for order in orders:
            history = self._db.execute(
                "SELECT id, kind, previous_status, status, detected_at, after_gap FROM events "
                "WHERE order_id = ? ORDER BY seq",
                (order["id"],),
            ).fetchall()
            yield {
                "id": order["id"],
                "number": order["number"],
                "status": order["status"],
                "createdDate": order["created_date"],
                "participantLogin": order["participant_login"],
                "total": order["total"],
                "first_seen": order["first_seen"],
                "status_since": order["status_since"],
                "history": [
                    {
                        "event_id": event["id"],
                        "type": event["kind"],
                        "previous_status": event["previous_status"],
                        "status": event["status"],
                        "detected_at": event["detected_at"],
                        "after_gap": bool(event["after_gap"]),
                    }
                    for event in history
                ],
            }

    def _set_synchronous(self, *, durable: bool) -> None:
        """fsync at every commit of delivery state (FULL). Commits of orders and events do not
        wait for one (NORMAL): they survive a crash of the process (WAL), and :meth:`sync`
        makes them survive a power cut before anything they announce is sent. Lost in a power
        cut before that, they are simply observed again."""
        if durable != self._durable:
            self._db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            self._durable = durable

    def sync(self) -> None:
        """Make every commit so far durable, if one is not yet: the courier calls this before
        it sends. One fsync covers every event committed since the last one, however many."""
        if self._unsynced:
            with self._transaction(durable=True):  # a FULL commit syncs the whole log
                self._db.execute(
                    "INSERT INTO meta (key, value) VALUES ('syncs', '1') "
                    "ON CONFLICT (key) DO UPDATE SET value = value + 1"
                )

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Write everything done inside as one transaction: a group commit, for pages that
        arrived together (a commit costs as much CPU as a page's parsing and lookup)."""
        if self._in_batch:
            yield  # already inside a batch: part of it
            return
        with self._transaction(durable=False):
            self._in_batch = True
            try:
                yield
            finally:
                self._in_batch = False

    @contextmanager
    def _transaction(self, *, durable: bool = True) -> Iterator[None]:
        if self._in_batch:  # inside batch(): its commit is this one's
            yield
            return
        try:
            self._set_synchronous(durable=durable)
            if not self._db.in_transaction:
                self._db.execute("BEGIN IMMEDIATE")
            yield
            if self._db.in_transaction:
                self._db.execute("COMMIT")
            if durable:
                self._unsynced = False
        except sqlite3.Error as error:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise StateError(f"state: cannot write {self.path}: {error}") from None
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as error:
            raise StateError(f"state: cannot read {self.path}: {error}") from None

    def _tuples(self, sql: str, params: Collection[object]) -> list[tuple[Any, ...]]:
        """:meth:`_query` with rows as plain tuples: a third cheaper than :class:`sqlite3.Row`."""
        try:
            cursor = self._db.cursor()
            cursor.row_factory = None
            return cursor.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as error:
            raise StateError(f"state: cannot read {self.path}: {error}") from None

    # -- meta -------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    def set_meta(self, **values: str | float) -> None:
        with self._transaction(durable=False):
            self._put_meta(values)

    def _put_meta(self, values: Mapping[str, str | float]) -> None:
        self._db.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [(key, str(value)) for key, value in values.items()],
        )

    @property
    def first_sync_done(self) -> bool:
        """True once a first sync has walked the whole list."""
        return self.get_meta("baseline_done") == "1"

    @property
    def arrivals(self) -> int:
        return int(self.get_meta("arrivals") or 0)

    # -- orders -----------------------------------------------------------------------------

    def lookup(self, ids: Collection[str]) -> dict[str, KnownOrder]:
        """The known orders among ``ids``."""
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._tuples(f"SELECT {_KNOWN_COLUMNS} FROM orders WHERE id IN ({marks})", ids)
        return {row[0]: _known(row) for row in rows}

    def glance(self, ids: Collection[str]) -> dict[str, tuple[str, int | None]]:
        """Status and list anchor of the known orders among ``ids``: enough to tell which need
        a full :meth:`lookup` (see :func:`~orderwatch._detect.settled`), for a third of it."""
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._tuples(f"SELECT id, status, anchor FROM orders WHERE id IN ({marks})", ids)
        return {order_id: (status, anchor) for order_id, status, anchor in rows}

    def open_orders(self) -> list[KnownOrder]:
        """Every order not in a final status, newest first."""
        rows = self._query(
            f"SELECT {_KNOWN_COLUMNS} FROM orders WHERE is_final = 0 ORDER BY number DESC"
        )
        return [_known(row) for row in rows]

    def open_anchors(self) -> dict[str, int | None]:
        """Id → list anchor of every open order: what a cycle's planning needs, and no more."""
        return dict(self._tuples("SELECT id, anchor FROM orders WHERE is_final = 0", ()))

    def open_statuses(self) -> dict[str, tuple[str, int | None]]:
        """Id → (status, list anchor) of every open order: what the request budget plans with."""
        rows = self._tuples("SELECT id, status, anchor FROM orders WHERE is_final = 0", ())
        return {order_id: (status, anchor) for order_id, status, anchor in rows}

    def oldest_open_since(self) -> dict[str, float]:
        """For each open status, when its longest-waiting order entered it."""
        rows = self._query(
            "SELECT status, min(status_since) AS since FROM orders WHERE is_final = 0 "
            "GROUP BY status"
        )
        return {row["status"]: row["since"] for row in rows}

    def status_counts(self) -> dict[str, int]:
        rows = self._query("SELECT status, count(*) AS n FROM orders GROUP BY status")
        return {row["status"]: row["n"] for row in rows}

    def record(
        self,
        anchors: Mapping[str, int],
        changes: Sequence[Change],
        deliveries: Sequence[tuple[Event, Sequence[Target]]],
        *,
        anchors_before: Mapping[str, int | None],
        now: float,
        arrivals: int | None = None,
    ) -> list[StoredEvent]:
        """Commit one observed batch at once: orders, events, and their pending deliveries.

        ``anchors`` holds the list anchor of each order seen where its position could be told;
        ``anchors_before`` the anchor the state had for each of those it knew (:meth:`glance`):
        only moved ones are written. ``deliveries`` pairs each event with its targets. A
        ``stuck`` event also counts as an alert sent for its order; a transition clears that
        count.
        """
        changed = {change.order.id for change in changes}
        moved = [
            (anchor, order_id)
            for order_id, anchor in anchors.items()
            if order_id not in changed and order_id in anchors_before
            if anchors_before[order_id] != anchor
        ]
        if not (changes or moved or deliveries or arrivals is not None):
            return []  # an unchanged page: nothing to write, no transaction to open
        stored: list[StoredEvent] = []
        inserts, updates = _order_rows(changes, anchors, now)
        with self._transaction(durable=False):  # sync() before they are sent
            if inserts:
                self._db.executemany(
                    "INSERT INTO orders (number, status, is_final, created_date, "
                    "participant_login, total, id, status_since, since_exact, first_seen, "
                    "anchor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                    inserts,
                )
            if updates:
                self._db.executemany(
                    "UPDATE orders SET number = ?1, status = ?2, is_final = ?3, created_date = ?4,"
                    " participant_login = ?5, total = ?6, status_since = ?8, since_exact = 1,"
                    " anchor = coalesce(?9, anchor), stuck_alerts = 0, stuck_last = NULL"
                    " WHERE id = ?7",
                    updates,
                )
            if moved:
                self._db.executemany("UPDATE orders SET anchor = ? WHERE id = ?", moved)
            if deliveries:
                stored = self._insert_events(deliveries)
            stuck = [(e.detected_at, e.order.id) for e, _ in deliveries if e.kind == "stuck"]
            if stuck:
                self._db.executemany(
                    "UPDATE orders SET stuck_alerts = stuck_alerts + 1, stuck_last = ? "
                    "WHERE id = ?",
                    stuck,
                )
            if arrivals is not None:
                self._db.execute(
                    "INSERT INTO meta (key, value) VALUES ('arrivals', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(arrivals),),
                )
        if stored:
            self._unsynced = True
        return stored

    def set_anchors(self, anchors: Sequence[tuple[str, int]]) -> None:
        """Record list anchors learned after the orders themselves were committed."""
        if anchors:
            with self._transaction(durable=False):
                self._db.executemany(
                    "UPDATE orders SET anchor = ? WHERE id = ?",
                    [(anchor, order_id) for order_id, anchor in anchors],
                )

    def _insert_events(
        self, deliveries: Sequence[tuple[Event, Sequence[Target]]]
    ) -> list[StoredEvent]:
        """Insert events and their deliveries, two statements however many (inside a write
        transaction: the sequence numbers taken here are then this writer's alone)."""
        (last,) = self._db.execute(
            "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)"
        ).fetchone()
        stored = [
            StoredEvent(seq=last + n, id=str(uuid.uuid4()), event=event)
            for n, (event, _) in enumerate(deliveries, 1)
        ]
        self._db.executemany(
            "INSERT INTO events (seq, id, kind, order_id, previous_status, status, "
            "previous_since, previous_since_exact, detected_at, after_gap, order_json, "
            "resolves_stuck, reminder, acknowledged, note_json) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    item.seq,
                    item.id,
                    item.event.kind,
                    item.event.order.id,
                    item.event.previous_status,
                    item.event.order.status,
                    item.event.previous_since,
                    int(item.event.previous_since_exact),
                    item.event.detected_at,
                    int(item.event.after_gap),
                    _order_json(item.event.order),
                    int(item.event.resolves_stuck),
                    item.event.reminder,
                    item.event.acknowledged,
                    _note_json(item.event.note),
                )
                for item in stored
            ],
        )
        self._db.executemany(
            "INSERT INTO deliveries (event_seq, route, destination, state, next_attempt_at, "
            "held, age_from) VALUES (?, ?, ?, 'pending', ?, ?, ?)",
            [
                (item.seq, t.route, t.destination_key, t.due_at, int(t.held), t.due_at)
                for item, (_, targets) in zip(stored, deliveries, strict=True)
                for t in targets
            ],
        )
        return stored

    # -- outbox -----------------------------------------------------------------------------

    _DELIVERY_SELECT: Final = (
        "SELECT d.route, d.destination, d.attempts, d.next_attempt_at, d.held, d.state, "
        "d.last_error, coalesce(d.age_from, e.detected_at) AS age_from, e.* "
        "FROM deliveries AS d JOIN events AS e ON e.seq = d.event_seq "
    )

    def pending_deliveries(self, limit: int = 1000) -> list[Delivery]:
        """Pending deliveries, oldest event first within each destination."""
        rows = self._query(
            self._DELIVERY_SELECT + "WHERE d.state = 'pending' "
            "ORDER BY d.destination, d.event_seq LIMIT ?",
            (limit,),
        )
        return [_delivery(row) for row in rows]

    def pending_deliveries_for(self, destination_key: str, limit: int = 1000) -> list[Delivery]:
        """One destination's pending deliveries, oldest event first."""
        rows = self._query(
            self._DELIVERY_SELECT + "WHERE d.state = 'pending' AND d.destination = ? "
            "ORDER BY d.event_seq LIMIT ?",
            (destination_key, limit),
        )
        return [_delivery(row) for row in rows]

    def pending_destinations(self) -> list[str]:
        """The keys of the destinations that have pending deliveries."""
        rows = self._query("SELECT DISTINCT destination FROM deliveries WHERE state = 'pending'")
        return [row["destination"] for row in rows]

    def deliveries(self, states: Collection[str] = ("pending", "dead")) -> list[Delivery]:
        """Deliveries in ``states``, in detection order (for ``orderwatch outbox list``)."""
        marks = ",".join("?" * len(states))
        rows = self._query(
            self._DELIVERY_SELECT + f"WHERE d.state IN ({marks}) ORDER BY d.event_seq, d.route",
            list(states),
        )
        return [_delivery(row) for row in rows]

    def _update(self, deliveries: Sequence[Delivery], sql: str, values: Sequence[object]) -> None:
        with self._transaction():
            self._db.executemany(
                f"{sql} WHERE event_seq = ? AND destination = ? AND state = 'pending'",
                [(*values, d.stored.seq, d.destination_key) for d in deliveries],
            )

    def mark_sent(self, deliveries: Sequence[Delivery], *, now: float) -> None:
        self._update(
            deliveries,
            "UPDATE deliveries SET state = 'sent', attempts = attempts + 1, last_error = NULL, "
            "done_at = ?",
            (now,),
        )

    def mark_dead(self, deliveries: Sequence[Delivery], error: str, *, now: float) -> None:
        self._update(
            deliveries,
            "UPDATE deliveries SET state = 'dead', attempts = attempts + 1, last_error = ?, "
            "done_at = ?",
            (error, now),
        )

    def mark_retry(
        self, deliveries: Sequence[Delivery], error: str, *, next_attempt_at: float
    ) -> None:
        self._update(
            deliveries,
            "UPDATE deliveries SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?",
            (error, next_attempt_at),
        )

    def stuck_recipients(self, order_id: str) -> set[tuple[str, str]]:
        """``(route, destination key)`` of every live delivery of a stuck alert for ``order_id``."""
        rows = self._query(
            "SELECT DISTINCT d.route, d.destination FROM events AS e JOIN deliveries AS d "
            "ON d.event_seq = e.seq WHERE e.order_id = ? AND e.kind = 'stuck' "
            "AND d.state != 'dead'",
            (order_id,),
        )
        return {(row["route"], row["destination"]) for row in rows}

    def requeue(self, *, event_id: str | None = None, route: str | None = None, now: float) -> int:
        """Make matching pending or dead deliveries due now, their age limit starting again."""
        where, params = _selection(event_id, route)
        with self._transaction():
            cursor = self._db.execute(
                "UPDATE deliveries SET state = 'pending', next_attempt_at = ?, age_from = ?, "
                f"done_at = NULL WHERE state IN ('pending', 'dead') AND {where}",
                (now, now, *params),
            )
        return cursor.rowcount

    def drop(self, *, event_id: str | None = None, route: str | None = None) -> int:
        """Delete matching pending or dead deliveries (their events stay in the history)."""
        where, params = _selection(event_id, route)
        with self._transaction():
            cursor = self._db.execute(
                f"DELETE FROM deliveries WHERE state IN ('pending', 'dead') AND {where}", params
            )
        return cursor.rowcount

    def disable_webhook(self, destination_key: str, name: str, reason: str, *, now: float) -> int:
        """Record webhook ``destination_key`` as disabled; dead-letter its pending deliveries."""
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO disabled_webhooks (destination, name, reason, disabled_at)"
                " VALUES (?, ?, ?, ?)",
                (destination_key, name, reason, now),
            )
            cursor = self._db.execute(
                "UPDATE deliveries SET state = 'dead', last_error = ?, done_at = ? "
                "WHERE destination = ? AND state = 'pending'",
                (reason, now, destination_key),
            )
        return cursor.rowcount

    def disabled_webhooks(self) -> dict[str, tuple[str, str, float]]:
        """``destination key → (name, reason, since)`` for every disabled webhook."""
        rows = self._query("SELECT * FROM disabled_webhooks ORDER BY name")
        return {r["destination"]: (r["name"], r["reason"], r["disabled_at"]) for r in rows}

    def forget_disabled_except(self, destination_keys: Collection[str]) -> None:
        """A webhook whose configuration changed is enabled again: forget stale entries."""
        marks = ",".join("?" * len(destination_keys)) or "NULL"
        with self._transaction():
            self._db.execute(
                f"DELETE FROM disabled_webhooks WHERE destination NOT IN ({marks})",
                list(destination_keys),
            )

    def make_pending_due(self, now: float) -> int:
        """Make every pending delivery due now (at start: the operator may have fixed things)."""
        with self._transaction():
            cursor = self._db.execute(
                "UPDATE deliveries SET next_attempt_at = ? "
                "WHERE state = 'pending' AND held = 0 AND next_attempt_at > ?",
                (now, now),
            )
        return cursor.rowcount

    def queue_counts(self) -> dict[str, int]:
        # One count per state, each through its partial index: sent rows are never scanned.
        return {
            state: self._query(f"SELECT count(*) FROM deliveries WHERE state = '{state}'")[0][0]
            for state in ("pending", "dead")
        }

    # -- what concerns no one order: notices, summaries --------------------------------------

    def record_notes(
        self, deliveries: Sequence[tuple[Event, Sequence[Target]]], *, meta: Mapping[str, str]
    ) -> list[StoredEvent]:
        """Commit events that concern no order (watcher notices) with their deliveries and the
        ``meta`` values that say they were made, at once and durably: they are sent like any
        other event, and a restart neither loses nor repeats them."""
        with self._transaction():
            self._put_meta(meta)
            return self._insert_events(deliveries) if deliveries else []

    def mark_silenced(self, deliveries: Sequence[Delivery], silence: int, *, now: float) -> None:
        """Record deliveries as silenced (by silence ``silence``) instead of sending them."""
        self._update(
            deliveries,
            "UPDATE deliveries SET state = 'silenced', silenced_by = ?, done_at = ?",
            (silence, now),
        )

    def events_between(self, start: float, end: float) -> list[Event]:
        """The order events (new orders, transitions) detected in ``start`` < t ≤ ``end``."""
        rows = self._query(
            "SELECT * FROM events WHERE detected_at > ? AND detected_at <= ? "
            "AND kind IN ('created', 'status_changed') ORDER BY seq",
            (start, end),
        )
        return [_event(row) for row in rows]

    def created_at(self, order_ids: Collection[str]) -> dict[str, float]:
        """When orderwatch saw each of ``order_ids`` come in as a new order (its ``created``
        event), for those it saw come in."""
        if not order_ids:
            return {}
        marks = ",".join("?" * len(order_ids))
        rows = self._tuples(
            f"SELECT order_id, min(detected_at) FROM events WHERE kind = 'created' "
            f"AND order_id IN ({marks}) GROUP BY order_id",
            list(order_ids),
        )
        return dict(rows)

    def order_by_number(self, number: int) -> KnownOrder | None:
        rows = self._tuples(f"SELECT {_KNOWN_COLUMNS} FROM orders WHERE number = ?", (number,))
        return _known(rows[0]) if rows else None

    # -- acknowledgements and silences ------------------------------------------------------

    def add_ack(self, ack: Ack) -> None:
        """Record ``ack`` (a second one for the same episode replaces the first)."""
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO acks (order_id, number, status, since, at, until, by, "
                "comment) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    ack.order_id,
                    ack.number,
                    ack.status,
                    ack.since,
                    ack.at,
                    None if ack.until == float("inf") else ack.until,
                    ack.by,
                    ack.comment,
                ),
            )

    def acks(self, order_ids: Collection[str] | None = None) -> list[Ack]:
        """Acknowledgements of open orders (of ``order_ids`` only, if given), newest last."""
        rows = self._query(
            "SELECT a.* FROM acks AS a JOIN orders AS o ON o.id = a.order_id "
            "WHERE o.is_final = 0 ORDER BY a.at"
        )
        found = [
            Ack(
                r["order_id"],
                r["number"],
                r["status"],
                r["since"],
                r["at"],
                float("inf") if r["until"] is None else r["until"],
                r["by"],
                r["comment"],
            )
            for r in rows
        ]
        return found if order_ids is None else [a for a in found if a.order_id in order_ids]

    def ack_of_episode(self, order_id: str, status: str, since: float) -> Ack | None:
        """The latest acknowledgement of one stuck episode, expired or not."""
        rows = self._query(
            "SELECT * FROM acks WHERE order_id = ? AND status = ? AND abs(since - ?) < 0.001 "
            "ORDER BY at DESC LIMIT 1",
            (order_id, status, since),
        )
        if not rows:
            return None
        r = rows[0]
        until = float("inf") if r["until"] is None else r["until"]
        return Ack(order_id, r["number"], status, r["since"], r["at"], until, r["by"], r["comment"])

    def add_silence(self, silence: Silence) -> int:
        """Record ``silence``; its id."""

        def listed(values: frozenset[str] | frozenset[int] | None) -> str | None:
            return None if values is None else json.dumps(sorted(values))

        with self._transaction():
            cursor = self._db.execute(
                "INSERT INTO silences (statuses, orders, routes, events, created_at, ends_at, "
                "comment, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    listed(silence.statuses),
                    listed(silence.orders),
                    listed(silence.routes),
                    listed(silence.events),
                    silence.created_at,
                    silence.ends_at,
                    silence.comment,
                    silence.created_by,
                ),
            )
        return int(cursor.lastrowid or 0)

    def silences(self, *, active_at: float | None = None) -> list[Silence]:
        """Every silence, or those still active at ``active_at``, oldest first."""
        rows = self._query(
            "SELECT * FROM silences WHERE ends_at > ? ORDER BY id",
            (float("-inf") if active_at is None else active_at,),
        )

        def read(text: str | None) -> frozenset[Any] | None:
            return None if text is None else frozenset(json.loads(text))

        return [
            Silence(
                id=r["id"],
                ends_at=r["ends_at"],
                statuses=read(r["statuses"]),
                orders=read(r["orders"]),
                routes=read(r["routes"]),
                events=read(r["events"]),
                comment=r["comment"],
                created_at=r["created_at"],
                created_by=r["created_by"],
            )
            for r in rows
        ]

    def expire_silence(self, silence: int, *, now: float) -> bool:
        """End silence ``silence`` now; False when there is no such active silence."""
        with self._transaction():
            cursor = self._db.execute(
                "UPDATE silences SET ends_at = ? WHERE id = ? AND ends_at > ?", (now, silence, now)
            )
        return cursor.rowcount > 0

    def silenced_count(self) -> int:
        return int(self._query("SELECT count(*) FROM deliveries WHERE state = 'silenced'")[0][0])

    # -- summaries --------------------------------------------------------------------------

    def summary_sent(self, summary: str) -> float | None:
        """The end of the period of the last summary ``summary`` committed; None: never."""
        rows = self._query("SELECT period_end FROM summaries_sent WHERE summary = ?", (summary,))
        return float(rows[0][0]) if rows else None

    def record_summary(
        self, summary: str, period_end: float, deliveries: Sequence[tuple[Event, Sequence[Target]]]
    ) -> list[StoredEvent]:
        """Commit that ``summary`` covers up to ``period_end``, with its deliveries (if any),
        at once: a restart neither loses nor repeats it."""
        with self._transaction():
            self._db.execute(
                "INSERT INTO summaries_sent (summary, period_end) VALUES (?, ?) "
                "ON CONFLICT (summary) DO UPDATE SET period_end = excluded.period_end",
                (summary, period_end),
            )
            return self._insert_events(deliveries) if deliveries else []
