"""``orderwatch demo``: a sandbox Orders API and the daemon against it, in one process."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import anyio

from orderwatch._logging import configure_logging
from orderwatch._sandbox import Sandbox, World
from orderwatch._service import ServiceOptions, run_service
from orderwatch._settings import Settings

__all__ = ["run_demo"]


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def run_demo(*, seed: int = 1, metrics_port: int = 9464) -> int:
    """Run until Ctrl-C; return the exit code."""
    configure_logging("WARNING")
    world = World(seed=seed, orders=90, open_orders=14, arrival_rate=0.4, move_rate=0.2)
    with Sandbox(world) as sandbox, tempfile.TemporaryDirectory(prefix="orderwatch-demo-") as tmp:
        sandbox.tick_every(1.0)
        port = metrics_port if _free(metrics_port) else 0
        settings = Settings.model_validate(
            {
                "api": {
                    "base_url": sandbox.url,
                    "client_id": sandbox.client_id,
                    "client_secret": sandbox.client_secret,
                    "max_rps": 20,
                },
                "poll": {"interval": 2},
                "state": {"path": str(Path(tmp) / "orderwatch.db")},
                "metrics": {"listen": f"127.0.0.1:{port}"},
                "notify": {
                    "routes": [
                        {
                            "name": "terminal",
                            "urls": ["console://"],
                            "group_wait": 1,
                            "digest_threshold": 8,
                        }
                    ]
                },
            }
        )

        def announce(bound: int) -> None:
            print(
                "orderwatch demo\n"
                f"  simulated Orders API  {sandbox.url}  (orders arrive and move every second)\n"
                f"  metrics               http://127.0.0.1:{bound}/metrics\n"
                f"  state                 {settings.state.path}\n"
                "Learning the existing orders first (no alerts for those), then announcing "
                "every change as it happens. Ctrl-C stops.",
                flush=True,
            )

        anyio.run(run_service, settings, ServiceOptions(on_metrics_port=announce))
    print("demo stopped")
    return 0
