"""``orderwatch demo``: the sandbox and the daemon wired together, notifications on the terminal."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from orderwatch._demo import _free

from .conftest import wait_until


def test_the_demo_prints_notifications_serves_metrics_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    out = tmp_path / "demo.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orderwatch", "demo", "--metrics-port", "0"],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: "📣 Order #" in out.read_text(errors="replace"),
            timeout=60,
            what="a notification",
        )
        text = out.read_text()
        metrics = re.search(r"metrics +(http://127\.0\.0\.1:\d+/metrics)", text)
        state = re.search(r"state +(\S+)", text)
        assert metrics and state, text
        scrape = httpx.get(metrics.group(1), timeout=10).text
        assert re.search(r"^orderwatch_poll_cycles_total [1-9]", scrape, re.MULTILINE)
        assert Path(state.group(1)).exists()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        text = out.read_text()
        assert text.rstrip().endswith("demo stopped")
        assert "Traceback" not in text
        assert not Path(state.group(1)).parent.exists()  # the demo leaves no state behind
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_metrics_port_in_use_is_seen_so_the_demo_can_take_another() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        assert not _free(port)
    assert _free(port)
