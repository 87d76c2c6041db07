"""orderwatch's benchmark suite: figures, not pass/fail. One command (benchmarks/README.md).

1. Requests per cycle ÷ the lower bound (distinct pages holding at least one new or open order),
   for the real poller against the sandbox over loopback, beside two baselines implemented
   here: /status for every open order, and walking every page every cycle.
2. Cold start: requests and time for a first sync, against pages ÷ max_rps.
3. Ingest throughput on one core: pages served from memory (httpx.MockTransport replaying
   answers recorded beforehand), unchanged and with 10 % of the orders changed (each change
   persisted with its outbox row).

Every figure is the median of ``--runs`` runs (different seeds where a seed matters) with its
spread, min-max: the machines are shared and one run means little. Each throughput comes with
a baseline measured in the same run, on the same pages, and the ratio of the two: the bare HTTP
client walking the same list at the same rate (cold start) and the bare HTTP client plus JSON
parsing of the same recorded pages (ingest), which is what orderwatch cannot go below. A
regression moves the ratio; a noisy neighbour moves both.

Detection latency and idle CPU need the daemon in a process of its own: ``service.py``; peak
memory: ``memory.py``; the request budget's simulated day: ``day.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
from pydantic import SecretStr

from orderwatch._client import OrdersApi, RetryPolicy
from orderwatch._dispatch import Dispatcher
from orderwatch._metrics import Metrics
from orderwatch._models import PAGE_SIZE
from orderwatch._poller import Poller
from orderwatch._ratelimit import RateLimiter
from orderwatch._sandbox import Sandbox, SandboxApp, World
from orderwatch._settings import ApiSettings
from orderwatch._sinks import Destination
from orderwatch._store import open_store

NO_RETRY = RetryPolicy(attempts=2, wait_initial=0, wait_max=0, wait_jitter=0)
HOOK = Destination(route="bench", key="bench", masked="json://…", url="json://127.0.0.1:9/")
OPEN = ("Created", "Payed", "ReadyForDelivery", "AwaitingCertificateAssignment")


def api_settings(url: str, max_rps: float) -> ApiSettings:
    return ApiSettings(
        base_url=url,
        client_id="sandbox",
        client_secret=SecretStr("sandbox-secret"),
        max_rps=max_rps,
    )


def page_of(world: World, order_id: str) -> int:
    return world.newest_first.index(world.by_id[order_id]) // PAGE_SIZE + 1


def lower_bound(world: World, watched: set[str]) -> int:
    """Distinct pages holding an order orderwatch must look at: new, or open when last seen."""
    index = {order.id: i for i, order in enumerate(world.newest_first)}
    return len({index[i] // PAGE_SIZE + 1 for i in watched if i in index})


async def walk_all(api: OrdersApi) -> int:
    first = await api.list_orders(1)
    for page in range(2, first.total_pages + 1):
        await api.list_orders(page)
    return first.total_pages


async def status_all(api: OrdersApi, known: set[str], open_ids: list[str]) -> int:
    """Baseline: walk from page 1 until a known order shows up, then /status for each open one."""
    requests, page = 0, 1
    while True:
        answer = await api.list_orders(page)
        requests += 1
        if not answer.orders or answer.orders[-1].id in known or page >= answer.total_pages:
            break
        page += 1
    for order_id in open_ids:
        await api.order_status(order_id)
    return requests + len(open_ids)


@dataclass
class Scenario:
    name: str
    orders: int
    open_at_head: int
    stragglers: int = 0
    arrivals: int = 0  # new orders per cycle
    moves: int = 10  # open orders moving per cycle


def build_world(s: Scenario, seed: int) -> World:
    world = World(
        seed=seed,
        orders=s.orders,
        open_orders=s.open_at_head,
        arrival_rate=0,
        move_rate=0,
        cancel_rate=0,
    )
    rng = random.Random(seed)
    for order in rng.sample(world.newest_first[s.open_at_head + 20 :], s.stragglers):
        world.set_status(order.id, rng.choice(OPEN))
    return world


def change(world: World, s: Scenario, rng: random.Random) -> set[str]:
    """One cycle's worth of change; returns the new orders' ids."""
    for order_id in rng.sample(world.open_ids, min(s.moves, len(world.open_ids))):
        status = world.by_id[order_id].status
        world.set_status(
            order_id, {"Created": "Payed", "Payed": "ReadyForDelivery"}.get(status, "Delivered")
        )
    return {world.add_order().id for _ in range(s.arrivals)}


async def requests_scenario(s: Scenario, cycles: int, seed: int) -> dict[str, object]:
    world = build_world(s, seed)
    rng = random.Random(seed + 1)
    rows = []
    with Sandbox(world) as sandbox, tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "s.db")
        async with (
            OrdersApi(api_settings(sandbox.url, 5000), retry=NO_RETRY) as api,
            OrdersApi(api_settings(sandbox.url, 5000), retry=NO_RETRY) as baseline_api,
        ):
            poller = Poller(api, store, Dispatcher(store, [HOOK]), Metrics(), concurrency=4)
            await poller.cycle()  # the first sync, not counted here
            await poller.cycle()  # settles the positions it learned
            for _ in range(cycles):
                with sandbox.lock:
                    watched = set(world.open_ids)
                    known = set(world.by_id)
                    new = change(world, s, rng)
                    bound = lower_bound(world, watched | new)
                    open_ids = [i for i in watched if i in world.by_id]
                report = await poller.cycle()
                rows.append(
                    {
                        "bound": bound,
                        "orderwatch": report.requests,
                        "status_all": await status_all(baseline_api, known, open_ids),
                        "walk_all": await walk_all(baseline_api),
                    }
                )
        store.close()
    ratios = [r["orderwatch"] / r["bound"] for r in rows]
    return {
        "scenario": s.name,
        "orders": s.orders,
        "open": s.open_at_head + s.stragglers,
        "lower_bound": statistics.mean(r["bound"] for r in rows),
        "orderwatch": statistics.mean(r["orderwatch"] for r in rows),
        "ratio_mean": statistics.mean(ratios),
        "ratio_max": max(ratios),
        "status_all": statistics.mean(r["status_all"] for r in rows),
        "walk_all": statistics.mean(r["walk_all"] for r in rows),
    }


@contextlib.contextmanager
def sandbox_process(orders: int, seed: int, open_orders: int = 50) -> Iterator[str]:
    """``orderwatch sandbox`` in its own process, as a real API would be: its work does not
    compete with the daemon's for this process's GIL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "orderwatch", "sandbox", "--port", "0", "--orders", str(orders),
         "--open", str(open_orders), "--seed", str(seed), "--tick", "86400", "--arrival-rate", "0"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        match = re.search(r"on (http://\S+) ", line)
        if not match:
            raise RuntimeError(f"the sandbox did not start: {line!r}")
        yield match.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def bare_walk(url: str, pages: int, max_rps: float, concurrency: int = 4) -> float:
    """Baseline: the bare HTTP client fetching pages 1..``pages`` at ``max_rps``,
    ``concurrency`` at a time, reading each body as JSON. Seconds."""
    async with httpx.AsyncClient(base_url=url) as client:
        token = (
            await client.post(
                "/connect/token",
                data={"grant_type": "client_credentials", "client_id": "sandbox",
                      "client_secret": "sandbox-secret"},
            )
        ).json()["access_token"]  # fmt: skip
        headers = {"Authorization": f"Bearer {token}"}
        limiter, slots = RateLimiter(max_rps), anyio.CapacityLimiter(concurrency)

        async def fetch(number: int) -> None:
            async with slots:
                await limiter.acquire()
                json.loads((await client.get(f"/v1/orders?page={number}", headers=headers)).content)

        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for number in range(1, pages + 1):
                group.start_soon(fetch, number)
        return time.perf_counter() - started


