"""The state file under trouble: in use, corrupt, from the future, read-only, on a full disk.
Always a clear line naming the path and the cause, a non-zero exit where the daemon cannot go
on, and never a silent loss of pending deliveries."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from orderwatch._sandbox import Sandbox

from .conftest import Daemon, Receiver, run_cli, sandbox_api, wait_until, write_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def config(tmp_path: Path, sandbox: Sandbox, receiver: Receiver, state: Path) -> Path:
    return write_config(
        tmp_path / "orderwatch.toml",
        api=sandbox_api(sandbox),
        poll={"interval": 0.3},
        state={"path": str(state)},
        metrics={"listen": ""},
        notify={
            "routes": [
                {"name": "hook", "urls": [receiver.url], "group_wait": 0, "digest_threshold": 1000}
            ]
        },
    )


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real, size-limited filesystem (root can mount tmpfs here and in CI)."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        if os.environ.get("ORDERWATCH_REQUIRE_TOOLS"):
            pytest.fail(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the filesystem is full (raises OSError then)."""
    with path.open("wb") as handle:
        while True:
            handle.write(b"\0" * 65536)
            handle.flush()


def test_a_second_daemon_on_the_same_state_file_is_refused(
    tmp_path: Path, sandbox: Sandbox, receiver: Receiver, daemon_factory: Callable[[Path], Daemon]
) -> None:
    cfg = config(tmp_path, sandbox, receiver, tmp_path / "state.db")
    first = daemon_factory(cfg).start()
    wait_until(lambda: "first sync done" in first.log(), what="the first sync")
    second = run_cli("run", "--config", str(cfg))
    assert second.returncode == 1
    assert second.stderr.strip() == (
        f"orderwatch: state: {tmp_path / 'state.db'} is in use by another orderwatch "
        f"(pid {first.proc.pid}); two daemons on one state file would announce every change twice"  # type: ignore[union-attr]
    )
    assert first.terminate() == 0


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda p: p.write_bytes(b"not a database, just bytes " * 200),
            "cannot open {path}: file is not a database",
        ),
        (
            lambda p: sqlite3.connect(p).execute("PRAGMA user_version = 99").connection.commit(),
            "{path} was written by a newer orderwatch (schema 99, this one reads up to 3)",
        ),
    ],
    ids=["corrupt", "future"],
)
def test_an_unusable_state_file_stops_the_daemon_with_one_line(
    tmp_path: Path,
    sandbox: Sandbox,
    receiver: Receiver,
    damage: Callable[[Path], object],
    message: str,
) -> None:
    state = tmp_path / "state.db"
    damage(state)
    result = run_cli("run", "--config", str(config(tmp_path, sandbox, receiver, state)))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == "orderwatch: state: " + message.format(
        path=state
    )
    assert "Traceback" not in result.stderr
    checked = run_cli("state", "check", "--state", str(state))
    assert checked.returncode == 1
    assert str(state) in checked.stderr


def test_a_read_only_state_file_is_a_clear_error(
    tmp_path: Path, sandbox: Sandbox, receiver: Receiver
) -> None:
    with tmpfs(tmp_path / "ro", "1m") as mount:
        state = mount / "state.db"
        cfg = config(tmp_path, sandbox, receiver, state)
        assert run_cli("check-config", "--config", str(cfg)).returncode == 0
        sqlite3.connect(state).execute("CREATE TABLE x (y)").connection.close()
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        result = run_cli("run", "--config", str(cfg))
    assert result.returncode == 1
    assert result.stderr.strip().startswith("orderwatch: state: cannot open ")
    assert "read-only file system" in result.stderr.lower() or "readonly" in result.stderr.lower()
    assert "Traceback" not in result.stderr


def test_a_full_disk_stops_the_daemon_and_loses_no_pending_delivery(
    tmp_path: Path, sandbox: Sandbox, receiver: Receiver, daemon_factory: Callable[[Path], Daemon]
) -> None:
    with tmpfs(tmp_path / "small", "2m") as mount:
        state = mount / "state.db"
        cfg = config(tmp_path, sandbox, receiver, state)
        receiver.fail_with = 503
        daemon = daemon_factory(cfg).start()
        wait_until(lambda: "first sync done" in daemon.log(), what="the first sync")
        with sandbox.lock:
            pending = [sandbox.world.add_order().number for _ in range(3)]
        wait_until(lambda: "failed: " in daemon.log(), what="pending deliveries")
        filler = mount / "filler"
        with pytest.raises(OSError, match="No space left"):
            fill(filler)
        with sandbox.lock:
            for _ in range(40):
                sandbox.world.add_order()
        assert daemon.proc is not None
        assert daemon.proc.wait(timeout=30) == 1
        assert f"orderwatch: state: cannot write {state}: database or disk is full" in daemon.log()
        filler.unlink()
        receiver.fail_with = None
        daemon_factory(cfg).start()
        wait_until(
            lambda: all(f"Order #{n}: new order (Created)" in receiver.titles() for n in pending),
            timeout=40,
            what="the pending deliveries",
        )


def test_state_check_and_export(
    tmp_path: Path, sandbox: Sandbox, receiver: Receiver, daemon_factory: Callable[[Path], Daemon]
) -> None:
    state = tmp_path / "state.db"
    cfg = config(tmp_path, sandbox, receiver, state)
    daemon = daemon_factory(cfg).start()
    wait_until(lambda: "first sync done" in daemon.log(), what="the first sync")
    with sandbox.lock:
        moved = sandbox.world.open_ids[0]
        sandbox.world.set_status(moved, "Cancelled")
    number = sandbox.world.by_id[moved].number
    wait_until(
        lambda: any(t.startswith(f"Order #{number}:") for t in receiver.titles()), what="the change"
    )
    daemon.terminate()
    checked = run_cli("state", "check", "--config", str(cfg))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(f"state: {state} is sound: schema 3 (current 3), 50 orders")
    out = tmp_path / "export.jsonl"
    exported = run_cli("state", "export", "--config", str(cfg), "--output", str(out))
    assert exported.returncode == 0
    assert exported.stderr.strip() == "exported 50 orders"
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 50
    [record] = [r for r in records if r["number"] == number]
    assert record["status"] == "Cancelled"
    assert [(h["type"], h["status"]) for h in record["history"]] == [
        ("status_changed", "Cancelled")
    ]
    assert "sandbox-secret" not in out.read_text()
    to_stdout = run_cli("state", "export", "--state", str(state))
    assert len(to_stdout.stdout.splitlines()) == 50
