"""The rate learner against simulated histories whose rates are known."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orderwatch._models import OPEN_STATUSES
from orderwatch._rates import RateLearner

HOUR = 3600.0
STEP = 60.0  # the learner is fed once a simulated minute, as a cycle would
TOLERANCE = 0.25  # relative, after HISTORY hours of POPULATION orders in the status
HISTORY = 24
POPULATION = 50


def poisson(rng: random.Random, mean: float) -> int:
    count, total = 0, rng.expovariate(1.0)
    while total < mean:
        count += 1
        total += rng.expovariate(1.0)
    return count


def simulate(learner: RateLearner, rng: random.Random, *, rate: float, hours: float,
             start: float = 0.0, status: str = "Payed", arrivals: float = 0.0) -> float:  # fmt: skip
    """``POPULATION`` orders in ``status``, each leaving at ``rate`` an hour and replaced by a
    fresh one (memoryless: the count of exits a minute is Poisson); ``arrivals`` an hour."""
    now = start
    learner.advance(now, {status: POPULATION})
    for _ in range(int(hours * HOUR / STEP)):
        now += STEP
        learner.advance(now, {status: POPULATION})
        learner.exited(status, poisson(rng, POPULATION * rate * STEP / HOUR))
        learner.arrived(poisson(rng, arrivals * STEP / HOUR))
    return now


@settings(max_examples=25)
@given(st.floats(min_value=0.2, max_value=30), st.integers(0, 2**32))
def test_exit_rate_is_learned_within_a_quarter_after_a_day_of_fifty_orders(
    rate: float, seed: int
) -> None:
    learner = RateLearner()
    simulate(learner, random.Random(seed), rate=rate, hours=HISTORY)
    assert learner.exit_rate("Payed") == pytest.approx(rate, rel=TOLERANCE)


@settings(max_examples=15)
@given(st.floats(min_value=60, max_value=500), st.integers(0, 2**32))
def test_arrivals_of_sixty_an_hour_or_more_are_learned_within_a_quarter_after_six_hours(
    rate: float, seed: int
) -> None:
    learner = RateLearner()
    simulate(learner, random.Random(seed), rate=1.0, hours=6, arrivals=rate)
    assert learner.arrival_rate == pytest.approx(rate, rel=TOLERANCE)


@settings(max_examples=10)
@given(st.sampled_from([0.25, 4.0]), st.integers(0, 2**32))
def test_a_shop_whose_pace_changes_is_followed_within_a_day(factor: float, seed: int) -> None:
    learner, rng = RateLearner(), random.Random(seed)
    now = simulate(learner, rng, rate=2.0, hours=24)
    simulate(learner, rng, rate=2.0 * factor, hours=24, start=now)
    assert learner.exit_rate("Payed") == pytest.approx(2.0 * factor, rel=TOLERANCE)


def test_before_any_history_every_status_has_the_prior_rate() -> None:
    """A new install weighs every open order alike: fixed-interval polling, in effect."""
    rates = RateLearner(prior_rate=1.5).exit_rates()
    assert set(rates) == set(OPEN_STATUSES)
    assert set(rates.values()) == {1.5}


def test_orders_still_waiting_count_as_time_in_the_status() -> None:
    """Censored stays are not dropped: ten orders waiting ten hours without leaving pull the
    rate far below the prior."""
    learner = RateLearner()
    learner.advance(0, {"AwaitingCertificateAssignment": 10})
    learner.advance(10 * HOUR, {"AwaitingCertificateAssignment": 10})
    assert learner.exit_rate("AwaitingCertificateAssignment") < 0.05
    assert learner.exit_rate("Delivered") == 0.0


def test_what_was_learned_survives_a_restart() -> None:
    learner = RateLearner()
    simulate(learner, random.Random(1), rate=3.0, hours=2, arrivals=20)
    again = RateLearner()
    again.restore(json.loads(json.dumps(learner.to_json())))
    assert again.exit_rates() == learner.exit_rates()
    assert again.arrival_rate == learner.arrival_rate


@pytest.mark.parametrize(
    "saved", [{}, {"exits": "x"}, {"exits": {"Payed": [1]}, "arrivals": [0, 1]},
              {"exits": {"Payed": [-1, 1]}, "arrivals": [0, 1]}],
)  # fmt: skip
def test_an_unreadable_saved_state_leaves_the_prior(saved: dict[str, object]) -> None:
    learner = RateLearner()
    learner.restore(saved)
    assert learner.exit_rate("Payed") == learner.prior_rate
