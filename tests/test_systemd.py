"""sd_notify: what the daemon tells systemd, over a real unix datagram socket."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from orderwatch import _systemd
from orderwatch._systemd import SystemdNotifier

from .conftest import NotifySocket


def test_each_call_is_one_datagram_of_key_value_lines(notify_socket: NotifySocket) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(notify_socket.path)})
    notifier.ready("tracking 3 open orders")
    notifier.status("last poll ok")
    notifier.stopping()
    assert notify_socket.drain() == [
        "READY=1\nSTATUS=tracking 3 open orders",
        "STATUS=last poll ok",
        "STOPPING=1",
    ]


def test_reloading_carries_the_monotonic_time_systemd_asks_for(
    notify_socket: NotifySocket,
) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(notify_socket.path)})
    before = time.monotonic_ns() // 1000
    notifier.reloading()
    after = time.monotonic_ns() // 1000
    [message] = notify_socket.drain()
    first, second = message.split("\n")
    assert first == "RELOADING=1"
    key, value = second.split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_an_abstract_socket_written_with_an_at_sign_is_reached() -> None:
    name = f"orderwatch-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        listener.settimeout(5)
        SystemdNotifier({"NOTIFY_SOCKET": "@" + name}).stopping()
        assert listener.recv(4096) == b"STOPPING=1"


def test_without_notify_socket_every_call_does_nothing(caplog: pytest.LogCaptureFixture) -> None:
    notifier = SystemdNotifier({})
    assert notifier.watchdog_interval is None
    notifier.ready("x")
    notifier.status("x")
    notifier.reloading()
    notifier.watchdog()
    notifier.stopping()
    assert caplog.records == []


def test_a_socket_that_is_gone_is_logged_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    with caplog.at_level(logging.WARNING, logger="orderwatch"):
        notifier.ready("x")
        notifier.status("y")
        notifier.stopping()
    assert [r.getMessage() for r in caplog.records] == [
        f"systemd: cannot notify {tmp_path / 'gone.sock'}: No such file or directory"
    ]


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "10000000"}, 5.0),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}, 5.0),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_the_watchdog_interval_is_half_of_watchdog_sec_and_only_for_this_process(
    environ: dict[str, str], interval: float | None
) -> None:
    assert SystemdNotifier(environ).watchdog_interval == interval


def test_watchdog_pings_go_out_at_most_once_per_interval(
    notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [100.0]
    monkeypatch.setattr(
        _systemd, "time", SimpleNamespace(monotonic=lambda: now[0], monotonic_ns=time.monotonic_ns)
    )
    notifier = SystemdNotifier(
        {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "2000000"}
    )
    assert notifier.watchdog_interval == 1.0
    notifier.watchdog()  # the first ping goes at once
    notifier.watchdog()
    now[0] += 0.85
    notifier.watchdog()  # still too early
    now[0] += 0.1
    notifier.watchdog()  # past 0.9 of the interval: due
    notifier.watchdog()
    assert notify_socket.drain() == ["WATCHDOG=1", "WATCHDOG=1"]