async def cold_start(orders: int, max_rps: float, seed: int) -> dict[str, object]:
    pages = math.ceil(orders / PAGE_SIZE)
    with sandbox_process(orders, seed) as url, tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "s.db")
        async with OrdersApi(api_settings(url, max_rps), retry=NO_RETRY) as api:
            poller = Poller(api, store, Dispatcher(store, [HOOK]), Metrics(), concurrency=4)
            started = time.perf_counter()
            report = await poller.cycle()
            seconds = time.perf_counter() - started
        store.close()
        baseline = await bare_walk(url, pages, max_rps)
    return {
        "orders": orders,
        "pages": pages,
        "max_rps": max_rps,
        "requests": report.requests,
        "seconds": seconds,
        "budget_seconds": pages / max_rps,
        "ratio_to_budget": seconds / (pages / max_rps),
        "bare_client_seconds": baseline,
        "ratio_to_bare_client": seconds / baseline,
    }


class Replay:
    """A transport answering from answers recorded beforehand: what is timed is orderwatch's
    work on each page, not the sandbox's work composing it. Anything not recorded (the token)
    is answered live."""

    def __init__(self, app: SandboxApp) -> None:
        self._app = app
        self._live = app.mock_transport()
        self._recorded: dict[bytes, tuple[int, bytes, list[tuple[str, str]]]] = {}
        self.transport = httpx.MockTransport(self._answer)

    def record(self, targets: list[str]) -> None:
        headers = {"Authorization": f"Bearer {self._app.issue_token()}"}
        for target in targets:
            response = self._live.handle_request(
                httpx.Request("GET", f"http://127.0.0.1:9{target}", headers=headers)
            )
            self._recorded[target.encode()] = (
                response.status_code,
                response.read(),
                list(response.headers.items()),
            )

    def _answer(self, request: httpx.Request) -> httpx.Response:
        recorded = self._recorded.get(request.url.raw_path)
        if recorded is None:
            return self._live.handle_request(request)
        code, content, headers = recorded
        return httpx.Response(code, content=content, headers=headers)


