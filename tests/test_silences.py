"""Silence matching and acknowledgement episodes. Pure."""

from __future__ import annotations

import math

from orderwatch._silences import Ack, Silence, active_ack, matching_silence


def delivery(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "route": "ops",
        "kind": "status_changed",
        "status": "Cancelled",
        "number": 3048,
    }
    return {**base, **overrides}


def test_a_silence_matches_when_every_matcher_it_sets_matches() -> None:
    silence = Silence(
        id=1, ends_at=100.0, statuses=frozenset({"Cancelled"}), routes=frozenset({"ops"})
    )
    assert matching_silence([silence], **delivery(), now=0.0) is silence  # type: ignore[arg-type]
    assert matching_silence([silence], **delivery(route="sales"), now=0.0) is None  # type: ignore[arg-type]
    assert matching_silence([silence], **delivery(status="Delivered"), now=0.0) is None  # type: ignore[arg-type]


def test_order_and_event_matchers_narrow_to_one_order_or_one_kind() -> None:
    by_order = Silence(id=1, ends_at=100.0, orders=frozenset({3048}))
    by_event = Silence(id=2, ends_at=100.0, events=frozenset({"watcher"}))
    assert matching_silence([by_order], **delivery(), now=0.0) is by_order  # type: ignore[arg-type]
    assert matching_silence([by_order], **delivery(number=3049), now=0.0) is None  # type: ignore[arg-type]
    assert (
        matching_silence([by_event], **delivery(kind="watcher", status=None, number=None), now=0.0)
        is by_event
    )  # type: ignore[arg-type]
    assert matching_silence([by_event], **delivery(), now=0.0) is None  # type: ignore[arg-type]


def test_an_expired_silence_matches_nothing() -> None:
    silence = Silence(id=1, ends_at=100.0, routes=frozenset({"ops"}))
    assert matching_silence([silence], **delivery(), now=99.9) is silence  # type: ignore[arg-type]
    assert matching_silence([silence], **delivery(), now=100.0) is None  # type: ignore[arg-type]


def test_a_silence_describes_itself_in_the_cli_s_words() -> None:
    silence = Silence(
        id=1, ends_at=1.0, statuses=frozenset({"Payed", "Cancelled"}), orders=frozenset({7})
    )
    assert silence.describe() == "status=Cancelled,Payed order=7"


def test_an_ack_covers_only_its_episode_until_it_expires() -> None:
    ack = Ack("o1", 3048, "Payed", since=1000.0, at=2000.0, until=5000.0, by="Anna")
    assert active_ack([ack], "o1", "Payed", 1000.0, now=4999.0) is ack
    assert active_ack([ack], "o1", "Payed", 1000.0, now=5000.0) is None  # expired
    assert active_ack([ack], "o1", "Delivered", 1000.0, now=3000.0) is None  # left the status
    assert active_ack([ack], "o1", "Payed", 9000.0, now=9500.0) is None  # a new stay in Payed
    assert active_ack([ack], "o2", "Payed", 1000.0, now=3000.0) is None


def test_an_ack_without_expiry_lasts_until_the_order_leaves_its_status() -> None:
    ack = Ack("o1", 3048, "Payed", since=1000.0, at=2000.0, until=math.inf)
    assert ack.covers("Payed", 1000.0, now=1e12)
    assert ack.describe() == "acknowledged"
    assert Ack("o1", 1, "Payed", 0, 0, 1, by="Anna", comment="on it").describe() == (
        'acknowledged by Anna ("on it")'
    )
