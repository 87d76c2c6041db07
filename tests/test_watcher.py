"""The watcher's notices: one per outage, recoveries only for announced outages, kept across
restarts. Pure, so the timelines are spelled out exactly."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orderwatch._exceptions import CredentialsError, TransientApiError
from orderwatch._watcher import API, WatcherState, api_failure_reason

AFTER = 300.0


def run(state: WatcherState, timeline: list[tuple[float, bool]]) -> tuple[WatcherState, list[str]]:
    """Feed poll outcomes ``(time, ok)``, checking for due notices after each; the cases sent."""
    cases: list[str] = []
    for now, ok in timeline:
        decision = state.poll(ok=ok, now=now, reason=None if ok else "HTTP 503")
        cases += [n.case for n in decision.notices]
        decision = decision.state.due(now, AFTER)
        cases += [n.case for n in decision.notices]
        state = decision.state
    return state, cases


def test_an_api_outage_longer_than_watcher_after_gives_one_notice_then_one_recovery() -> None:
    timeline = [(0.0, True)] + [(float(t), False) for t in range(30, 1000, 30)] + [(1000.0, True)]
    _, cases = run(WatcherState(), timeline)
    assert cases == ["api_unreachable", "api_recovered"]


def test_a_short_api_outage_is_not_announced_at_all() -> None:
    timeline = [(0.0, False), (100.0, False), (290.0, False), (299.0, True)]
    _, cases = run(WatcherState(), timeline)
    assert cases == []


def test_the_unreachable_notice_says_since_when_and_the_latest_reason() -> None:
    state = WatcherState().poll(ok=False, now=10.0, reason="timed out").state
    state = state.poll(ok=False, now=200.0, reason="HTTP 503").state
    notices = state.due(400.0, AFTER).notices
    assert [(n.case, n.since, n.reason, n.blind_for) for n in notices] == [
        ("api_unreachable", 10.0, "HTTP 503", 390.0)
    ]
    recovered = state.due(400.0, AFTER).state.poll(ok=True, now=910.0).notices
    assert [(n.case, n.since, n.blind_for) for n in recovered] == [("api_recovered", 10.0, 900.0)]


def test_a_restart_during_an_outage_repeats_nothing() -> None:
    state, cases = run(WatcherState(), [(0.0, False), (400.0, False)])
    assert cases == ["api_unreachable"]
    restarted = WatcherState.from_json(state.to_json())
    _, after_restart = run(restarted, [(500.0, False), (900.0, False), (950.0, True)])
    assert after_restart == ["api_recovered"]


def test_a_failing_destination_is_announced_once_with_its_name_and_recovers() -> None:
    state = WatcherState()
    notices = []
    for now in (0.0, 100.0, 350.0, 600.0):
        decision = state.delivery("k1", "ops", ok=False, now=now, reason="HTTP 500")
        decision = decision.state.due(now, AFTER)
        notices += decision.notices
        state = decision.state
    notices += state.delivery("k1", "ops", ok=True, now=700.0).notices
    assert [(n.case, n.subject, n.name) for n in notices] == [
        ("destination_failing", "k1", "ops"),
        ("destination_recovered", "k1", "ops"),
    ]


def test_destinations_and_the_api_fail_independently() -> None:
    state = WatcherState().poll(ok=False, now=0.0, reason="x").state
    state = state.delivery("k1", "ops", ok=False, now=0.0, reason="y").state
    state = state.delivery("k1", "ops", ok=True, now=10.0).state
    assert set(state.outages) == {API}


def test_unreadable_saved_state_starts_empty() -> None:
    assert WatcherState.from_json("not json").outages == {}
    assert WatcherState.from_json(None).outages == {}


@given(st.lists(st.tuples(st.integers(0, 50), st.booleans()), max_size=60))
def test_every_announced_outage_recovers_at_most_once_and_notices_alternate(
    steps: list[tuple[int, bool]],
) -> None:
    """Whatever the outcomes, notices alternate unreachable → recovered, starting unreachable."""
    now, timeline = 0.0, []
    for gap, ok in steps:
        now += gap * 20
        timeline.append((now, ok))
    _, cases = run(WatcherState(), timeline)
    expected = ["api_unreachable", "api_recovered"] * len(cases)
    assert cases == expected[: len(cases)]


def test_rejected_credentials_are_said_in_words_naming_the_keys() -> None:
    error = CredentialsError(
        "api: the token endpoint rejected the client credentials (invalid_client); "
        "check api.client_id and api.client_secret"
    )
    assert api_failure_reason(error) == (
        "the Orders API rejects the client credentials (invalid_client); "
        "check api.client_id / api.client_secret"
    )


def test_timeouts_and_http_errors_are_said_in_words() -> None:
    assert "time out" in api_failure_reason(TransientApiError("list: timed out"))
    assert api_failure_reason(TransientApiError("list: HTTP 503 from the Orders API")) == (
        "the Orders API answers with errors: HTTP 503"
    )
    assert "cannot be reached" in api_failure_reason(
        TransientApiError("token: connection failed (Connection refused)")
    )


def test_notices_say_since_when_why_and_what_it_means() -> None:
    from orderwatch._watcher import Notice, notice_text

    down = Notice("api_unreachable", API, "", 1_767_600_000.0, 1_767_600_400.0, "HTTP 503")
    title, body = notice_text(down)
    assert title == "orderwatch cannot see the Orders API"
    assert "since 2026-01-05 08:00 UTC (6m 40s): HTTP 503" in body
    _, back = notice_text(Notice("api_recovered", API, "", 1_767_600_000.0, 1_767_603_900.0))
    assert "blind for 1h 05m" in back and "across a gap" in back
    title, _ = notice_text(Notice("destination_failing", "k", "ops", 0.0, 400.0, "HTTP 500"))
    assert title == "Notifications to ops are failing"
