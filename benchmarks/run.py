"""orderwatch's benchmark suite: figures, not pass/fail. One command (benchmarks/README.md).

1. Requests per cycle ÷ the lower bound (distinct pages holding at least one new or open order),
   for the real poller against the sandbox over loopback, beside two baselines implemented
   here: /status for every open order, and walking every page every cycle.
2. Cold start: requests and time for a first sync, against pages ÷ max_rps.
3. Ingest throughput on one core: pages served from memory (httpx.MockTransport replaying
   answers recorded beforehand), unchanged and with 10 % of the orders changed (each change
   persisted with its outbox row).

Detection latency and idle CPU need the daemon in a process of its own: ``service.py``; peak
memory: ``memory.py``.
"""

from __future__ import annotations

import argparse
import contextlib
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

from orderwatch._client import OrdersApi, RetryPolicy
from orderwatch._dispatch import Dispatcher
from orderwatch._metrics import Metrics
from orderwatch._models import PAGE_SIZE
from orderwatch._poller import Poller
from orderwatch._sandbox import Sandbox, SandboxApp, World
from orderwatch._settings import ApiSettings
from orderwatch._sinks import Destination
from orderwatch._store import open_store

NO_RETRY = RetryPolicy(attempts=2, wait_initial=0, wait_max=0, wait_jitter=0)
HOOK = Destination(route="bench", key="bench", masked="json://…", url="json://127.0.0.1:9/")
OPEN = ("Created", "Payed", "ReadyForDelivery", "AwaitingCertificateAssignment")


