"""The state store on both backends: atomic batches, durable outbox, safe files; and what only
one backend has (SQLite's file, PostgreSQL's lease, claims and move-in)."""

from __future__ import annotations

import math
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from orderwatch import StateError
from orderwatch._detect import Event, NewOrder, Note, Transition, events_for
from orderwatch._models import KNOWN_STATUSES, Order
from orderwatch._silences import Ack, Silence
from orderwatch._store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Lease,
    SqliteStore,
    Store,
    Target,
    decide_lease,
    open_store,
)

Opener = Callable[[], Store]


@pytest.fixture(params=["sqlite", "postgresql"])
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the same store again each time it is called: a SQLite file, or a PostgreSQL schema
    of the test's own."""
    location: Path | str = tmp_path / "s.db"
    if request.param == "postgresql":
        location = request.getfixturevalue("postgres_url")
    opened: list[Store] = []

    def open_again() -> Store:
        opened.append(open_store(location))
        return opened[-1]

    yield open_again
    for store in opened:
        store.close()


def new_order(n: int, status: str = "Created") -> Order:
    return Order(id=f"id-{n}", number=n, status=status)


def test_the_state_file_is_created_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.db"
    open_store(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_batch_commits_orders_events_and_deliveries_together(reopen: Opener) -> None:
    store = reopen()
    changes = [NewOrder(new_order(1)), NewOrder(new_order(2, "Delivered"))]
    events = events_for(changes, announce_new=True, after_gap=False, now=10.0)
    stored = store.record(
        {c.order.id: i for i, c in enumerate(changes)},
        changes,
        [(e, [Target("ops", "k1", 10.0), Target("ops", "k2", 10.0)]) for e in events],
        anchors_before={},
        now=10.0,
    )
    assert len(stored) == 2
    assert len({s.id for s in stored}) == 2
    assert store.status_counts() == {"Created": 1, "Delivered": 1}
    assert [k.order.number for k in store.open_orders()] == [1]
    pending = store.pending_deliveries()
    assert [(d.destination_key, d.stored.event.order.number) for d in pending] == [
        ("k1", 1),
        ("k1", 2),
        ("k2", 1),
        ("k2", 2),
    ]
    store.mark_sent([pending[0]], now=11.0)
    store.mark_dead([pending[1]], "gone", now=11.0)
    assert store.queue_counts() == {"pending": 2, "dead": 1}
    store.close()


def test_a_failed_batch_leaves_nothing_behind(reopen: Opener) -> None:
    store = reopen()
    change = NewOrder(new_order(1))
    store.record({}, [change], [], anchors_before={}, now=1.0)
    with pytest.raises(StateError, match="cannot write"):
        # the same new order again violates the primary key: the whole batch rolls back
        store.record({}, [NewOrder(new_order(2)), change], [], anchors_before={}, now=2.0)
    assert store.status_counts() == {"Created": 1}


def test_pending_deliveries_survive_reopening(reopen: Opener) -> None:
    store = reopen()
    change = NewOrder(new_order(1))
    [event] = events_for([change], announce_new=True, after_gap=False, now=5.0)
    [stored] = store.record(
        {}, [change], [(event, [Target("ops", "k", 5.0)])], anchors_before={}, now=5.0
    )
    store.close()  # as good as a crash: WAL keeps the commit
    reopened = reopen()
    [delivery] = reopened.pending_deliveries()
    assert delivery.stored.id == stored.id
    assert delivery.stored.event == event


def test_a_state_file_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StateError, match="newer orderwatch"):
        open_store(path)


def test_a_corrupt_state_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateError) as caught:
        open_store(path)
    assert str(path) in str(caught.value)


def test_a_state_path_that_cannot_exist_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StateError, match=f"cannot open {blocker / 's.db'}"):
        open_store(blocker / "s.db")


def test_reading_a_missing_state_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="does not exist"):
        open_store(tmp_path / "none.db", readonly=True)