@contextlib.contextmanager
def postgres_schema(server: str) -> Iterator[str]:
    """A URL of ``server`` whose sessions work in a fresh schema, dropped afterwards."""
    import psycopg  # noqa: PLC0415 - only when --postgres is given

    schema = f"bench_{os.getpid()}_{int(time.time() * 1000)}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{server}{'&' if '?' in server else '?'}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


async def ingest(
    orders: int, changed_share: float, seed: int, postgres: str | None = None
) -> dict[str, object]:
    """A full walk over ``orders`` known open orders served from memory; timed on one core
    (CPU) and by the clock (wall: what counts where a database server does part of the work).
    ``postgres``: a server URL; the state then lives there, in a schema of its own."""
    world = World(seed=seed, orders=orders, open_orders=orders, arrival_rate=0)
    app = SandboxApp(world, etags=False)
    replay = Replay(app)
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        location: Path | str = Path(tmp) / "s.db"
        if postgres is not None:
            location = stack.enter_context(postgres_schema(postgres))
        store = open_store(location)
        async with OrdersApi(
            api_settings("http://127.0.0.1:9", 1e9), transport=replay.transport, retry=NO_RETRY
        ) as api:
            poller = Poller(api, store, Dispatcher(store, [HOOK]), Metrics(), concurrency=4)
            await poller.cycle()
            rng = random.Random(seed)
            moved = rng.sample(world.open_ids, int(orders * changed_share))
            for order_id in moved:
                world.set_status(order_id, "Cancelled")
            store.set_meta(full_walk_requested=1)
            pages = math.ceil(orders / PAGE_SIZE)
            replay.record([f"/v1/orders?page={n}" for n in range(1, pages + 2)])
            started, wall = time.process_time(), time.perf_counter()
            report = await poller.cycle()
            cpu = time.process_time() - started
            wall = time.perf_counter() - wall
        store.close()
    baseline = await bare_ingest(replay, pages + 1)
    return {
        "backend": "sqlite" if postgres is None else "postgresql",
        "orders": orders,
        "changed": len(moved),
        "transitions": report.transitions,
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "orders_per_second": orders / cpu,
        "changes_per_second": (report.transitions / cpu) if report.transitions else None,
        "bare_client_orders_per_second": orders / baseline,
        "ratio_to_bare_client": (orders / cpu) / (orders / baseline),
        "orders_per_second_wall": orders / wall,
        "changes_per_second_wall": (report.transitions / wall) if report.transitions else None,
    }