def api_settings(url: str, max_rps: float) -> ApiSettings:
    return ApiSettings(
        base_url=url, client_id="sandbox", client_secret="sandbox-secret", max_rps=max_rps
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
    return {
        "orders": orders,
        "pages": pages,
        "max_rps": max_rps,
        "requests": report.requests,
        "seconds": seconds,
        "budget_seconds": pages / max_rps,
        "ratio_to_budget": seconds / (pages / max_rps),
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
    return {
        "backend": "sqlite" if postgres is None else "postgresql",
        "orders": orders,
        "changed": len(moved),
        "transitions": report.transitions,
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "orders_per_second": orders / cpu,
        "changes_per_second": (report.transitions / cpu) if report.transitions else None,
        "orders_per_second_wall": orders / wall,
        "changes_per_second_wall": (report.transitions / wall) if report.transitions else None,
    }


SCENARIOS = {
    "open orders at the head": Scenario("head", orders=100_000, open_at_head=200),
    "head plus stragglers in 100,000": Scenario(
        "stragglers", orders=100_000, open_at_head=200, stragglers=100
    ),
    "50 new orders per cycle": Scenario("arrivals", orders=100_000, open_at_head=200, arrivals=50),
}


def table(rows: list[dict[str, object]], columns: list[str]) -> str:
    def cell(v: object) -> str:
        return f"{v:,.2f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)

    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns)
    return (
        head + "\n" + "\n".join("| " + " | ".join(cell(r[c]) for c in columns) + " |" for r in rows)
    )


def ingest_backends(
    args: argparse.Namespace, scale: float, run: Callable[[str, Callable[[], object]], object]
) -> int:
    """Ingest with the state in SQLite and, beside it in the same run, in PostgreSQL:
    ``--repeat`` rounds, the backends taking turns within each round (a machine busy with
    other work slows both alike); the median of each figure, with its range."""
    runs: dict[tuple[str, str], list[dict[str, object]]] = {}
    for round_ in range(args.repeat):
        for postgres in (None, *([args.postgres] if args.postgres else [])):
            for share, label in ((0.0, "unchanged"), (0.1, "10% changed")):
                backend = "sqlite" if postgres is None else "postgresql"
                row = run(
                    f"ingest, {label}, {backend} ({round_ + 1}/{args.repeat})",
                    lambda share=share, postgres=postgres: ingest(
                        int(20_000 * scale), share, seed=3, postgres=postgres
                    ),
                )
                runs.setdefault((backend, label), []).append(row)  # type: ignore[arg-type]
    rows = [summary(backend, label, found) for (backend, label), found in runs.items()]
    for row in rows:  # PostgreSQL's rate against SQLite's in the same round, round by round
        if row["backend"] == "postgresql":
            key = rate_key(str(row["load"]))
            ratios = sorted(
                float(pg[key]) / float(lite[key])  # type: ignore[arg-type]
                for pg, lite in zip(
                    runs[("postgresql", str(row["load"]))],
                    runs[("sqlite", str(row["load"]))],
                    strict=True,
                )
            )
            row["of_sqlite"] = (
                f"{statistics.median(ratios):.0%} ({ratios[0]:.0%} to {ratios[-1]:.0%})"
            )
    args.output.write_text(
        json.dumps({"ingest_backends": rows, "runs": list(runs.values())}, indent=2) + "\n"
    )
    print(
        f"\n## Ingest by backend, median of {args.repeat} (target: PostgreSQL >= half of SQLite)\n"
    )
    print(
        table(
            rows,
            [
                "backend",
                "load",
                "orders",
                "transitions",
                "wall_seconds",
                "rate",
                "range",
                "of_sqlite",
                "cpu_seconds",
            ],
        )
    )
    return 0


def rate_key(label: str) -> str:
    """What a load is measured by: unchanged orders, or persisted changes, a second."""
    return "orders_per_second_wall" if label == "unchanged" else "changes_per_second_wall"


def summary(backend: str, label: str, found: list[dict[str, object]]) -> dict[str, object]:
    """The median of ``found`` runs of one backend and load: unchanged orders a second, or
    persisted changes a second (wall clock), with the slowest and fastest run."""
    key = rate_key(label)
    rates = sorted(float(r[key]) for r in found)  # type: ignore[arg-type]
    return {
        "backend": backend,
        "load": label,
        "orders": found[0]["orders"],
        "transitions": found[0]["transitions"],
        "wall_seconds": statistics.median(float(r["wall_seconds"]) for r in found),  # type: ignore[arg-type]
        "cpu_seconds": statistics.median(float(r["cpu_seconds"]) for r in found),  # type: ignore[arg-type]
        "rate": statistics.median(rates),
        "range": f"{rates[0]:,.0f} to {rates[-1]:,.0f}",
        "runs": len(found),
        "of_sqlite": "",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("results.json"))
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="also measure ingest with the state on this PostgreSQL server (a schema of its own)",
    )
    parser.add_argument("--only-ingest", action="store_true", help="measure ingest only")
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of ingest by backend (medians reported)"
    )
    args = parser.parse_args(argv)
    scale = 0.1 if args.quick else 1.0
    results: dict[str, object] = {"python": sys.version.split()[0], "quick": args.quick}

    def run(label: str, job: Callable[[], object]) -> object:
        print(f"… {label}", file=sys.stderr, flush=True)
        return anyio.run(job)  # type: ignore[arg-type]

    if args.only_ingest:
        return ingest_backends(args, scale, run)
    requests = []
    for label, s in SCENARIOS.items():
        sized = Scenario(**{**s.__dict__, "orders": int(s.orders * scale)})
        row = run(label, lambda sized=sized: requests_scenario(sized, args.cycles, seed=7))
        requests.append({"scenario": label, **{k: v for k, v in row.items() if k != "scenario"}})  # type: ignore[union-attr]
    results["requests_per_cycle"] = requests
    results["cold_start"] = [
        run("cold start", lambda: cold_start(int(100_000 * scale), 500.0, seed=9))
    ]
    results["ingest"] = [
        run("ingest, unchanged", lambda: ingest(int(20_000 * scale), 0.0, seed=3)),
        run("ingest, 10% changed", lambda: ingest(int(20_000 * scale), 0.1, seed=3)),
    ]
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print("\n## Requests per cycle (target: <= 1.1 x the lower bound)\n")
    print(
        table(
            requests,
            [
                "scenario",
                "orders",
                "open",
                "lower_bound",
                "orderwatch",
                "ratio_mean",
                "ratio_max",
                "status_all",
                "walk_all",
            ],
        )
    )
    print("\n## Cold start (target: <= 1.1 x pages / max_rps)\n")
    print(
        table(
            results["cold_start"],
            [
                "orders",
                "pages",
                "max_rps",
                "requests",
                "seconds",
                "budget_seconds",
                "ratio_to_budget",
            ],
        )
    )  # type: ignore[arg-type]
    print(
        "\n## Ingest on one core (targets: >= 50,000 unchanged orders/s, "
        ">= 5,000 persisted changes/s)\n"
    )
    print(
        table(
            results["ingest"],
            [
                "orders",
                "changed",
                "transitions",
                "cpu_seconds",
                "orders_per_second",
                "changes_per_second",
            ],
        )
    )  # type: ignore[arg-type]
    print(f"\nwritten to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
