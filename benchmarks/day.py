"""The request budget judged on a simulated shop day (issue 14).

    .venv/bin/python benchmarks/day.py [--runs 3] [--budget 1200] [--interval 1800] [--quick]

A day of the sandbox's :class:`~orderwatch._sandbox.ShopDay` (orders arrive at the head, busier
in working hours, and leave each status after a random time whose mean depends on the status; a
long tail stays open for days) is run in simulated time: the real poller, store and change
detection, the sandbox app in-process through ``httpx.MockTransport``, and a clock that moves by
``1 / max_rps`` with every request and jumps to the next cycle between cycles. A whole day
takes seconds, and nothing on a shared machine can change a figure.

For every change the sandbox records when it happened (shop time); its delay is the time until
orderwatch committed an event for that order that shows it (the courier's sending comes after
and does not depend on the planner; ``service.py latency`` measures it). Changes during the
first sync are not counted.

Compared, at the **same number of requests** over the day: the fixed-interval planner (every
open page every ``interval``), its interval bisected until it spends what the budget planner
spent, against the budget planner (``poll.budget``). Then the same with every dwell-time mean
halved and doubled, and the learner's progress: the gain hour by hour of a learner that starts
from its prior against one that already watched a day.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx

sys.path.insert(0, str(Path(__file__).parent))
from run import HOOK, NO_RETRY, api_settings, cell, summarise

from orderwatch._client import OrdersApi
from orderwatch._dispatch import Dispatcher
from orderwatch._metrics import Metrics
from orderwatch._pacing import Pacer
from orderwatch._poller import Poller
from orderwatch._quota import RequestLedger
from orderwatch._rates import RateLearner
from orderwatch._sandbox import DayPace, SandboxApp, ShopDay
from orderwatch._store import StoredEvent, open_store

HOUR = 3600.0
DAY = 24 * HOUR


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Outcome:
    requests: int  # list and /status requests after the first sync
    delays: list[float]
    by_hour: dict[int, list[float]]
    learner: RateLearner | None = None
    expected_delay: list[float] = field(default_factory=list)  # the model's own estimate

    def figures(self) -> dict[str, float]:
        ordered = sorted(self.delays)
        return {
            "changes": len(ordered),
            "requests": self.requests,
            "mean": statistics.fmean(ordered),
            "p95": ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)],
            "max": ordered[-1],
        }


async def simulate(
    pace: DayPace,
    seed: int,
    *,
    budget: float | None,
    interval: float,
    orders: int,
    hours: float = 24.0,
    max_rps: float = 5.0,
    learner: RateLearner | None = None,
) -> Outcome:
    """One day. ``budget`` None: the fixed-interval planner, every ``interval`` seconds."""
    clock = Clock()
    world = ShopDay(seed=seed, orders=orders, pace=pace, clock=clock)
    app = SandboxApp(world, etags=False)
    live = app.mock_transport()

    def answer(request: httpx.Request) -> httpx.Response:
        clock.now += 1 / max_rps  # a request takes its slot of the rate budget
        world.step()
        return live.handle_request(request)

    detected: dict[int, list[float]] = defaultdict(list)

    def committed(stored: list[StoredEvent]) -> None:
        for item in stored:
            detected[item.event.order.number].append(clock.now)

    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "s.db")
        pacer = None
        if budget is not None:
            pacer = Pacer(
                budget=budget,
                floor_period=interval,
                shortest=interval / 60,
                ledger=RequestLedger(budget, None),
                learner=learner or RateLearner(),
            )
        settings = api_settings("http://127.0.0.1:9", 1e9)
        async with OrdersApi(
            settings,
            transport=httpx.MockTransport(answer),
            retry=NO_RETRY,
            observe=(lambda *_: pacer.ledger.record(clock.now)) if pacer else (lambda *_: None),
        ) as api:
            poller = Poller(
                api, store, Dispatcher(store, [HOOK], on_committed=committed), Metrics(),
                clock=clock, concurrency=4, pacer=pacer,
            )  # fmt: skip
            await poller.cycle()  # the first sync: learns the day's start silently
            measured_from = clock.now
            requests_before = app.requests["list"] + app.requests["status"]
            history_from = len(world.history)
            expected = []
            end = hours * HOUR
            while clock.now < end + interval:
                started = clock.now
                if clock.now < end:
                    requests_at_end = app.requests["list"] + app.requests["status"]
                await poller.cycle()
                if pacer is not None and pacer.schedule is not None:
                    expected.append(pacer.schedule.expected_delay)
                wait = pacer.wait(clock.now) if pacer is not None else interval
                clock.now = max(clock.now, started + wait)
                world.step()
        store.close()
    delays, by_hour = [], defaultdict(list)
    for change in world.history[history_from:]:
        if not measured_from <= change.at < end:
            continue
        seen = [t for t in detected.get(change.number, []) if t >= change.at]
        delay = (min(seen) if seen else clock.now) - change.at
        delays.append(delay)
        by_hour[int(change.at // HOUR)].append(delay)
    return Outcome(
        requests_at_end - requests_before,
        delays,
        dict(by_hour),
        pacer.learner if pacer else None,
        expected,
    )


async def fixed_at_the_same_spend(
    pace: DayPace, seed: int, spend: int, *, interval_guess: float, **options: object
) -> tuple[Outcome, float]:
    """The fixed-interval planner, its interval adjusted until it spends ``spend`` (±3 %)."""
    interval = interval_guess
    best: tuple[Outcome, float] | None = None
    for _ in range(5):
        outcome = await simulate(pace, seed, budget=None, interval=interval, **options)  # type: ignore[arg-type]
        if best is None or abs(outcome.requests - spend) < abs(best[0].requests - spend):
            best = (outcome, interval)
        if abs(outcome.requests - spend) <= 0.03 * spend:
            break
        interval *= outcome.requests / spend  # a cycle costs about the same: spend ∝ 1/interval
    assert best is not None
    return best


async def compare(
    pace: DayPace, seed: int, *, budget: float, interval: float, orders: int
) -> dict[str, object]:
    budgeted = await simulate(pace, seed, budget=budget, interval=interval, orders=orders)
    fixed, fixed_interval = await fixed_at_the_same_spend(
        pace, seed, budgeted.requests, interval_guess=interval / 2, orders=orders
    )
    b, f = budgeted.figures(), fixed.figures()
    return {
        "changes": b["changes"],
        "budget_requests": b["requests"],
        "fixed_requests": f["requests"],
        "fixed_interval": fixed_interval,
        "fixed_mean": f["mean"],
        "budget_mean": b["mean"],
        "mean_reduction": 1 - b["mean"] / f["mean"],
        "fixed_p95": f["p95"],
        "budget_p95": b["p95"],
        "fixed_max": f["max"],
        "budget_max": b["max"],
        "max_allowed": interval + max(interval / 60, 0),
        "model_delay": statistics.fmean(budgeted.expected_delay),
        "_budgeted": budgeted,
        "_fixed": fixed,
    }


async def learning(
    pace: DayPace, seed: int, *, budget: float, interval: float, orders: int, fixed: Outcome
) -> dict[int, float]:
    """Per hour of the day: the gain of a learner starting from its prior, as a share of the
    gain of one that watched a whole day before (same day, same seed)."""
    cold = await simulate(pace, seed, budget=budget, interval=interval, orders=orders)
    warm = await simulate(
        pace, seed, budget=budget, interval=interval, orders=orders, learner=cold.learner
    )
    shares = {}
    for hour in sorted(fixed.by_hour):
        base = statistics.fmean(fixed.by_hour[hour])
        gain_warm = base - statistics.fmean(warm.by_hour.get(hour, [base]))
        gain_cold = base - statistics.fmean(cold.by_hour.get(hour, [base]))
        shares[hour] = gain_cold / gain_warm if gain_warm > 0 else math.nan
    return shares


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="seeds (median, min-max)")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--budget", type=float, default=1200.0, help="requests an hour")
    parser.add_argument("--interval", type=float, default=1800.0, help="poll.interval, seconds")
    parser.add_argument("--orders", type=int, default=20_000, help="orders before the day")
    parser.add_argument("--quick", action="store_true", help="a tenth of the history")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("day.json"))
    args = parser.parse_args()
    orders = args.orders // 10 if args.quick else args.orders
    results: dict[str, object] = {"budget": args.budget, "interval": args.interval}
    rows = []
    for label, scale in (("as set", 1.0), ("dwell halved", 0.5), ("dwell doubled", 2.0)):
        runs = []
        for seed in range(args.first_seed, args.first_seed + args.runs):
            print(f"… {label}, seed {seed}", file=sys.stderr, flush=True)
            row = anyio.run(
                lambda scale=scale, seed=seed: compare(
                    DayPace(dwell_scale=scale), seed, budget=args.budget,
                    interval=args.interval, orders=orders,
                )
            )  # fmt: skip
            if label == "as set" and seed == args.first_seed:
                print("… the learner's progress", file=sys.stderr, flush=True)
                results["learning_share_by_hour"] = anyio.run(
                    lambda row=row, seed=seed: learning(
                        DayPace(), seed, budget=args.budget, interval=args.interval,
                        orders=orders, fixed=row["_fixed"],
                    )
                )  # fmt: skip
            runs.append({k: v for k, v in row.items() if not k.startswith("_")})
        rows.append({"pace": label, **summarise(runs)})
    results["comparison"] = rows
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    columns = ["pace", "changes", "budget_requests", "fixed_requests", "fixed_interval",
               "fixed_mean", "budget_mean", "mean_reduction", "fixed_p95", "budget_p95",
               "budget_max", "max_allowed", "model_delay"]  # fmt: skip
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(cell(row[c]) for c in columns) + " |")
    print(json.dumps(results["learning_share_by_hour"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
