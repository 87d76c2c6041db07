"""Figures that need the daemon as users run it (a subprocess): detection latency and idle CPU.

.venv/bin/python benchmarks/service.py latency [--changes 20] [--interval 5] [--max-rps 20]
.venv/bin/python benchmarks/service.py latency --runs 3  # (every command takes --runs)
.venv/bin/python benchmarks/service.py idle [--seconds 300] [--runs 3]

Each figure is the median of ``--runs`` runs with its min-max (``run.py``'s ``summarise``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from run import summarise

from orderwatch._models import PAGE_SIZE
from orderwatch._sandbox import Sandbox, World

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def write_config(
    path: Path, sandbox_url: str, state: Path, *, interval: float, max_rps: float, hook: str | None
) -> None:
    text = (
        f'[api]\nbase_url = "{sandbox_url}"\nclient_id = "sandbox"\n'
        'client_secret = "sandbox-secret"\n'
        f"max_rps = {max_rps}\n[poll]\ninterval = {interval}\n"
        f'[state]\npath = "{state}"\n[metrics]\nlisten = ""\n[log]\nlevel = "WARNING"\n'
    )
    if hook:
        text += f'[[notify.webhooks]]\nname = "bench"\nurl = "{hook}"\nsecret = "{SECRET}"\n'
    path.write_text(text)


def start_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERWATCH_")}
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "orderwatch", "run", "--config", str(config)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )


def wait_for(predicate: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.05)


def latency(changes: int, interval: float, max_rps: float) -> dict[str, object]:
    """Seconds from a status change in the sandbox to the signed webhook accepted by a receiver."""
    arrived: dict[tuple[int, str], float] = {}
    lock = threading.Lock()

    class Receiver(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                arrived.setdefault((body["data"]["number"], body["data"]["status"]), time.time())
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    world = World(seed=12, orders=2000, open_orders=60, arrival_rate=0)
    rng = random.Random(12)
    changed: dict[tuple[int, str], float] = {}
    with Sandbox(world) as sandbox, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "c.toml"
        hook = f"http://127.0.0.1:{server.server_address[1]}/hook"
        write_config(
            config, sandbox.url, Path(tmp) / "s.db", interval=interval, max_rps=max_rps, hook=hook
        )
        daemon = start_daemon(config, Path(tmp) / "log")
        try:
            wait_for(lambda: Path(tmp, "s.db").exists() and sandbox.requests["list"] >= 100, 60)
            time.sleep(interval)
            for _ in range(changes):
                time.sleep(rng.uniform(0.5, interval))
                with sandbox.lock:
                    order = world.by_id[rng.choice(world.open_ids)]
                    status = "Cancelled"
                    changed[(order.number, status)] = time.time()
                    world.set_status(order.id, status)
            wait_for(lambda: all(k in arrived for k in changed), interval * 3 + 10)
        finally:
            daemon.terminate()
            daemon.wait(timeout=15)
            server.shutdown()
        pages_open = math.ceil(60 / PAGE_SIZE)
    waits = sorted(arrived[k] - changed[k] for k in changed)
    target = interval + pages_open / max_rps + 1
    return {
        "changes": changes,
        "interval": interval,
        "max_rps": max_rps,
        "p50": statistics.median(waits),
        "p95": waits[max(0, math.ceil(0.95 * len(waits)) - 1)],
        "max": waits[-1],
        "target_p95": target,
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle(seconds: float, open_orders: int = 1000) -> dict[str, object]:
    """CPU share of one core while 1,000 open orders sit still and the daemon polls every 30 s."""
    world = World(seed=13, orders=open_orders * 2, open_orders=open_orders, arrival_rate=0)
    with Sandbox(world) as sandbox, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "c.toml"
        write_config(config, sandbox.url, Path(tmp) / "s.db", interval=30.0, max_rps=5.0, hook=None)
        daemon = start_daemon(config, Path(tmp) / "log")
        try:
            pages = math.ceil(open_orders * 2 / PAGE_SIZE)
            wait_for(lambda: sandbox.requests["list"] >= pages, pages / 5 + 60)
            time.sleep(5)  # the first sync's last commit
            before, started = cpu_seconds(daemon.pid), time.monotonic()
            requests_before = sum(sandbox.requests.values())
            time.sleep(seconds)
            used, wall = cpu_seconds(daemon.pid) - before, time.monotonic() - started
            requests = sum(sandbox.requests.values()) - requests_before
        finally:
            daemon.terminate()
            daemon.wait(timeout=15)
    return {"open": open_orders, "interval": 30.0, "seconds": round(wall, 1), "cpu_seconds": used,
            "cpu_share_percent": 100 * used / wall, "requests": requests}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["latency", "idle"])
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--max-rps", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = [
        latency(args.changes, args.interval, args.max_rps)
        if args.what == "latency"
        else idle(args.seconds)
        for _ in range(args.runs)
    ]
    print(json.dumps(summarise(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
