"""The request budget judged on a simulated shop day (issue 14).

    .venv/bin/python benchmarks/day.py [--runs 3] [--budget 1200] [--interval 1800] [--quick]
                                       [--jobs N]

A day of the sandbox's :class:`~orderwatch._sandbox.ShopDay` (orders arrive at the head, busier
in working hours, and leave each status after a random time whose mean depends on the status; a
long tail stays open for days) is run in simulated time: the real poller, store and change
detection, the sandbox app in-process through ``httpx.MockTransport``, and a clock that moves by
``1 / max_rps`` with every request and jumps to the next cycle between cycles. A whole day
takes seconds, and nothing on a shared machine can change a figure.

For every change the sandbox records when it happened (shop time); its delay runs until a
webhook receiver accepted an event that shows it (or a later status of the order). The
courier is the daemon's own, on the same event loop as the poller: it sends what each commit
announced before the next API request goes out and before the clock jumps to the next cycle,
and the receiver takes ``SEND`` seconds per event, one after the other. Changes during the
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
import os
import statistics
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import cast

import anyio
import httpx

sys.path.insert(0, str(Path(__file__).parent))
import anyio.lowlevel
from run import NO_RETRY, api_settings, cell, summarise

from orderwatch._client import OrdersApi
from orderwatch._dispatch import Dispatcher
from orderwatch._metrics import Metrics
from orderwatch._outbox import Courier
from orderwatch._pacing import Pacer
from orderwatch._poller import Poller
from orderwatch._quota import RequestLedger
from orderwatch._rates import RateLearner
from orderwatch._sandbox import DayPace, SandboxApp, ShopDay, WorldChange
from orderwatch._sinks import Destination
from orderwatch._store import Store, open_store
from orderwatch._webhooks import WebhookSender

HOUR = 3600.0
Row = dict[str, object]
DAY = 24 * HOUR


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Waiting (for the request budget's ledger) lets simulated time pass."""
        self.now += seconds


SEND = 0.05  # seconds a webhook takes from the courier to the receiver's acceptance
RECEIVER = Destination(
    route="receiver", key="receiver", masked="http://receiver.invalid/",
    url="http://receiver.invalid/", kind="webhook",
    secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  # made up: the receiver does not check
)  # fmt: skip
_FAST_DISK = "/dev/shm" if Path("/dev/shm").is_dir() else None  # the courier syncs every send


@dataclass
class Receiver:
    """The webhook receiver, in simulated time: it accepts each event ``SEND`` seconds after
    the courier started it, one at a time (the courier's worker for a destination sends in
    order), and records when, by order number and the status the event shows."""

    clock: Clock
    free_at: float = 0.0
    accepted: dict[int, list[tuple[str, float]]] = field(default_factory=lambda: defaultdict(list))

    async def accept(self, request: httpx.Request) -> httpx.Response:
        data = json.loads(request.content)["data"]
        self.free_at = max(self.clock.now, self.free_at) + SEND
        if "number" in data:  # not a watcher notice
            self.accepted[data["number"]].append((data["status"], self.free_at))
        return httpx.Response(204)

    def delays(
        self, changes: list[WorldChange], until: float
    ) -> Iterator[tuple[WorldChange, float]]:
        """Each change with the time from it to the first accepted event that shows it or a
        later status of its order (an order that moved twice between two fetches is told
        once, with its newest status); ``until`` for a change never told."""
        by_order: dict[int, list[WorldChange]] = defaultdict(list)
        for change in changes:
            by_order[change.number].append(change)
        for number, own in by_order.items():
            statuses = [change.status for change in own]  # an order never returns to a status
            told = self.accepted.get(number, [])
            for i, change in enumerate(own):
                times = [at for status, at in told if status in statuses[i:]]
                yield change, min(times, default=until) - change.at


@dataclass
class Spend:
    """Requests in any hour by the budget's ledger (its promise): the most, and the most once
    the first sync's hour is out of the window."""

    ledger: RequestLedger | None = None
    first_hour_ends: float = math.inf
    most: int = 0
    most_later: int = 0

    def look(self, now: float) -> None:
        if self.ledger is not None:
            spent = self.ledger.spent(now)
            self.most = max(self.most, spent)
            if now >= self.first_hour_ends:
                self.most_later = max(self.most_later, spent)


