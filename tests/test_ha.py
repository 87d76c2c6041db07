"""Instances sharing one PostgreSQL database, as subprocesses against the sandbox and a signed
webhook receiver: the leader killed, frozen, cut off or stopped, and a state file moved in.
After each: every change delivered, none twice except in-flight ones (then with the same
webhook id), none false (the independent checker in ``invariants.py``)."""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orderwatch._sandbox import Sandbox, World

from .conftest import SECRET, Daemon, HookReceiver, run_cli, sandbox_api, wait_until, write_config
from .test_faults import assert_caught_up, check, delivered, snapshot

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

LEASE = 2.0
INTERVAL = 0.3


@dataclass
class Cluster:
    """Daemons named ``a``, ``b`` … on one database; each start logs to a file of its own."""

    tmp_path: Path
    sandbox: Sandbox
    hooks: HookReceiver
    url: str
    daemons: dict[str, Daemon] = field(default_factory=dict)
    starts: int = 0
    started_at: dict[str, float] = field(default_factory=dict)

    def config(self, name: str, state: dict[str, str] | None = None) -> Path:
        return write_config(
            self.tmp_path / f"{name}.toml",
            api=sandbox_api(self.sandbox),
            poll={"interval": INTERVAL},
            state=state or {"url": self.url},
            ha={"instance": name, "lease": f"{LEASE:g}s"},
            metrics={"listen": "127.0.0.1:0"},
            notify={"webhooks": [{"name": "erp", "url": self.hooks.url, "secret": SECRET}]},
        )

    def start(self, name: str) -> Daemon:
        self.starts += 1
        self.started_at[name] = time.time()
        log = self.tmp_path / f"{name}-{self.starts}.log"
        self.daemons[name] = Daemon(config=self.config(name), log_path=log).start()
        return self.daemons[name]

    def lease(self) -> tuple[str | None, int]:
        """The instance holding the lease (``None``: released) and the epoch."""
        import psycopg

        with psycopg.connect(self.url) as db:
            row = db.execute("SELECT holder, epoch FROM leader_lease").fetchone()
        assert row is not None
        holder, epoch = row
        return (None if holder is None else holder.partition("#")[0]), epoch

    def next_leader(self, epoch: int, timeout: float = 10.0) -> tuple[str, int, float]:
        """Wait for a lease with a higher epoch than ``epoch``: its holder, epoch, seconds."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            holder, now = self.lease()
            if holder is not None and now > epoch:
                return holder, now, time.monotonic() - started
            time.sleep(0.02)
        pytest.fail(f"no new leader within {timeout}s")

    def standing_by(self, name: str) -> None:
        """Wait until the instance ``name`` (just started) stands by, seen by the others."""
        import psycopg

        since = self.started_at[name]

        def seen() -> bool:
            with psycopg.connect(self.url) as db:
                row = db.execute(
                    "SELECT role, started_at FROM instances WHERE name = %s", (name,)
                ).fetchone()
            return row is not None and row[0] == "standby" and row[1] >= since

        wait_until(seen, timeout=20, what=f"{name} to stand by")

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.tmp_path.glob("*.log")))

    def stop(self) -> None:
        for daemon in self.daemons.values():
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.proc.send_signal(signal.SIGCONT)
            daemon.stop_quietly()


@pytest.fixture
def cluster(tmp_path: Path, hooks: HookReceiver, postgres_url: str) -> Iterator[Cluster]:
    world = World(seed=21, orders=120, open_orders=30, arrival_rate=1.0, move_rate=0.3)
    with Sandbox(world) as sandbox:
        made = Cluster(tmp_path, sandbox, hooks, postgres_url)
        try:
            yield made
        finally:
            made.stop()


def started_pair(cluster: Cluster) -> tuple[dict[int, str], int]:
    """``a`` and ``b`` running, the first sync done: the sandbox's state and history mark."""
    cluster.start("a")
    cluster.start("b")
    wait_until(lambda: "first sync done" in cluster.logs(), what="the first sync")
    return snapshot(cluster.sandbox), len(cluster.sandbox.world.history)


def record(name: str, figures: dict[str, object]) -> None:
    print(f"\n{name}:", json.dumps(figures))  # noqa: T201 - the figures are the report
    if report := os.environ.get("ORDERWATCH_HA_REPORT"):
        path = Path(report)
        known = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps({**known, name: figures}, indent=2) + "\n")


def test_kill_9_of_the_leader_during_bursts_loses_nothing_and_doubles_nothing(
    cluster: Cluster,
) -> None:
    kills = int(os.environ.get("ORDERWATCH_HA_KILLS", "10"))
    initial, mark = started_pair(cluster)
    sandbox, rng = cluster.sandbox, random.Random(5)
    sandbox.tick_every(0.2)
    failovers = []
    for _ in range(kills):
        leader, epoch = cluster.lease()
        assert leader is not None
        with sandbox.lock:
            sandbox.world.step()  # a burst lands, then the kill comes while it is worked on
            for _ in range(3):
                sandbox.world.add_order()
        time.sleep(rng.uniform(0.05, 0.6))
        cluster.daemons[leader].kill()
        successor, _, seconds = cluster.next_leader(epoch)
        assert successor != leader
        failovers.append(seconds)
        assert check(sandbox, initial, mark, cluster.hooks, complete=False) == []
        cluster.start(leader)  # back, as a standby
        cluster.standing_by(leader)
    sandbox.stop_ticking()
    assert_caught_up(sandbox, initial, mark, cluster.hooks, timeout=60)
    posts = delivered(cluster.hooks)
    redelivered = len(posts) - len({p.event_id for p in posts})
    assert redelivered <= kills  # only what was in flight at a kill, with the same webhook id
    # The promise: another instance polls within lease + one interval (+ its start of a cycle).
    assert max(failovers) <= LEASE + 2 * INTERVAL + 0.5
    with sandbox.lock:
        changes = len(sandbox.world.history) - mark
    record(
        "kill -9 of the leader",
        {
            "kills": kills,
            "lease (s)": LEASE,
            "poll interval (s)": INTERVAL,
            "failover median (s)": round(statistics.median(failovers), 2),
            "failover max (s)": round(max(failovers), 2),
            "changes in the sandbox": changes,
            "events delivered": len({p.event_id for p in posts}),
            "redelivered (same webhook id)": redelivered,
        },
    )
    assert "Traceback" not in cluster.logs()


