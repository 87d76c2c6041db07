"""Shared fixtures: the sandbox API and an HTTP receiver on loopback, and a daemon runner."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import settings

from orderwatch._sandbox import Sandbox, World

# A shared, noisy machine: no per-example deadline; a fixed seed keeps CI reproducible.
settings.register_profile("orderwatch", deadline=None, derandomize=True, max_examples=150)
settings.load_profile("orderwatch")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(World(seed=7, orders=50, open_orders=8)) as running:
        yield running


@dataclass
class Receiver:
    """An HTTP endpoint that records JSON bodies; ``fail_with`` makes it answer an error."""

    server: ThreadingHTTPServer
    received: list[dict[str, Any]] = field(default_factory=list)
    fail_with: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server.server_address[1]}/hook"

    def titles(self) -> list[str]:
        with self.lock:
            return [str(body.get("title")) for body in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            rec = holder["r"]
            code = rec.fail_with or 200
            if code == 200:
                with rec.lock:
                    rec.received.append(json.loads(body))
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    holder["r"] = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield holder["r"]
    server.shutdown()
    server.server_close()


SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # a made-up Standard Webhooks secret


@dataclass
class HookReceiver:
    """Records webhook POSTs (headers and body). ``answer`` is the status it replies;
    ``fail_share`` makes it answer 503 to that share of posts at random."""

    server: ThreadingHTTPServer
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answer: int = 204
    fail_share: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    rng: random.Random = field(default_factory=lambda: random.Random(3))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/orders"

    def accepted(self) -> list[dict[str, object]]:
        """Bodies of the accepted posts, each verified with the reference library."""
        from standardwebhooks import Webhook

        with self.lock:
            return [Webhook(SECRET).verify(body, headers) for headers, body in self.posts]

    def delivered(self) -> list[tuple[str, dict[str, object]]]:
        """``(webhook-id, verified body)`` of every accepted post."""
        with self.lock:
            posts = list(self.posts)
        from standardwebhooks import Webhook

        return [(h["webhook-id"], Webhook(SECRET).verify(b, h)) for h, b in posts]


@pytest.fixture
def hooks() -> Iterator[HookReceiver]:
    holder: dict[str, HookReceiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            receiver = holder["r"]
            with receiver.lock:
                code = receiver.answer
                if len(body) < length:
                    code = 400  # the sender died mid-post (kill -9): a receiver takes no half body
                elif code < 300 and receiver.rng.random() < receiver.fail_share:
                    code = 503
                if code < 300:
                    receiver.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    holder["r"] = HookReceiver(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield holder["r"]
    server.shutdown()
    server.server_close()


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    """Poll ``predicate`` until it holds or ``timeout`` passes (then fail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """In async tests: poll ``predicate`` until it holds; fail after ``timeout`` seconds."""
    with anyio.move_on_after(timeout):
        while not predicate():
            await anyio.sleep(0.05)
        return
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def sandbox_api(sandbox: Sandbox, **extra: object) -> dict[str, object]:
    """The ``[api]`` section for ``sandbox``: its URL and credentials, a generous budget."""
    return {
        "base_url": sandbox.url,
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "max_rps": 200.0,
        **extra,
    }


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``orderwatch ARGS`` in a subprocess, without the caller's ORDERWATCH_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERWATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "orderwatch", *args],
        capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )  # fmt: skip


def tool(name: str, package: str) -> str:
    """The path of an external checker; skipped with a reason where it is not installed,
    failed instead under CI (``ORDERWATCH_REQUIRE_TOOLS=1``, set by ``.ci/run``)."""
    import shutil

    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found:
        return found
    if os.environ.get("ORDERWATCH_REQUIRE_TOOLS"):
        pytest.fail(f"{name} is required (ORDERWATCH_REQUIRE_TOOLS is set) but not installed")
    pytest.skip(f"{name} is not installed (apt-get install {package}); .ci/run installs it")