def test_a_version_1_state_file_is_migrated_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[1] + "PRAGMA user_version = 1;")
    db.execute("INSERT INTO orders VALUES ('a', 7, 'Payed', 0, 1.0, 1, 1.0, 0, NULL, NULL, '2200')")
    db.execute(
        "INSERT INTO events (id, kind, order_id, previous_status, status, previous_since, "
        "previous_since_exact, detected_at, after_gap, order_json) VALUES ('e1', 'created', "
        '\'a\', NULL, \'Payed\', NULL, 0, 2.0, 0, \'{"id": "a", "number": 7, "status": "Payed"}\')'
    )
    db.execute(
        "INSERT INTO deliveries (event_seq, route, destination, state, next_attempt_at) "
        "VALUES (1, 'ops', 'k', 'pending', 2.0)"
    )
    db.commit()
    db.close()
    store = open_store(path)
    [known] = store.open_orders()
    assert (known.order.number, known.stuck_alerts, known.stuck_last) == (7, 0, None)
    [delivery] = store.pending_deliveries()
    assert delivery.stored.id == "e1"
    assert delivery.age_from == 2.0
    assert not delivery.held
    assert store.disabled_webhooks() == {}
    store.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_outbox_requeue_and_drop_select_by_event_and_route(reopen: Opener) -> None:
    store = reopen()
    for n in (1, 2):
        change = NewOrder(new_order(n))
        [event] = events_for([change], announce_new=True, after_gap=False, now=1.0)
        store.record(
            {},
            [change],
            [(event, [Target("ops", "a", 1.0), Target("erp", "b", 1.0)])],
            anchors_before={},
            now=1.0,
        )
    first = store.pending_deliveries()[0]
    store.mark_dead([first], "HTTP 500", now=2.0)
    assert store.requeue(event_id=first.stored.id, now=50.0) == 2
    revived = [d for d in store.pending_deliveries() if d.stored.id == first.stored.id]
    assert {(d.age_from, d.next_attempt_at) for d in revived} == {(50.0, 50.0)}
    assert store.drop(route="erp") == 2
    assert {d.route for d in store.pending_deliveries()} == {"ops"}


def test_stuck_alert_timers_survive_a_restart(reopen: Opener) -> None:
    from orderwatch._stuck import StuckRule, stuck_events

    store = reopen()
    change = NewOrder(new_order(1, "AwaitingCertificateAssignment"))
    store.record({}, [change], [], anchors_before={}, now=0.0)
    rules = [StuckRule("AwaitingCertificateAssignment", after=100, repeat=1000)]
    [alert] = stuck_events(store.open_orders(), rules, now=150.0)
    store.record({}, [], [(alert, [])], anchors_before={}, now=150.0)
    store.close()
    reopened = reopen()
    [known] = reopened.open_orders()
    assert (known.stuck_alerts, known.stuck_last) == (1, 150.0)
    assert stuck_events(reopened.open_orders(), rules, now=1149.0) == []
    [reminder] = stuck_events(reopened.open_orders(), rules, now=1150.0)
    assert reminder.reminder == 1


def test_a_state_file_locked_by_another_program_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    open_store(path).close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("PRAGMA journal_mode = DELETE")  # so that an exclusive lock blocks readers
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StateError, match=f"state: cannot open {path}: database is locked"):
            open_store(path)
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_records_in_one_batch_are_one_transaction(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "s.db")
    commits: list[str] = []
    store._db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    with store.batch():
        store.record({}, [NewOrder(new_order(1))], [], anchors_before={}, now=1.0)
        store.record({}, [NewOrder(new_order(2))], [], anchors_before={}, now=1.0)
    assert commits == ["COMMIT"]  # nothing asked for an fsync: no second commit

    def order_3_then_a_known_order_as_new() -> None:
        with store.batch():
            store.record({}, [NewOrder(new_order(3))], [], anchors_before={}, now=2.0)
            store.record({}, [NewOrder(new_order(1))], [], anchors_before={}, now=2.0)

    with pytest.raises(StateError):
        order_3_then_a_known_order_as_new()
    assert store.status_counts() == {"Created": 2}  # order 3 rolled back with the failure
    store.close()


def test_events_are_committed_without_an_fsync_and_synced_once_on_demand(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "s.db")  # opened with synchronous = FULL
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    for n in (1, 2):
        change = NewOrder(new_order(n))
        (event,) = events_for([change], announce_new=True, after_gap=False, now=1.0)
        with store.batch():
            store.record(
                {}, [change], [(event, [Target("ops", "k", 1.0)])], anchors_before={}, now=1.0
            )
    store.sync()
    store.sync()  # nothing new since: no second fsync
    syncs = [s for s in statements if s.startswith("PRAGMA synchronous") or s == "COMMIT"]
    # Two commits that survive a crash of the process (WAL) but wait for no fsync, then one
    # commit with synchronous = FULL, which syncs the write-ahead log and both with it.
    assert syncs == [
        "PRAGMA synchronous = NORMAL",
        "COMMIT",
        "COMMIT",
        "PRAGMA synchronous = FULL",
        "COMMIT",
    ]
    assert len(store.pending_deliveries()) == 2
    store.close()


