"""Leadership: whether this instance polls (the leader) or stands by, decided by the lease in
the shared database (the rule and its SQL: ``_store._lease``).

- The lease is asked for every third of its length (or every poll interval, if shorter): the
  leader renews it, a standby takes it once it expired or was released.
- The leader stands down when another instance holds the lease, when a write found a higher
  epoch (``LeadershipLostError``), or when it could not renew for a whole lease (the database
  unreachable): from then on it neither polls nor commits anything.
- A clean stop releases the lease, so that a standby takes over at its next try.
- A store only one daemon can open (SQLite) makes its daemon the leader at once, for good.

Each change of role is one INFO line with the epoch, ``orderwatch_leader`` and
``orderwatch_leader_changes_total``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Final

import anyio

from orderwatch._exceptions import StateUnavailableError
from orderwatch._metrics import Health, Metrics
from orderwatch._store import Store

__all__ = ["Leadership"]

log = logging.getLogger("orderwatch")

_MAX_BACKOFF: Final = 30.0


class Leadership:
    """This instance's role. ``store`` is a connection of its own (renewals never wait behind
    a poll), used from a worker thread."""

    def __init__(
        self,
        store: Store,
        *,
        instance: str,
        lease: float,
        interval: float,
        metrics: Metrics,
        health: Health,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.instance = instance
        self.holder = f"{instance}#{uuid.uuid4().hex[:8]}"  # this process, not its successor
        self._lease = lease
        self._tick = min(lease / 3, interval)
        self._metrics, self._health = metrics, health
        self._clock = clock
        self._started_at = time.time()
        self.epoch: int | None = None
        self._renewed = 0.0
        self._elected = anyio.Event()
        self._deposed = anyio.Event()
        self._recheck = anyio.Event()
        metrics.leader.set(0)
        health.role = "standby"

    @property
    def leader(self) -> bool:
        return self.epoch is not None

    async def wait_elected(self) -> int:
        """Wait until this instance leads; its epoch."""
        while self.epoch is None:
            await self._elected.wait()
        return self.epoch

    async def wait_deposed(self) -> None:
        """Wait until this instance stands down (after :meth:`wait_elected`)."""
        await self._deposed.wait()

    async def run(self) -> None:
        """Hold or seek the lease, forever."""
        failing: str | None = None
        backoff = self._tick
        while True:
            asked = self._clock()
            try:
                lease = await self._store.call(
                    partial(self._store.hold_lease, self.holder, duration=self._lease)
                )
                role = "leader" if lease is not None else "standby"
                await self._store.call(
                    partial(self._store.heartbeat, self.instance, role, started_at=self._started_at)
                )
            except StateUnavailableError as error:
                if failing is None:
                    log.warning("%s; neither polling nor sending, retrying with backoff", error)
                failing = str(error)
                if self.leader and self._clock() - self._renewed >= self._lease:
                    self._stand_down("its lease ran out with the database unreachable")
                backoff = min(backoff * 2, _MAX_BACKOFF, self._lease)
                await self._nap(backoff)
                continue
            if failing is not None:
                log.info("state: the database answers again")
                failing = None
            backoff = self._tick
            self._health.last_contact = time.time()
            if lease is not None:
                self._renewed = asked
                if self.epoch != lease.epoch:
                    self._become_leader(lease.epoch)
            elif self.leader:
                self._stand_down("another instance holds the lease")
            if not self._store.shared:
                return  # a store only this daemon can open: it leads for good
            await self._nap(self._tick)

    async def _nap(self, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            await self._recheck.wait()
        self._recheck = anyio.Event()

    def lost(self) -> None:
        """A write found another leader's epoch: stand down now, ask again at once."""
        if self.leader:
            self._stand_down("a write found a newer leader's epoch")
        self._recheck.set()

    async def release(self) -> None:
        """Give the lease up (a clean stop), so that a standby takes over at once."""
        if not self.leader or not self._store.shared:
            return
        epoch = self.epoch
        self._stand_down("stopping")
        with anyio.CancelScope(shield=True), anyio.move_on_after(2.0):
            try:
                await self._store.call(partial(self._store.release_lease, self.holder))
                await self._store.call(
                    partial(
                        self._store.heartbeat, self.instance, "stopped", started_at=self._started_at
                    )
                )
            except StateUnavailableError as error:
                log.warning(
                    "lease of epoch %s not released (%s): it expires by itself", epoch, error
                )

    def _become_leader(self, epoch: int) -> None:
        self.epoch = epoch
        self._metrics.leader.set(1)
        self._metrics.leader_changes.inc()
        self._health.role = "leader"
        self._health.last_progress = time.time()  # a new leader is given time for a first cycle
        if self._store.shared:
            log.info("leader: %s polls now (epoch %d)", self.instance, epoch)
        self._deposed = anyio.Event()
        self._elected.set()
        self._elected = anyio.Event()

    def _stand_down(self, why: str) -> None:
        log.info("standby: %s stands down (epoch %s): %s", self.instance, self.epoch, why)
        self.epoch = None
        self._metrics.leader.set(0)
        self._metrics.leader_changes.inc()
        self._health.role = "standby"
        self._deposed.set()