def test_a_leader_frozen_past_its_lease_stands_down_and_commits_nothing(cluster: Cluster) -> None:
    initial, mark = started_pair(cluster)
    leader, epoch = cluster.lease()
    assert leader is not None
    frozen = cluster.daemons[leader]
    assert frozen.proc is not None
    frozen.signal(signal.SIGSTOP)
    successor, _, _ = cluster.next_leader(epoch)
    assert successor != leader
    with cluster.sandbox.lock:
        for _ in range(4):
            cluster.sandbox.world.step()
    assert_caught_up(cluster.sandbox, initial, mark, cluster.hooks, timeout=30)
    frozen.signal(signal.SIGCONT)
    wait_until(
        lambda: "stands down" in frozen.log(), timeout=10, what="the old leader to stand down"
    )
    with cluster.sandbox.lock:
        cluster.sandbox.world.step()
    assert_caught_up(cluster.sandbox, initial, mark, cluster.hooks, timeout=30)
    posts = delivered(cluster.hooks)
    assert len(posts) == len({p.event_id for p in posts})  # nothing was in flight: no repeat
    assert cluster.lease()[0] == successor
    assert frozen.proc.poll() is None  # it lives on, as a standby


def test_the_leaders_database_sessions_killed_are_survived(cluster: Cluster) -> None:
    import psycopg

    initial, mark = started_pair(cluster)
    leader, _ = cluster.lease()
    with cluster.sandbox.lock:
        for _ in range(3):
            cluster.sandbox.world.step()
    with psycopg.connect(cluster.url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s",
            (f"orderwatch {leader}",),
        ).fetchone()
    assert killed is not None
    assert killed[0] == 3  # the poller's, the courier's and the lease keeper's
    with cluster.sandbox.lock:
        for _ in range(3):
            cluster.sandbox.world.step()
    assert_caught_up(cluster.sandbox, initial, mark, cluster.hooks, timeout=30)
    posts = delivered(cluster.hooks)
    assert len(posts) - len({p.event_id for p in posts}) <= 1  # at most one was in flight
    assert "cannot reach" in cluster.logs()
    assert "Traceback" not in cluster.logs()


def test_sigterm_hands_the_lease_over_within_one_interval(cluster: Cluster) -> None:
    initial, mark = started_pair(cluster)
    handovers = []
    for _ in range(3):
        leader, epoch = cluster.lease()
        assert leader is not None
        stopping = cluster.daemons[leader]
        assert stopping.proc is not None
        stopping.signal(signal.SIGTERM)
        successor, _, seconds = cluster.next_leader(epoch)
        assert successor != leader
        assert stopping.proc.wait(timeout=10) == 0
        handovers.append(seconds)
        with cluster.sandbox.lock:
            cluster.sandbox.world.step()
        cluster.start(leader)
        cluster.standing_by(leader)
    assert_caught_up(cluster.sandbox, initial, mark, cluster.hooks, timeout=30)
    posts = delivered(cluster.hooks)
    assert len(posts) == len({p.event_id for p in posts})
    # From the signal: the process finishes what is in flight, releases; a standby's next try.
    assert max(handovers) <= INTERVAL + 1.0
    record(
        "SIGTERM handover",
        {
            "handovers": len(handovers),
            "median (s)": round(statistics.median(handovers), 2),
            "max (s)": round(max(handovers), 2),
        },
    )
    status = run_cli("status", "--config", str(cluster.config("a")))
    assert status.returncode == 0, status.stderr
    assert "instance a: " in status.stdout
    assert "instance b: " in status.stdout


def test_a_state_file_moved_into_postgresql_goes_on_without_announcing_anything_again(
    cluster: Cluster,
) -> None:
    state = cluster.tmp_path / "state.db"
    sqlite = Daemon(
        config=cluster.config("solo", {"path": str(state)}),
        log_path=cluster.tmp_path / "solo.log",
    ).start()
    wait_until(lambda: "first sync done" in sqlite.log(), what="the first sync on SQLite")
    initial, mark = snapshot(cluster.sandbox), len(cluster.sandbox.world.history)
    cluster.hooks.answer = 503  # what changes now stays pending
    with cluster.sandbox.lock:
        for _ in range(3):
            cluster.sandbox.world.step()
    wait_until(lambda: "failed: " in sqlite.log(), what="pending deliveries")
    assert sqlite.terminate() == 0
    moved = run_cli("state", "migrate", "--state", str(state), "--to", cluster.url)
    assert moved.returncode == 0, moved.stderr
    assert "deliveries pending" in moved.stdout
    cluster.hooks.answer = 204
    cluster.start("a")
    cluster.start("b")
    with cluster.sandbox.lock:
        cluster.sandbox.world.step()
    assert_caught_up(cluster.sandbox, initial, mark, cluster.hooks, timeout=30)
    posts = delivered(cluster.hooks)
    assert len(posts) == len({p.event_id for p in posts})
    assert "first sync" not in cluster.logs().replace(sqlite.log(), "")  # no new first sync