async def bare_ingest(replay: Replay, pages: int, concurrency: int = 4) -> float:
    """Baseline: the bare HTTP client and JSON parsing of the same recorded pages, on the same
    transport, ``concurrency`` at a time. CPU seconds."""
    slots = anyio.CapacityLimiter(concurrency)
    async with httpx.AsyncClient(
        transport=replay.transport, base_url="http://127.0.0.1:9"
    ) as client:

        async def fetch(number: int) -> None:
            async with slots:
                json.loads((await client.get(f"/v1/orders?page={number}")).content)

        started = time.process_time()
        async with anyio.create_task_group() as group:
            for number in range(1, pages + 1):
                group.start_soon(fetch, number)
        return time.process_time() - started


SCENARIOS = {
    "open orders at the head": Scenario("head", orders=100_000, open_at_head=200),
    "head plus stragglers in 100,000": Scenario(
        "stragglers", orders=100_000, open_at_head=200, stragglers=100
    ),
    "50 new orders per cycle": Scenario("arrivals", orders=100_000, open_at_head=200, arrivals=50),
}


def spread(values: list[float]) -> dict[str, float]:
    """The median of several runs and their min-max."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(runs: list[dict[str, object]]) -> dict[str, object]:
    """One row from several runs of the same figure: numbers as their spread, the rest as is."""
    row: dict[str, object] = {"runs": len(runs)}
    for key, first in runs[0].items():
        values = [r[key] for r in runs]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        constant = all(v == first for v in values)
        row[key] = spread([float(v) for v in values]) if numeric and not constant else first  # type: ignore[arg-type]
    return row


def cell(value: object) -> str:
    def number(v: float) -> str:
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:,.2f}"

    if isinstance(value, dict):
        return f"{number(value['median'])} ({number(value['min'])}-{number(value['max'])})"
    if isinstance(value, float):
        return number(value)
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(rows: list[dict[str, object]], columns: list[str]) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns)
    return (
        head + "\n" + "\n".join("| " + " | ".join(cell(r[c]) for c in columns) + " |" for r in rows)
    )


def ingest_backends(args: argparse.Namespace, scale: float) -> int:
    """Ingest with the state in SQLite and, beside it in the same run, in PostgreSQL:
    ``--runs`` rounds, the backends taking turns within each round (a machine busy with other
    work slows both alike); each figure as its median and spread, and PostgreSQL's rate over
    SQLite's in the same round, round by round."""
    runs: dict[tuple[str, str], list[dict[str, object]]] = {}
    for i in range(args.runs):
        for postgres in (None, *([args.postgres] if args.postgres else [])):
            for share, load in ((0.0, "unchanged"), (0.1, "10% changed")):
                backend = "sqlite" if postgres is None else "postgresql"
                print(f"… ingest, {load}, {backend}, run {i + 1} of {args.runs}", file=sys.stderr)
                row = anyio.run(ingest, int(20_000 * scale), share, 3, postgres)
                runs.setdefault((backend, load), []).append({"load": load, **row})
    rows = []
    for (backend, load), found in runs.items():
        key = "orders_per_second_wall" if load == "unchanged" else "changes_per_second_wall"
        row = summarise(found)
        row["rate"] = row[key]
        if backend == "postgresql":
            lite = runs[("sqlite", load)]
            row["of_sqlite"] = spread(
                [float(pg[key]) / float(sq[key]) for pg, sq in zip(found, lite, strict=True)]  # type: ignore[arg-type]
            )
        rows.append(row)
    args.output.write_text(json.dumps({"ingest_backends": rows}, indent=2) + "\n")
    print(f"\n## Ingest by backend (target: PostgreSQL >= half of SQLite), {args.runs} runs\n")
    columns = ["backend", "load", "orders", "transitions", "wall_seconds", "rate", "of_sqlite"]
    print(table([{"of_sqlite": "", **row} for row in rows], [*columns, "cpu_seconds"]))
    return 0