def write_config(path: Path, **sections: dict[str, Any]) -> Path:
    """Write a TOML config from nested dicts (values: str, bool, number, list of str); a list of
    dicts (``notify={"routes": [...], "webhooks": [...]}``, ``alerts={"stuck": [...]}``) becomes
    an array of tables."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v))

    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for name, keys in sections.items():
        lines.append(f"[{name}]")
        for key, v in keys.items():
            if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                tables.extend((f"{name}.{key}", table) for table in v)
            else:
                lines.append(f"{key} = {value(v)}")
    for name, table in tables:
        lines.append(f"[[{name}]]")
        lines.extend(f"{k} = {value(v)}" for k, v in table.items())
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Daemon:
    """``orderwatch run`` as a subprocess, its stderr collected in a file."""

    config: Path
    log_path: Path
    args: tuple[str, ...] = ()
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERWATCH_")}
        env.update(self.extra_env)
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "orderwatch",
                    "run",
                    "--config",
                    str(self.config),
                    *self.args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def terminate(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def stop_quietly(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Callable[[Path], Daemon]]:
    started: list[Daemon] = []

    def make(config: Path) -> Daemon:
        daemon = Daemon(config=config, log_path=tmp_path / "daemon.log")
        started.append(daemon)
        return daemon

    yield make
    for daemon in started:
        daemon.stop_quietly()


CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by Selenium.

    Nothing downloads a browser: the driver is named explicitly, and Selenium Manager is told
    to stay offline. Skipped with a reason where they are missing, failed under CI."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(path).exists():
            tool(path, package)  # skips, or fails under ORDERWATCH_REQUIRE_TOOLS
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        if os.environ.get("ORDERWATCH_REQUIRE_TOOLS"):
            pytest.fail("selenium is required (ORDERWATCH_REQUIRE_TOOLS is set) but not installed")
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a driver or browser
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


class NotifySocket:
    """A datagram socket playing systemd's part: collects what the daemon says."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except (TimeoutError, BlockingIOError):
                return self.messages

    def said(self, fragment: str) -> bool:
        return any(fragment in m for m in self.drain())


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.sock.close()


DEFAULT_TEST_DATABASE = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_server() -> str:
    """The URL of the test PostgreSQL server (``ORDERWATCH_TEST_DATABASE_URL``); skipped with a
    reason where none is reachable, failed instead under CI (``ORDERWATCH_REQUIRE_POSTGRES=1``,
    set by ``.ci/run``)."""
    url = os.environ.get("ORDERWATCH_TEST_DATABASE_URL", DEFAULT_TEST_DATABASE)
    try:
        import psycopg
    except ImportError:
        reason = "psycopg is not installed (pip install -e '.[test]')"
    else:
        try:
            psycopg.connect(url, connect_timeout=3).close()
        except psycopg.Error as error:
            reason = f"no PostgreSQL reachable at ORDERWATCH_TEST_DATABASE_URL: {str(error).splitlines()[0]}"
        else:
            return url
    if os.environ.get("ORDERWATCH_REQUIRE_POSTGRES"):
        pytest.fail(f"{reason} (ORDERWATCH_REQUIRE_POSTGRES is set)")
    pytest.skip(reason)


def with_search_path(url: str, schema: str) -> str:
    """``url`` whose sessions work in ``schema`` (libpq's ``options`` parameter)."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL of the test server whose sessions work in a fresh schema of their own, dropped
    after the test."""
    import uuid

    import psycopg

    server = postgres_server()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    yield with_search_path(server, schema)
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")


def round_trips(store: object) -> list[bool]:
    """From now on, note for every database round trip of ``store`` (a PostgreSQL one) whether
    it ran on this thread, the event loop's: ``True`` entries are round trips that blocked it."""
    loop = threading.current_thread()
    connect = store._db  # type: ignore[attr-defined]
    noted: list[bool] = []

    def noting() -> object:
        noted.append(threading.current_thread() is loop)
        return connect()

    store._db = noting  # type: ignore[attr-defined]
    return noted
