"""The ack page in a real browser, end to end: the daemon sends a stuck alert to a receiver,
headless Chromium opens its link and clicks the button, and `orderwatch status` shows the
acknowledgement; a tampered link gets the 403 page. Also the CLI's acks and silences."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

from orderwatch._sandbox import Sandbox
from tests.conftest import Receiver, run_cli, sandbox_api, wait_until, write_config

OPEN_STATUSES = [
    "Created",
    "Payed",
    "ReadyForDelivery",
    "PartiallyDelivered",
    "AwaitingCertificateAssignment",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stuck_config(tmp_path: Path, sandbox: Sandbox, receiver: Receiver, port: int) -> Path:
    return write_config(
        tmp_path / "c.toml",
        api=sandbox_api(sandbox),
        poll={"interval": 0.5},
        state={"path": str(tmp_path / "s.db")},
        metrics={"listen": ""},
        web={
            "listen": f"127.0.0.1:{port}",
            "public_url": f"http://127.0.0.1:{port}",
            "secret": "a-long-enough-web-secret",
        },
        notify={
            "routes": [
                {"name": "ops", "urls": [receiver.url], "group_wait": 0, "digest_threshold": 100}
            ]
        },
        alerts={"stuck": [{"status": s, "after": 1, "repeat": 1} for s in OPEN_STATUSES]},
    )


def test_a_stuck_alert_s_link_acknowledges_in_a_real_browser(
    tmp_path: Path, sandbox: Sandbox, receiver: Receiver, daemon_factory: Any, browser: Any
) -> None:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def page_says(text: str) -> None:
        """Wait for the page (a new one after a form's POST) to show ``text``."""
        WebDriverWait(
            browser, 15, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
        ).until(lambda b: text in b.find_element(By.TAG_NAME, "body").text)

    port = free_port()
    config = stuck_config(tmp_path, sandbox, receiver, port)
    daemon = daemon_factory(config).start()

    def links() -> list[tuple[int, str]]:
        with receiver.lock:
            bodies = [
                (str(b.get("title")), str(b.get("message", b.get("body", ""))))
                for b in receiver.received
            ]
        found = []
        for title, body in bodies:
            match = re.search(r"(http://127\.0\.0\.1:\d+/ack/\S+)", body)
            number = re.search(r"#(\d+)", title)
            if match and number and "stuck" in title:
                found.append((int(number.group(1)), match.group(1)))
        return found

    wait_until(lambda: bool(links()), timeout=30, what="a stuck alert with an ack link")
    number, link = links()[0]
    browser.get(link)
    assert f"Order #{number} is stuck in" in browser.find_element(By.TAG_NAME, "h1").text
    browser.find_element(By.NAME, "by").send_keys("Anna")
    browser.find_element(By.NAME, "comment").send_keys("calling the supplier")
    browser.find_element(By.TAG_NAME, "button").click()
    page_says("Acknowledged by Anna")

    status = run_cli("status", "--config", str(config))
    assert re.search(
        rf"#{number}\s.*acknowledged by Anna \(\"calling the supplier\"\)", status.stdout
    ), status.stdout

    # The reminders of that order stop (repeat = 1 s); other orders keep being reminded.
    def reminders_of(n: int) -> int:
        return sum(1 for m, _ in links() if m == n)

    before = reminders_of(number)
    others_before = len(links()) - before
    wait_until(
        lambda: len(links()) - reminders_of(number) >= others_before + 2,
        timeout=20,
        what="other reminders",
    )
    assert reminders_of(number) <= before + 1  # at most one already in flight when acknowledged

    tampered = link[:-4] + ("AAAA" if not link.endswith("AAAA") else "BBBB")
    browser.get(tampered)
    assert browser.find_element(By.TAG_NAME, "h1").text == "This link is not valid"
    assert daemon.terminate() == 0


def test_silences_and_acks_round_trip_through_the_cli(
    tmp_path: Path, sandbox: Sandbox, receiver: Receiver, daemon_factory: Any
) -> None:
    """A silence on the route holds stuck alerts back (recorded, listed, counted); expiring it
    lets them through again; `ack` works on a known order."""
    config = stuck_config(tmp_path, sandbox, receiver, free_port())
    added = run_cli(
        "silence",
        "add",
        "--route",
        "ops",
        "--event",
        "stuck",
        "--for",
        "2h",
        "--comment",
        "maintenance",
        "--config",
        str(config),
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("silence 1: route=ops event=stuck until")
    listed = run_cli("silence", "list", "--config", str(config))
    assert "1    route=ops event=stuck until" in listed.stdout and '"maintenance"' in listed.stdout

    daemon = daemon_factory(config).start()
    wait_until(
        lambda: (
            "silenced" in run_cli("outbox", "list", "--silenced", "--config", str(config)).stdout
        ),
        timeout=30,
        what="a silenced delivery",
    )
    assert not any("stuck" in t for t in receiver.titles())
    assert "silence expired" not in daemon.log()
    expired = run_cli("silence", "expire", "1", "--config", str(config))
    assert expired.stdout.strip() == "silence 1 expired"
    wait_until(
        lambda: any("stuck" in t for t in receiver.titles()),
        timeout=20,
        what="stuck alerts after the silence",
    )
    assert daemon.terminate() == 0

    number = int(re.search(r"#(\d+)", next(t for t in receiver.titles() if "stuck" in t)).group(1))  # type: ignore[union-attr]
    acked = run_cli(
        "ack",
        str(number),
        "--for",
        "24h",
        "--by",
        "Boris",
        "--comment",
        "on it",
        "--config",
        str(config),
    )
    assert acked.returncode == 0, acked.stderr
    assert f'order #{number}: acknowledged by Boris ("on it")' in acked.stdout
    status = run_cli("status", "--config", str(config)).stdout
    assert "silences: 0 active" in status and re.search(r"silenced deliveries: [1-9]", status)
    assert f"#{number}" in status and "acknowledged by Boris" in status
    missing = run_cli("ack", "999999", "--config", str(config))
    assert missing.returncode == 1 and "no order #999999" in missing.stderr
