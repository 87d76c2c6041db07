"""Peak RSS of the daemon's poller with 100,000 open orders tracked and 1,000,000 final orders in
the state file. Run as its own process, so that ru_maxrss is the poller's alone:

    .venv/bin/python benchmarks/memory.py [--open N] [--final N] [--runs 3]

The state file is filled directly (a first sync of 1.1 million orders would take minutes and is
measured by the cold-start figure); then one ordinary cycle runs against ``orderwatch sandbox``
serving the same orders from its own process.
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).parent))
from run import HOOK, NO_RETRY, api_settings, sandbox_process, summarise

from orderwatch._client import OrdersApi
from orderwatch._dispatch import Dispatcher
from orderwatch._metrics import Metrics
from orderwatch._poller import Poller
from orderwatch._sandbox import World
from orderwatch._store import open_store


def fill(path: Path, world: World) -> None:
    """The state a first sync of ``world`` would leave, written directly."""
    open_store(path).close()
    db = sqlite3.connect(path)
    now = time.time()
    db.executemany(
        "INSERT INTO orders (id, number, status, is_final, status_since, since_exact, first_seen, "
        "anchor, created_date, participant_login, total) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?)",
        (
            (o.id, o.number, o.status, int(o.status in {"Delivered", "Cancelled"}), now, now, i,
             o.created_date, o.participant_login, str(o.total))
            for i, o in enumerate(world.newest_first)
        ),
    )  # fmt: skip
    db.executemany("INSERT INTO meta VALUES (?, ?)", [("baseline_done", "1"), ("arrivals", "0")])
    db.commit()
    db.close()


async def cycle(url: str, path: Path) -> dict[str, object]:
    store = open_store(path)
    async with OrdersApi(api_settings(url, 5000), retry=NO_RETRY) as api:
        poller = Poller(api, store, Dispatcher(store, [HOOK]), Metrics(), concurrency=4)
        started = time.perf_counter()
        report = await poller.cycle()
        seconds = time.perf_counter() - started
    store.close()
    return {"requests": report.requests, "cycle_seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--open", type=int, default=100_000)
    parser.add_argument("--final", type=int, default=1_000_000)
    parser.add_argument(
        "--runs", type=int, default=3, help="cycles measured, each in a fresh process"
    )
    parser.add_argument("--fill", type=Path, help=argparse.SUPPRESS)  # child: write the state
    parser.add_argument("--cycle", type=Path, help=argparse.SUPPRESS)  # child: measure a cycle
    args = parser.parse_args()
    orders = args.open + args.final
    if args.fill:
        fill(args.fill, World(seed=5, orders=orders, open_orders=args.open, arrival_rate=0))
        return 0
    if args.cycle:
        with sandbox_process(orders, seed=5, open_orders=args.open) as url:
            result = anyio.run(cycle, url, args.cycle)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"peak_rss_mb": round(peak / 1024, 1), **result}))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.db"
        me = [sys.executable, __file__, "--open", str(args.open), "--final", str(args.final)]
        subprocess.run([*me, "--fill", str(path)], check=True)
        runs = []
        for _ in range(args.runs):
            measured = subprocess.run(
                [*me, "--cycle", str(path)], check=True, capture_output=True, text=True
            )
            runs.append(json.loads(measured.stdout.strip().splitlines()[-1]))
        size = path.stat().st_size
    figures = {"open": args.open, "final": args.final, "state_file_mb": round(size / 2**20, 1)}
    print(json.dumps({**figures, **summarise(runs)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