def test_a_synced_outbox_write_leaves_nothing_to_sync(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "s.db")
    change = NewOrder(new_order(1))
    (event,) = events_for([change], announce_new=True, after_gap=False, now=1.0)
    store.record({}, [change], [(event, [Target("ops", "k", 1.0)])], anchors_before={}, now=1.0)
    store.mark_sent(store.pending_deliveries(), now=2.0)  # delivery state: FULL, syncs all
    commits: list[str] = []
    store._db.set_trace_callback(commits.append)
    store.sync()
    assert commits == []
    store.close()


def test_event_sequence_numbers_keep_rising_across_batches_and_restarts(reopen: Opener) -> None:
    store = reopen()
    seqs = []
    for now, numbers in ((1.0, [1, 2]), (2.0, [3])):
        changes = [NewOrder(new_order(n)) for n in numbers]
        events = events_for(changes, announce_new=True, after_gap=False, now=now)
        plan = [(e, [Target("ops", "k", now)]) for e in events]
        seqs += [s.seq for s in store.record({}, changes, plan, anchors_before={}, now=now)]
    store.close()
    store = reopen()
    change = NewOrder(new_order(4))
    (event,) = events_for([change], announce_new=True, after_gap=False, now=3.0)
    seqs += [s.seq for s in store.record({}, [change], [(event, [])], anchors_before={}, now=3.0)]
    assert seqs == sorted(set(seqs))  # rising, never reused
    pending = store.pending_deliveries()
    assert [(d.stored.seq, d.stored.event.order.number) for d in pending] == list(
        zip(seqs[:3], [1, 2, 3], strict=True)
    )
    store.close()


# -- the console's state: notices, summaries, acknowledgements, silences ------------------------


def notice(case: str, now: float, about: str | None = None) -> Event:
    return Event.about("watcher", Note(case, f"{case}!", "body", {"n": 1}, about), now)


def test_notices_and_their_meta_commit_together_and_come_back_whole(reopen: Opener) -> None:
    store = reopen()
    sent = notice("destination_failing", 5.0, about="ops")
    [stored] = store.record_notes([(sent, [Target("erp", "k", 5.0)])], meta={"watcher": "{}"})
    assert store.get_meta("watcher") == "{}"
    store.close()
    store = reopen()
    [delivery] = store.pending_deliveries()
    assert (delivery.stored.id, delivery.stored.event) == (stored.id, sent)
    assert delivery.stored.event.note is not None
    assert delivery.stored.event.note.about == "ops"
    assert store.check() == []  # an event that concerns no order is not an orphan


def test_a_summary_reads_the_order_events_of_its_period_and_when_orders_came_in(
    reopen: Opener,
) -> None:
    store = reopen()
    for now, order in ((1.0, new_order(1)), (2.0, new_order(2))):
        change = NewOrder(order)
        events = events_for([change], announce_new=True, after_gap=False, now=now)
        store.record({}, [change], [(e, []) for e in events], anchors_before={}, now=now)
    store.record_notes([(notice("api_recovered", 1.5), [])], meta={})
    assert [e.order.number for e in store.events_between(1.0, 2.0)] == [2]  # notes not included
    assert [e.order.number for e in store.events_between(0.0, 2.0)] == [1, 2]
    assert store.created_at(["id-1", "id-2", "id-9"]) == {"id-1": 1.0, "id-2": 2.0}
    assert store.created_at([]) == {}
    known = store.order_by_number(2)
    assert known is not None
    assert known.order.id == "id-2"
    assert store.order_by_number(9) is None


