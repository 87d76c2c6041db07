"""What it costs to prove a walk missed no order (issue 10): figures, not pass/fail.

A first sync of a list against the sandbox over loopback, four pages in flight, in four
situations: quiet or busy (a new order at the head every ``--every`` seconds and an API that
fails one request in ten and drops one connection in thirty), with consecutive or sparse order
numbers. Each situation runs ``--runs`` times; every figure is the median with its min to max.
The baseline, measured in the same run, is the same walk with the proof switched off (what
orderwatch did before): its requests and the orders it missed.

    .venv/bin/python benchmarks/walk.py --orders 2500 --runs 5
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import anyio
from pydantic import SecretStr

from orderwatch._client import OrdersApi, RetryPolicy
from orderwatch._dispatch import Dispatcher
from orderwatch._exceptions import ApiError
from orderwatch._metrics import Metrics
from orderwatch._models import PAGE_SIZE
from orderwatch._poller import Poller
from orderwatch._sandbox import Faults, Sandbox, World
from orderwatch._settings import ApiSettings
from orderwatch._sinks import Destination
from orderwatch._store import open_store

HOOK = Destination(route="bench", key="bench", masked="json://…", url="json://127.0.0.1:9/")
RETRY = RetryPolicy(attempts=8, wait_initial=0.05, wait_max=0.5, wait_jitter=0.05)


@dataclass(frozen=True)
class Run:
    pages: int  # pages the list had when the walk began
    requests: int  # list requests of the first sync, re-reads and probes included
    rereads: int
    missed: int  # orders the state does not know once the API is quiet again


@contextmanager
def proof(*, on: bool) -> Iterator[None]:
    if on:
        yield
        return

    async def skip(*_: object, **__: object) -> bool:
        return True

    with (
        mock.patch.object(Poller, "_close_gaps", skip),
        mock.patch.object(Poller, "_probe_if_unproven", skip),
    ):
        yield


async def first_sync(
    orders: int, *, busy: bool, step: int, every: float, max_rps: float, seed: int
) -> Run:
    world = World(
        seed=seed,
        orders=orders,
        open_orders=30,
        arrival_rate=1,
        move_rate=0,
        cancel_rate=0,
        number_step=step,
    )
    with Sandbox(world, fault_seed=seed) as sandbox, tempfile.TemporaryDirectory() as tmp:
        settings = ApiSettings(
            base_url=sandbox.url,
            client_id="sandbox",
            client_secret=SecretStr("sandbox-secret"),
            max_rps=max_rps,
        )
        store = open_store(Path(tmp) / "s.db")
        pages = -(-orders // PAGE_SIZE)
        requests = rereads = 0
        async with OrdersApi(settings, retry=RETRY) as api:
            poller = Poller(api, store, Dispatcher(store, [HOOK]), Metrics(), concurrency=4)
            if busy:
                sandbox.faults = Faults(errors=0.1, resets=1 / 30)
                sandbox.tick_every(every)
            for _ in range(20):
                try:
                    report = await poller.cycle()
                except ApiError:
                    continue
                requests, rereads = requests + report.pages, rereads + report.rereads
                if store.first_sync_done:
                    break
            sandbox.stop_ticking()
            sandbox.faults = Faults()
            await poller.cycle()  # the head walk learns the last arrivals
        known = {order["id"] for order in store.export()}
        store.close()
        with sandbox.lock:
            missed = sum(order.id not in known for order in world.newest_first)
    return Run(pages, requests, rereads, missed)


def spread(values: list[int]) -> str:
    return f"{statistics.median(values):g} ({min(values)} to {max(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--every", type=float, default=0.1, help="seconds between arrivals")
    parser.add_argument("--max-rps", type=float, default=400.0)
    args = parser.parse_args()
    print("| situation | numbers | proof | pages | requests | re-reads + probes | missed |")
    print("|---|---|---|---|---|---|---|")
    for busy in (False, True):
        for step, numbers in ((1, "consecutive"), (9, "sparse")):
            for on in (True, False):
                runs = []
                for seed in range(args.runs):
                    walk = functools.partial(
                        first_sync,
                        args.orders,
                        busy=busy,
                        step=step,
                        every=args.every,
                        max_rps=args.max_rps,
                        seed=seed,
                    )
                    with proof(on=on):
                        runs.append(anyio.run(walk))
                situation = "busy, flaky" if busy else "quiet"
                print(
                    f"| {situation} | {numbers} | {'on' if on else 'off (before)'} "
                    f"| {runs[0].pages} | {spread([r.requests for r in runs])} "
                    f"| {spread([r.rereads for r in runs])} | {spread([r.missed for r in runs])} |"
                )


if __name__ == "__main__":
    main()
