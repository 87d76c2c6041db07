"""The SQLite backend: one file (WAL), the embedded default, for one daemon at a time.

The daemon takes ``<path>.lock``: a second daemon on the same file would announce every change
twice, so it is refused. Commits of orders and events wait for no fsync; :meth:`sync` makes them
durable before anything they announce is sent.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from orderwatch._exceptions import StateError
from orderwatch._store._interface import Store
from orderwatch._store._schema import MIGRATIONS, SCHEMA_VERSION

__all__ = ["SqliteStore"]


class SqliteStore(Store):
    """The SQLite state file. Use :meth:`open`; close it with :meth:`close`."""

    latest_schema = SCHEMA_VERSION
    console_schema = 3

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path
        self.location = str(path)
        self._lock_fd: int | None = None
        self._durable = True
        self._in_batch = False
        self._unsynced = False  # events committed since the last fsync

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False, exclusive: bool = False) -> SqliteStore:
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

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _engine_problems(self) -> list[str]:
        return [
            f"sqlite: {row[0]}"
            for row in self._db.execute("PRAGMA integrity_check").fetchall()
            if row[0] != "ok"
        ]

    def rows(self, table: str, columns: str) -> list[tuple[Any, ...]]:
        """Every row of ``table`` (``columns`` of it): what a move to PostgreSQL copies."""
        return self._tuples(f"SELECT {columns} FROM {table}")

    # -- durability -------------------------------------------------------------------------

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

    # -- the primitives ---------------------------------------------------------------------

    @contextmanager
    def _write(self, *, durable: bool) -> Iterator[None]:
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

    def _execute(self, sql: str, params: Sequence[object] = ()) -> int:
        return self._db.execute(sql, params).rowcount

    def _executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        self._db.executemany(sql, rows)

    def _reserve_event_seqs(self, count: int) -> list[int]:
        # Inside a write transaction (BEGIN IMMEDIATE): the numbers are this writer's alone.
        (last,) = self._db.execute(
            "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)"
        ).fetchone()
        return list(range(last + 1, last + count + 1))

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as error:
            raise StateError(f"state: cannot read {self.path}: {error}") from None

    def _tuples(self, sql: str, params: Collection[object] = ()) -> list[tuple[Any, ...]]:
        try:
            cursor = self._db.cursor()
            cursor.row_factory = None
            return cursor.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as error:
            raise StateError(f"state: cannot read {self.path}: {error}") from None