def test_a_summary_period_is_recorded_only_when_it_moves_on(reopen: Opener) -> None:
    store = reopen()
    assert store.summary_sent("ops/daily") is None
    assert store.record_summary("ops/daily", 100.0, []) == []
    plan = [(notice("summary", 200.0), [Target("ops", "k", 200.0)])]
    [stored] = store.record_summary("ops/daily", 200.0, plan) or []
    assert store.record_summary("ops/daily", 200.0, plan) is None  # the same period again
    assert store.record_summary("ops/daily", 150.0, plan) is None  # an older one
    assert store.summary_sent("ops/daily") == 200.0
    assert [d.stored.id for d in store.pending_deliveries()] == [stored.id]


def test_an_ack_replaces_the_last_of_its_episode_and_ends_with_the_order(reopen: Opener) -> None:
    store = reopen()
    store.record({}, [NewOrder(new_order(1, "Payed"))], [], anchors_before={}, now=1.0)
    first = Ack("id-1", 1, "Payed", 1.0, at=5.0, until=math.inf, by="ann")
    store.add_ack(first)
    assert store.ack_of_episode("id-1", "Payed", 1.0004) == first
    second = replace(first, at=6.0, until=60.0, by="bob", comment="on it")
    store.add_ack(second)
    assert store.acks() == [second]
    assert store.acks(["id-2"]) == []
    assert store.ack_of_episode("id-1", "Payed", 2.0) is None  # another episode
    [payed] = store.open_orders()
    store.record({}, [Transition(new_order(1, "Delivered"), payed)], [], anchors_before={}, now=7.0)
    assert store.acks() == []  # only open orders' acks count


def test_silences_are_listed_expired_and_hold_back_deliveries(reopen: Opener) -> None:
    store = reopen()
    spec = Silence(id=0, ends_at=100.0, statuses=frozenset({"Payed"}), orders=frozenset({1, 2}),
                   comment="maintenance", created_at=10.0, created_by="ann")  # fmt: skip
    first = store.add_silence(spec)
    second = store.add_silence(replace(spec, routes=frozenset({"ops"}), ends_at=50.0))
    assert second > first
    assert [s.id for s in store.silences(active_at=60.0)] == [first]
    assert store.silences()[0] == replace(spec, id=first)
    assert store.expire_silence(first, now=20.0)
    assert not store.expire_silence(first, now=30.0)  # no longer active
    assert [s.id for s in store.silences(active_at=25.0)] == [second]
    change = NewOrder(new_order(1))
    events = events_for([change], announce_new=True, after_gap=False, now=1.0)
    store.record({}, [change], [(events[0], [Target("ops", "k", 1.0)])], anchors_before={},
                 now=1.0)  # fmt: skip
    store.mark_silenced(store.pending_deliveries(), second, now=2.0)
    assert store.silenced_count() == 1
    assert [d.state for d in store.deliveries(("silenced",))] == ["silenced"]
    assert store.queue_counts() == {"pending": 0, "dead": 0}
    assert store.check() == []


