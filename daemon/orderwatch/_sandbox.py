"""A simulated Orders API on loopback, faithful to ``shared/orders-api.md``.

:class:`World` is the data and its lifecycle, deterministic for a seed: each :meth:`World.step`
may add new orders at the head, move open orders one step along the documented path
(Created → Payed → ReadyForDelivery → PartiallyDelivered | AwaitingCertificateAssignment →
Delivered) and cancel a few. :class:`Sandbox` serves it over HTTP: ``POST /connect/token``,
``GET /v1/orders?page=N`` (newest first, 20 a page, list key ``data`` or ``orders``) and
``GET /v1/orders/{id}/status``. Its ``history`` records every change, for tests to compare
with what was announced.
"""

from __future__ import annotations

import json
import random
import secrets
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final, Self
from urllib.parse import parse_qs, urlsplit

from orderwatch._models import PAGE_SIZE

__all__ = ["Change", "Sandbox", "SandboxOrder", "World"]

_NEXT: Final = {
    "Created": ("Payed",),
    "Payed": ("ReadyForDelivery",),
    "ReadyForDelivery": ("PartiallyDelivered", "AwaitingCertificateAssignment"),
    "PartiallyDelivered": ("Delivered",),
    "AwaitingCertificateAssignment": ("Delivered",),
}
_EPOCH: Final = datetime(2026, 1, 5, 9, 0, 0)  # noqa: DTZ001 - the API sends naive times


@dataclass(slots=True)
class SandboxOrder:
    id: str
    number: int
    status: str
    created_date: str
    participant_login: str
    total: int

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "number": self.number,
            "createdDate": self.created_date,
            "status": self.status,
            "participantLogin": self.participant_login,
            "total": self.total,
        }


@dataclass(frozen=True, slots=True)
class Change:
    """One change in the world: ``previous`` is None for a new order."""

    order_id: str
    number: int
    previous: str | None
    status: str


