"""The leader lease: which instance polls, with a fencing epoch.

- :func:`decide_lease` is the rule, a pure function: a holder renews its lease (same epoch);
  a free or expired lease is taken with the next epoch; an unexpired lease of another holder
  is left alone.
- :class:`SharedLease` keeps the lease in one database row, read ``FOR UPDATE`` and written in
  one transaction, on the database's clock (hosts' clocks may disagree). Once an instance leads,
  every write transaction of its poller checks, just before it commits, that the row still
  names it with its epoch (``FOR SHARE``): a successor's takeover waits for that commit, and a
  write of a leader that was paused or cut off past its lease finds a higher epoch and is
  rolled back (:class:`~orderwatch.StateError` subclass ``LeadershipLostError``). No advisory lock:
  it belongs to a session (lost behind a pooler, kept by a frozen process) and says nothing
  inside the transaction that commits poll results.
- :class:`SoleLease` is a store only one daemon can open (the SQLite file, locked): always the
  leader, epoch 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from orderwatch._exceptions import LeadershipLostError
from orderwatch._store._base import DATABASE_NOW as _NOW
from orderwatch._store._base import Database

__all__ = ["Lease", "SharedLease", "SoleLease", "decide_lease"]


@dataclass(frozen=True, slots=True)
class Lease:
    """Who leads (``holder``, ``None`` when released), with which epoch, until when."""

    holder: str | None
    epoch: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class Instance:
    """An instance as the others see it (``orderwatch status``)."""

    name: str
    role: str
    last_seen: float
    started_at: float


def decide_lease(current: Lease, me: str, *, now: float, duration: float) -> Lease | None:
    """The lease after ``me`` asks for it at ``now``, or ``None`` when another holder keeps it.

    ``me`` identifies one process (a restarted instance is a new holder and waits for its old
    lease to expire, or for the release a clean stop makes).
    """
    if current.holder == me:
        return Lease(me, current.epoch, now + duration)
    if current.holder is None or current.expires_at <= now:
        return Lease(me, current.epoch + 1, now + duration)
    return None


class SoleLease(Database):
    """The only store of its kind a daemon can open: it always leads, epoch 1."""

    def hold_lease(self, holder: str, *, duration: float) -> Lease | None:
        """Take or renew the lease for ``holder``: the lease it holds now, or ``None``."""
        del duration
        return Lease(holder, 1, float("inf"))

    def release_lease(self, holder: str) -> None:
        """Give the lease up (a clean stop): a standby takes over at its next try."""
        del holder

    def fence(self, holder: str | None, epoch: int | None) -> None:
        """From now on, every write transaction commits only while ``holder`` leads with
        ``epoch`` (``None``: no check)."""
        del holder, epoch

    def heartbeat(self, instance: str, role: str, *, started_at: float) -> None:
        """Tell the others this instance is alive and what it does."""
        del instance, role, started_at

    def instances(self) -> list[Instance]:
        """Every instance that has told the others it is alive, most recently seen first."""
        return []


class SharedLease(SoleLease):
    """The lease in the ``leader_lease`` row of a database several instances share."""

    _fence: tuple[str, int] | None = None

    def hold_lease(self, holder: str, *, duration: float) -> Lease | None:
        with self._transaction():
            [row] = self._query(
                f"SELECT holder, epoch, expires_at, {_NOW} AS now FROM leader_lease "
                "WHERE name = 'poller' FOR UPDATE"
            )
            current = Lease(row["holder"], row["epoch"], row["expires_at"])
            lease = decide_lease(current, holder, now=row["now"], duration=duration)
            if lease is not None:
                self._execute(
                    "UPDATE leader_lease SET holder = ?, epoch = ?, expires_at = ? "
                    "WHERE name = 'poller'",
                    (lease.holder, lease.epoch, lease.expires_at),
                )
        return lease

    def release_lease(self, holder: str) -> None:
        with self._transaction():
            self._execute(
                "UPDATE leader_lease SET holder = NULL, expires_at = 0 "
                "WHERE name = 'poller' AND holder = ?",
                (holder,),
            )

    def fence(self, holder: str | None, epoch: int | None) -> None:
        self._fence = None if holder is None or epoch is None else (holder, epoch)

    def _before_commit(self) -> None:
        if self._fence is None:
            return
        holder, epoch = self._fence
        if not self._query(
            "SELECT 1 AS ok FROM leader_lease WHERE name = 'poller' AND holder = ? AND epoch = ? "
            "FOR SHARE",
            (holder, epoch),
        ):
            raise LeadershipLostError(
                f"state: {self.location}: the leader lease (epoch {epoch}) was taken over; "
                "this write was rolled back"
            )

    def heartbeat(self, instance: str, role: str, *, started_at: float) -> None:
        with self._transaction():
            self._execute(
                f"INSERT INTO instances (name, role, last_seen, started_at) VALUES (?, ?, {_NOW},"
                " ?) ON CONFLICT (name) DO UPDATE SET role = excluded.role, "
                "last_seen = excluded.last_seen, started_at = excluded.started_at",
                (instance, role, started_at),
            )

    def instances(self) -> list[Instance]:
        rows = self._query(
            "SELECT name, role, last_seen, started_at FROM instances ORDER BY last_seen DESC"
        )
        return [Instance(r["name"], r["role"], r["last_seen"], r["started_at"]) for r in rows]