def test_two_instances_never_both_record_the_same_summary(postgres_url: str) -> None:
    """Two instances that both find a summary due at once: one records it, the other finds it
    recorded, so it is sent once."""
    stores = [open_store(postgres_url) for _ in range(2)]
    stores[0].record_summary("ops/daily", 100.0, [])
    start = threading.Barrier(2)
    results: list[object] = [None, None]

    def summarize(i: int) -> None:
        plan = [(notice("summary", 200.0), [Target("ops", "k", 200.0)])]
        start.wait()
        results[i] = stores[i].record_summary("ops/daily", 200.0, plan)

    threads = [threading.Thread(target=summarize, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r is None for r in results) == [False, True]
    assert len(stores[0].pending_deliveries()) == 1
    for store in stores:
        store.close()


# -- what instances sharing a PostgreSQL database rely on ---------------------------------------


@pytest.mark.parametrize(
    ("holder", "epoch", "expires_at", "expected"),
    [
        ("a", 3, 100.0, Lease("a", 3, 115.0)),  # its holder renews it: same epoch
        ("a", 3, 40.0, Lease("a", 3, 115.0)),  # even late: nobody took it meanwhile
        (None, 3, 0.0, Lease("a", 4, 115.0)),  # released: taken with the next epoch
        ("b", 3, 50.0, Lease("a", 4, 115.0)),  # expired: taken over with the next epoch
        ("b", 3, 100.5, None),  # another holder's unexpired lease: left alone
    ],
)
def test_the_lease_rule(
    holder: str | None, epoch: int, expires_at: float, expected: Lease | None
) -> None:
    assert decide_lease(Lease(holder, epoch, expires_at), "a", now=100.0, duration=15.0) == expected


def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> object:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s")


def test_a_standby_takes_the_lease_only_once_it_expires_and_with_a_higher_epoch(
    postgres_url: str,
) -> None:
    a, b = open_store(postgres_url), open_store(postgres_url)
    first = a.hold_lease("a", duration=0.5)
    assert first is not None
    assert first.epoch == 1
    assert b.hold_lease("b", duration=0.5) is None
    taken = wait_for(lambda: b.hold_lease("b", duration=10.0))
    assert isinstance(taken, Lease)
    assert (taken.holder, taken.epoch) == ("b", 2)
    assert a.hold_lease("a", duration=0.5) is None
    b.release_lease("b")
    again = a.hold_lease("a", duration=0.5)  # a released lease is free at once
    assert again is not None
    assert again.epoch == 3
    a.close()
    b.close()


def test_a_deposed_leader_commits_nothing(postgres_url: str) -> None:
    """A leader paused past its lease finds a higher epoch when it writes: rolled back."""
    from orderwatch._exceptions import LeadershipLostError

    old, new = open_store(postgres_url), open_store(postgres_url)
    lease = old.hold_lease("old", duration=0.3)
    assert lease is not None
    old.fence("old", lease.epoch)
    old.record({}, [NewOrder(new_order(1))], [], anchors_before={}, now=1.0)
    taken = wait_for(lambda: new.hold_lease("new", duration=10.0))
    assert isinstance(taken, Lease)
    change = NewOrder(new_order(2))
    (event,) = events_for([change], announce_new=True, after_gap=False, now=2.0)
    with pytest.raises(LeadershipLostError, match="epoch 1"):
        old.record({}, [change], [(event, [Target("ops", "k", 2.0)])], anchors_before={}, now=2.0)
    with pytest.raises(LeadershipLostError):
        old.set_meta(last_successful_poll=2.0)
    assert new.status_counts() == {"Created": 1}
    assert new.pending_deliveries() == []
    assert new.get_meta("last_successful_poll") is None
    old.close()
    new.close()


def test_a_destination_is_delivered_by_one_instance_until_its_claim_expires(
    postgres_url: str,
) -> None:
    a, b = open_store(postgres_url), open_store(postgres_url)
    assert a.claim("slack", "a", ttl=0.4)
    assert not b.claim("slack", "b", ttl=0.4)
    assert b.claim("email", "b", ttl=10.0)  # claims are per destination
    assert a.claim("slack", "a", ttl=0.4)  # renewed by its holder
    assert wait_for(lambda: b.claim("slack", "b", ttl=10.0))  # a died: b takes it over
    assert not a.claim("slack", "a", ttl=0.4)
    b.release_claims("b", ["slack"])
    assert a.claim("slack", "a", ttl=0.4)  # released: free at once
    assert not a.claim("email", "a", ttl=0.4)
    a.close()
    b.close()


def test_an_unreachable_database_is_one_line_without_its_password() -> None:
    from orderwatch._exceptions import StateUnavailableError

    pytest.importorskip("psycopg")
    with pytest.raises(StateUnavailableError) as caught:
        open_store("postgresql://orderwatch:s3cr3t-pw@127.0.0.1:1/orderwatch")
    message = str(caught.value)
    assert message.startswith(
        "state: cannot reach postgresql://orderwatch:***@127.0.0.1:1/orderwatch: "
    )
    assert "s3cr3t-pw" not in message
    assert "\n" not in message


def test_a_killed_database_session_is_reported_then_reconnected(postgres_url: str) -> None:
    import psycopg

    from orderwatch._exceptions import StateUnavailableError

    store = open_store(postgres_url)
    store.set_meta(baseline_done=1)
    [(pid,)] = store._tuples("SELECT pg_backend_pid()")
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(StateUnavailableError, match="cannot reach"):
        store.set_meta(arrivals=3)
    store.set_meta(arrivals=4)  # a new connection
    assert (store.first_sync_done, store.arrivals) == (True, 4)
    store.close()


def test_a_database_written_by_a_newer_version_is_refused(postgres_url: str) -> None:
    open_store(postgres_url).close()
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("UPDATE orderwatch_schema SET version = 99")
    with pytest.raises(StateError, match=r"newer orderwatch \(schema 99, this one reads up to 2\)"):
        open_store(postgres_url)


def test_a_version_1_database_is_migrated_with_its_data(postgres_url: str) -> None:
    import psycopg

    from orderwatch._store._schema import POSTGRES_MIGRATIONS

    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(POSTGRES_MIGRATIONS[1])
        admin.execute("CREATE TABLE orderwatch_schema (version INTEGER NOT NULL)")
        admin.execute("INSERT INTO orderwatch_schema (version) VALUES (1)")
        admin.execute(
            "INSERT INTO events (seq, id, kind, order_id, status, previous_since_exact, "
            "detected_at, after_gap, order_json) VALUES (1, 'e1', 'created', 'id-1', 'Created', "
            """0, 1.0, 0, '{"id": "id-1", "number": 1, "status": "Created"}')"""
        )
        admin.execute(
            "INSERT INTO deliveries (event_seq, route, destination, state, next_attempt_at) "
            "VALUES (1, 'ops', 'k', 'pending', 1.0)"
        )
    store = open_store(postgres_url)
    assert store.schema_version == 2
    [delivery] = store.pending_deliveries()
    assert (delivery.stored.event.order.number, delivery.stored.event.note) == (1, None)
    store.mark_silenced([delivery], 1, now=2.0)  # the new state passes the new CHECK
    assert store.silenced_count() == 1
    store.close()


def state_file_with_everything(path: Path) -> SqliteStore:
    """A state file after a first sync: open and final orders, a stuck timer, a pending, a sent
    and a dead delivery, a disabled webhook."""
    from orderwatch._stuck import StuckRule, stuck_events

    store = SqliteStore.open(path)
    changes = [
        NewOrder(new_order(n, s)) for n, s in ((1, "Created"), (2, "Delivered"), (3, "Payed"))
    ]
    store.record({"id-1": 0, "id-2": 1}, changes, [], anchors_before={}, now=1.0)
    store.set_meta(baseline_done=1, arrivals=3)
    events = events_for(changes[:1], announce_new=True, after_gap=False, now=2.0)
    [alert] = stuck_events(store.open_orders(), [StuckRule("Payed", after=1.0)], now=5.0)
    targets = [Target("ops", "k1", 2.0), Target("erp", "k2", 2.0)]
    store.record({}, [], [(events[0], targets), (alert, targets[:1])], anchors_before={}, now=5.0)
    first, second, _ = store.pending_deliveries()
    store.mark_sent([first], now=6.0)
    store.mark_dead([second], "HTTP 500", now=6.0)
    store.disable_webhook("k3", "erp-hook", "disabled: the receiver answered 410 Gone", now=7.0)
    store.add_ack(Ack("id-3", 3, "Payed", 1.0, at=7.0, until=math.inf, by="ann"))
    store.add_silence(Silence(id=0, ends_at=1e10, routes=frozenset({"erp"}), created_at=7.0))
    store.record_summary("ops/daily", 8.0, [(notice("summary", 8.0), targets)])
    store.record_notes([(notice("api_recovered", 8.5), targets)], meta={"watcher": "{}"})
    silenced = store.pending_deliveries()[-1]
    store.mark_silenced([silenced], 1, now=9.0)
    return store


def test_a_state_file_moves_into_postgresql_with_everything(
    tmp_path: Path, postgres_url: str
) -> None:
    from orderwatch._store._migrate import migrate_to_postgres

    path = tmp_path / "s.db"
    sqlite = state_file_with_everything(path)
    expected = (
        list(sqlite.export()),
        sqlite.deliveries(),
        sqlite.open_orders(),
        sqlite.disabled_webhooks(),
        sqlite.open_anchors(),
        (sqlite.first_sync_done, sqlite.arrivals),
        sqlite.queue_counts(),
        sqlite.deliveries(("pending", "sent", "dead", "silenced")),
        (sqlite.acks(), sqlite.silences(), sqlite.summary_sent("ops/daily")),
        sqlite.get_meta("watcher"),
    )
    sqlite.close()
    moved = migrate_to_postgres(path, postgres_url)
    assert (moved.orders, moved.events, moved.pending, moved.dead) == (3, 4, 4, 1)
    assert (moved.stuck_timers, moved.webhook_states, moved.acks, moved.silences) == (1, 1, 1, 1)
    postgres = open_store(postgres_url)
    assert (
        list(postgres.export()),
        postgres.deliveries(),
        postgres.open_orders(),
        postgres.disabled_webhooks(),
        postgres.open_anchors(),
        (postgres.first_sync_done, postgres.arrivals),
        postgres.queue_counts(),
        postgres.deliveries(("pending", "sent", "dead", "silenced")),
        (postgres.acks(), postgres.silences(), postgres.summary_sent("ops/daily")),
        postgres.get_meta("watcher"),
    ) == expected
    assert postgres.check() == []
    change = NewOrder(new_order(4))
    (event,) = events_for([change], announce_new=True, after_gap=False, now=9.0)
    [stored] = postgres.record({}, [change], [(event, [])], anchors_before={}, now=9.0)
    assert stored.seq == 5  # sequence numbers continue after the moved ones
    assert postgres.add_silence(Silence(id=0, ends_at=1.0, events=frozenset({"created"}))) == 2
    postgres.close()
    with pytest.raises(StateError, match="is not empty"):
        migrate_to_postgres(path, postgres_url)


def test_state_check_agrees_with_the_model_on_which_statuses_are_final(reopen: Opener) -> None:
    store = reopen()
    changes = [NewOrder(new_order(n, s)) for n, s in enumerate([*KNOWN_STATUSES, "Unheard"])]
    store.record({}, changes, [], anchors_before={}, now=1.0)
    assert store.check() == []
    with store._transaction():
        store._execute("UPDATE orders SET is_final = 1 - is_final WHERE status = 'Delivered'")
    assert store.check() == ["1 orders whose final flag disagrees with their status"]


def test_a_polls_commits_skip_the_wal_flush_and_the_courier_s_sync_makes_them_durable(
    postgres_url: str,
) -> None:
    """As on SQLite: orders and events committed by a batch do not wait for the disk; before
    a send, the courier's sync (on a connection of its own) flushes them."""
    poller, courier = open_store(postgres_url), open_store(postgres_url)
    change = NewOrder(new_order(1))
    (event,) = events_for([change], announce_new=True, after_gap=False, now=1.0)
    with poller.batch():
        [(setting,)] = poller._tuples("SELECT current_setting('synchronous_commit')")
        poller.record({}, [change], [(event, [Target("ops", "k", 1.0)])], anchors_before={}, now=1)
    assert setting == "off"
    [(committed_at,)] = poller._tuples("SELECT pg_current_wal_insert_lsn()::text")
    courier.sync()
    [(flushed,)] = courier._tuples(
        "SELECT pg_current_wal_flush_lsn() >= ?::pg_lsn", (committed_at,)
    )
    assert flushed
    courier.mark_sent(courier.pending_deliveries(), now=2.0)  # a durable commit again
    [(setting,)] = courier._tuples("SELECT current_setting('synchronous_commit')")
    assert setting == "on"
    poller.close()
    courier.close()


def test_event_numbers_keep_rising_when_leadership_moves_back_and_forth(postgres_url: str) -> None:
    """Numbers are reserved a block at a time; a new term starts a new block, so an event
    recorded later never gets a lower number than another leader's before it."""
    a, b = open_store(postgres_url), open_store(postgres_url)
    seqs = []
    for number, store in enumerate([a, b, a], start=1):
        store.fence(None, None)  # a new term (no lease row to check in this test)
        change = NewOrder(new_order(number))
        (event,) = events_for([change], announce_new=True, after_gap=False, now=1.0)
        [stored] = store.record({}, [change], [(event, [])], anchors_before={}, now=1.0)
        seqs.append(stored.seq)
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 3
    a.close()
    b.close()


def test_more_rows_than_one_statement_may_carry_are_written_whole(postgres_url: str) -> None:
    """PostgreSQL takes at most 65,535 parameters a statement: the rows of a large insert
    (here 6,000 events of 13 columns) are split across statements, none lost."""
    store = open_store(postgres_url)
    changes = [NewOrder(new_order(n)) for n in range(6000)]
    events = events_for(changes, announce_new=True, after_gap=False, now=1.0)
    stored = store.record(
        {}, changes, [(e, [Target("ops", "k", 1.0)]) for e in events], anchors_before={}, now=1.0
    )
    assert len({s.seq for s in stored}) == 6000
    assert store.status_counts() == {"Created": 6000}
    assert store.queue_counts() == {"pending": 6000, "dead": 0}
    store.close()