def in_window(
    delays: Iterable[tuple[WorldChange, float]], start: float, end: float
) -> tuple[list[float], dict[int, list[float]]]:
    """The delays of the changes from ``start`` to ``end``: all, and by the hour they happened."""
    kept: list[float] = []
    by_hour: dict[int, list[float]] = defaultdict(list)
    for change, delay in delays:
        if start <= change.at < end:
            kept.append(delay)
            by_hour[int(change.at // HOUR)].append(delay)
    return kept, by_hour


async def delivered(store: Store) -> None:
    """Let the courier (on the same event loop) send everything committed so far."""
    while store.queue_counts()["pending"]:
        await anyio.lowlevel.checkpoint()


@dataclass
class Outcome:
    requests: int  # list and /status requests after the first sync
    delays: list[float]
    by_hour: dict[int, list[float]]
    learner: RateLearner | None = None
    expected_delay: list[float] = field(default_factory=list)  # the model's own estimate
    longest_cycle: float = 0.0  # seconds from a cycle's start to its last send accepted
    most_in_an_hour: int = 0  # requests in any hour (budget planner only)
    most_after_first_hour: int = 0  # the same, once the first sync's hour is past

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
    receiver = Receiver(clock)

    spend = Spend()

    async def answer(request: httpx.Request) -> httpx.Response:
        await delivered(store)  # the courier runs beside the poller
        spend.look(clock.now)
        clock.now += 1 / max_rps  # a request takes its slot of the rate budget
        world.step()
        return live.handle_request(request)

    with tempfile.TemporaryDirectory(dir=_FAST_DISK) as tmp:
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
            spend.ledger = pacer.ledger
        settings = api_settings("http://127.0.0.1:9", 1e9)
        webhooks = WebhookSender(transport=httpx.MockTransport(receiver.accept))
        courier = Courier(store, [RECEIVER], Metrics(), clock=clock, webhooks=webhooks)
        async with (
            OrdersApi(
                settings,
                transport=httpx.MockTransport(answer),
                retry=NO_RETRY,
                # As in the daemon: a request waits while the last hour has no room.
                before_request=partial(pacer.ledger.acquire, clock, clock.sleep) if pacer else None,
            ) as api,
            anyio.create_task_group() as group,
        ):
            group.start_soon(courier.run)
            poller = Poller(
                api, store, Dispatcher(store, [RECEIVER], on_committed=lambda _: courier.wake()),
                Metrics(), clock=clock, concurrency=4, pacer=pacer,
            )  # fmt: skip
            await poller.cycle()  # the first sync: learns the day's start silently
            measured_from = clock.now
            spend.first_hour_ends = measured_from + HOUR + 60  # the ledger counts whole minutes
            requests_before = app.requests["list"] + app.requests["status"]
            history_from = len(world.history)
            expected = []
            longest_cycle = 0.0
            end = hours * HOUR
            while clock.now < end + interval:
                started = clock.now
                if clock.now < end:
                    requests_at_end = app.requests["list"] + app.requests["status"]
                await poller.cycle()
                await delivered(store)  # before the clock jumps to the next cycle
                longest_cycle = max(longest_cycle, max(clock.now, receiver.free_at) - started)
                if pacer is not None and pacer.schedule is not None:
                    expected.append(pacer.schedule.expected_delay)
                # As the daemon: the budget's next cycle is due a wait from now; the fixed
                # planner's, an interval from the start of this one.
                due = clock.now + pacer.wait(clock.now) if pacer is not None else started + interval
                clock.now = max(clock.now, due)
                world.step()
            group.cancel_scope.cancel()
        await webhooks.aclose()
        store.close()
    delays, by_hour = in_window(
        receiver.delays(world.history[history_from:], clock.now), measured_from, end
    )
    return Outcome(
        requests_at_end - requests_before,
        delays,
        dict(by_hour),
        pacer.learner if pacer else None,
        expected,
        longest_cycle,
        spend.most,
        spend.most_later,
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
    pace: DayPace, seed: int, *, budget: float, interval: float, orders: int, hours: float = 24.0
) -> dict[str, object]:
    """The budget planner against the fixed-interval planner at the same spend, on one day."""
    budgeted = await simulate(
        pace, seed, budget=budget, interval=interval, orders=orders, hours=hours
    )
    fixed, fixed_interval = await fixed_at_the_same_spend(
        pace, seed, budgeted.requests, interval_guess=interval / 2, orders=orders, hours=hours
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
        # The target: no change waits longer than poll.interval plus one cycle (the longest).
        "longest_cycle": budgeted.longest_cycle,
        "most_in_an_hour": budgeted.most_in_an_hour,
        "most_after_first_hour": budgeted.most_after_first_hour,
        "max_allowed": interval + budgeted.longest_cycle,
        "model_delay": statistics.fmean(budgeted.expected_delay),
        "_budgeted": budgeted,
        "_fixed": fixed,
    }


async def learning(
    pace: DayPace, seed: int, *, budget: float, interval: float, orders: int, fixed_interval: float
) -> dict[int, float]:
    """Per hour of the day: the gain of a learner starting from its prior, as a share of the
    gain of one that watched a whole day before (same day, same seed), both against the
    fixed-interval planner every ``fixed_interval`` seconds."""
    fixed = await simulate(pace, seed, budget=None, interval=fixed_interval, orders=orders)
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


def comparison_job(scale: float, seed: int, budget: float, interval: float, orders: int) -> Row:
    """One day compared (in a process of its own: the days are independent)."""
    pace = DayPace(dwell_scale=scale)
    row = anyio.run(partial(compare, pace, seed, budget=budget, interval=interval, orders=orders))
    return {key: value for key, value in row.items() if not key.startswith("_")}


def learning_job(
    seed: int, budget: float, interval: float, orders: int, fixed_interval: float
) -> dict[int, float]:
    return anyio.run(
        partial(learning, DayPace(), seed, budget=budget, interval=interval, orders=orders,
                fixed_interval=fixed_interval)
    )  # fmt: skip


def done(what: str, _: object) -> None:
    print(f"… {what}: done", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="seeds (median, min-max)")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--budget", type=float, default=1200.0, help="requests an hour")
    parser.add_argument("--interval", type=float, default=1800.0, help="poll.interval, seconds")
    parser.add_argument("--orders", type=int, default=20_000, help="orders before the day")
    parser.add_argument("--quick", action="store_true", help="a tenth of the history")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="days at once")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("day.json"))
    args = parser.parse_args()
    orders = args.orders // 10 if args.quick else args.orders
    seeds = range(args.first_seed, args.first_seed + args.runs)
    paces = {"as set": 1.0, "dwell halved": 0.5, "dwell doubled": 2.0}
    results: dict[str, object] = {
        "budget": args.budget, "interval": args.interval, "orders": orders, "seeds": list(seeds)
    }  # fmt: skip
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = {
            (label, seed): pool.submit(
                comparison_job, scale, seed, args.budget, args.interval, orders
            )
            for label, scale in paces.items()
            for seed in seeds
        }
        for (label, seed), future in futures.items():
            future.add_done_callback(partial(done, f"{label}, seed {seed}"))
        first = futures["as set", args.first_seed].result()
        print("… the learner's progress", file=sys.stderr, flush=True)
        learned = pool.submit(
            learning_job, args.first_seed, args.budget, args.interval, orders,
            float(cast("float", first["fixed_interval"])),
        )  # fmt: skip
        rows = [
            {"pace": label, **summarise([futures[label, seed].result() for seed in seeds])}
            for label in paces
        ]
        results["comparison"] = rows
        results["by_seed"] = {
            f"{label}, seed {seed}": future.result() for (label, seed), future in futures.items()
        }
        results["learning_share_by_hour"] = learned.result()
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    columns = ["pace", "changes", "budget_requests", "fixed_requests", "fixed_interval",
               "fixed_mean", "budget_mean", "mean_reduction", "fixed_p95", "budget_p95",
               "budget_max", "longest_cycle", "max_allowed", "most_in_an_hour",
               "most_after_first_hour", "model_delay"]  # fmt: skip
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(cell(row[c]) for c in columns) + " |")
    print(json.dumps(results["learning_share_by_hour"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