async def scenario_run(scenario: Scenario, cycles: int, run: int) -> dict[str, object]:
    """Run number ``run`` of one requests-per-cycle scenario (each run its own seed)."""
    return await requests_scenario(scenario, cycles, seed=7 + run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--runs", type=int, default=5, help="runs of each figure (median, min-max)")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("results.json"))
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="also measure ingest with the state on this PostgreSQL server (a schema of its own)",
    )
    parser.add_argument("--only-ingest", action="store_true", help="measure ingest only")
    args = parser.parse_args(argv)
    scale = 0.1 if args.quick else 1.0
    results: dict[str, object] = {
        "python": sys.version.split()[0], "quick": args.quick, "runs": args.runs
    }  # fmt: skip

    def run(label: str, job: Callable[[int], object]) -> dict[str, object]:
        """``job(run)`` ``--runs`` times, as one row of medians and spreads."""
        rows: list[dict[str, object]] = []
        for i in range(args.runs):
            print(f"… {label}, run {i + 1} of {args.runs}", file=sys.stderr, flush=True)
            rows.append(anyio.run(job, i))  # type: ignore[arg-type]
        return summarise(rows)

    if args.only_ingest:
        return ingest_backends(args, scale)
    requests: list[dict[str, object]] = []
    for label, s in SCENARIOS.items():
        sized = Scenario(**{**s.__dict__, "orders": int(s.orders * scale)})
        job = functools.partial(scenario_run, sized, args.cycles)
        row = run(label, job)
        requests.append({**row, "scenario": label})
    results["requests_per_cycle"] = requests
    cold = [run("cold start", lambda i: cold_start(int(100_000 * scale), 500.0, seed=9 + i))]
    ingested = [
        run("ingest, unchanged", lambda i: ingest(int(20_000 * scale), 0.0, seed=3 + i)),
        run("ingest, 10% changed", lambda i: ingest(int(20_000 * scale), 0.1, seed=3 + i)),
    ]
    results["cold_start"], results["ingest"] = cold, ingested
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nEach figure: the median of {args.runs} runs (min-max).")
    print("\n## Requests per cycle (target: <= 1.1 x the lower bound)\n")
    print(table(requests, ["scenario", "orders", "open", "lower_bound", "orderwatch",
                           "ratio_mean", "ratio_max", "status_all", "walk_all"]))  # fmt: skip
    print("\n## Cold start (target: <= 1.1 x pages / max_rps)\n")
    print(table(cold, ["orders", "pages", "max_rps", "requests", "seconds", "budget_seconds",
                       "ratio_to_budget", "bare_client_seconds",
                       "ratio_to_bare_client"]))  # fmt: skip
    print(
        "\n## Ingest on one core (targets: >= 50,000 unchanged orders/s, "
        ">= 5,000 persisted changes/s)\n"
    )
    print(table(ingested, ["orders", "changed", "transitions", "cpu_seconds",
                           "orders_per_second", "changes_per_second",
                           "bare_client_orders_per_second",
                                    "ratio_to_bare_client"]))  # fmt: skip
    print(f"\nwritten to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