@dataclass(slots=True)
class World:
    """Orders, newest first, and a lifecycle that keeps them moving. Deterministic per seed."""

    seed: int = 1
    orders: int = 60
    open_orders: int = 12
    arrival_rate: float = 0.5  # mean new orders per step
    move_rate: float = 0.25  # chance an open order moves on in a step
    cancel_rate: float = 0.03  # chance an open order is cancelled in a step
    rng: random.Random = field(init=False)
    newest_first: list[SandboxOrder] = field(init=False, default_factory=list)
    by_id: dict[str, SandboxOrder] = field(init=False, default_factory=dict)
    open_ids: list[str] = field(init=False, default_factory=list)
    history: list[Change] = field(init=False, default_factory=list)
    _next_number: int = field(init=False, default=3000)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)  # noqa: S311 - simulation, not cryptography
        oldest_first = [self._make_order() for _ in range(self.orders)]
        for age, order in enumerate(reversed(oldest_first)):
            if age < self.open_orders:
                order.status = self.rng.choice(list(_NEXT))
            else:
                order.status = "Cancelled" if self.rng.random() < 0.1 else "Delivered"
        self.newest_first = list(reversed(oldest_first))
        self.by_id = {order.id: order for order in self.newest_first}
        self.open_ids = [o.id for o in self.newest_first if o.status in _NEXT]

    def _make_order(self) -> SandboxOrder:
        number = self._next_number
        self._next_number += 1
        created = _EPOCH + timedelta(minutes=7 * (number - 3000), microseconds=number * 137)
        return SandboxOrder(
            id=str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            number=number,
            status="Created",
            created_date=created.isoformat(),
            participant_login=f"user{number % 97}@example.test_company",
            total=self.rng.choice((500, 1000, 1500, 2200, 3000, 5000)),
        )

    def add_order(self, status: str = "Created") -> SandboxOrder:
        order = self._make_order()
        order.status = status
        self.newest_first.insert(0, order)
        self.by_id[order.id] = order
        if order.status in _NEXT:
            self.open_ids.append(order.id)
        self.history.append(Change(order.id, order.number, None, order.status))
        return order

    def set_status(self, order_id: str, status: str) -> None:
        order = self.by_id[order_id]
        if order.status == status:
            return
        self.history.append(Change(order.id, order.number, order.status, status))
        order.status = status
        if status not in _NEXT and order_id in self.open_ids:
            self.open_ids.remove(order_id)
        elif status in _NEXT and order_id not in self.open_ids:
            self.open_ids.append(order_id)

    def step(self) -> list[Change]:
        """One tick of the lifecycle; returns what changed."""
        start = len(self.history)
        for order_id in list(self.open_ids):
            roll = self.rng.random()
            if roll < self.cancel_rate:
                self.set_status(order_id, "Cancelled")
            elif roll < self.cancel_rate + self.move_rate:
                self.set_status(order_id, self.rng.choice(_NEXT[self.by_id[order_id].status]))
        arrivals = int(self.arrival_rate) + (self.rng.random() < self.arrival_rate % 1)
        for _ in range(arrivals):
            self.add_order()
        return self.history[start:]

    def page(self, number: int) -> tuple[list[SandboxOrder], int]:
        total_pages = max(1, -(-len(self.newest_first) // PAGE_SIZE))
        start = (number - 1) * PAGE_SIZE
        return self.newest_first[start : start + PAGE_SIZE], total_pages


class Sandbox:
    """Serves a :class:`World` over HTTP on loopback until :meth:`stop`. Thread-safe."""

    def __init__(
        self,
        world: World | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        list_key: str = "data",
        token_lifetime: float = 3600.0,
        client_id: str = "sandbox",
        client_secret: str = "sandbox-secret",  # noqa: S107 - the sandbox's public demo secret
    ) -> None:
        self.world = world or World()
        self.list_key = list_key
        self.token_lifetime = token_lifetime
        self.client_id, self.client_secret = client_id, client_secret
        self.lock = threading.RLock()
        self.requests: Counter[str] = Counter()
        self.status_requests: list[str] = []
        self.forced: list[int] = []  # HTTP codes to answer the next requests with (faults)
        self._tokens: dict[str, float] = {}
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._ticker: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        host, port = str(self._server.server_address[0]), self._server.server_address[1]
        return f"http://{host}:{port}"

    def start(self) -> Sandbox:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="sandbox", daemon=True
        )
        self._thread.start()
        return self

    def tick_every(self, seconds: float) -> None:
        """Step the world every ``seconds`` in a background thread."""

        def tick() -> None:
            while not self._stopping.wait(seconds):
                with self.lock:
                    self.world.step()

        self._ticker = threading.Thread(target=tick, name="sandbox-ticker", daemon=True)
        self._ticker.start()

    def step(self, times: int = 1) -> list[Change]:
        with self.lock:
            return [change for _ in range(times) for change in self.world.step()]

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def issue_token(self) -> str:
        token = secrets.token_urlsafe(24)
        self._tokens[token] = time.monotonic() + self.token_lifetime
        return token

    def token_valid(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        expires = self._tokens.get(header.removeprefix("Bearer "))
        return expires is not None and time.monotonic() < expires


def _handler_for(sandbox: Sandbox) -> type[BaseHTTPRequestHandler]:  # noqa: C901 - one closure
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """Quiet: the daemon's own logs tell the story."""

        def _reply(self, code: int, body: object, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _forced(self) -> bool:
            with sandbox.lock:
                code = sandbox.forced.pop(0) if sandbox.forced else None
            if code is None:
                return False
            self._reply(
                code, {"error": "injected fault"}, {"Retry-After": "1"} if code == 429 else None
            )
            return True

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            if urlsplit(self.path).path != "/connect/token":
                self._reply(404, {"error": "not found"})
                return
            sandbox.requests["token"] += 1
            if self._forced():
                return
            ok = (
                form.get("grant_type") == ["client_credentials"]
                and form.get("client_id") == [sandbox.client_id]
                and form.get("client_secret") == [sandbox.client_secret]
            )
            if not ok:
                self._reply(400, {"error": "invalid_request"})
                return
            with sandbox.lock:
                token = sandbox.issue_token()
            self._reply(
                200,
                {
                    "access_token": token,
                    "expires_in": int(sandbox.token_lifetime),
                    "token_type": "Bearer",
                    "scope": "external-api",
                },
            )

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            segments = [s for s in parts.path.split("/") if s]
            endpoint = "list" if segments == ["v1", "orders"] else "status"
            if endpoint == "status" and (len(segments) != 4 or segments[3] != "status"):
                self._reply(404, {"error": "not found"})
                return
            sandbox.requests[endpoint] += 1
            if self._forced():
                return
            with sandbox.lock:
                authorized = sandbox.token_valid(self.headers.get("Authorization"))
            if not authorized:
                self._reply(401, {"error": "invalid_token"})
                return
            if endpoint == "list":
                self._list(parse_qs(parts.query))
            else:
                self._status(segments[2].lower())

        def _list(self, query: dict[str, list[str]]) -> None:
            raw = (query.get("page") or ["1"])[0]
            page = int(raw) if raw.isdigit() and int(raw) > 0 else 1
            with sandbox.lock:
                orders, total_pages = sandbox.world.page(page)
                items = [order.as_json() for order in orders]
            self._reply(
                200,
                {
                    sandbox.list_key: items,
                    "totalPages": total_pages,
                    "currentPage": page,
                    "pageSize": PAGE_SIZE,
                },
            )

        def _status(self, order_id: str) -> None:
            with sandbox.lock:
                sandbox.status_requests.append(order_id)
                order = sandbox.world.by_id.get(order_id)
                status = order.status if order else None
            if status is None:
                self._reply(404, {"error": "not found"})
            else:
                self._reply(200, {"status": status})

    return Handler
