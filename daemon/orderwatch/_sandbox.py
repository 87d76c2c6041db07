"""A simulated Orders API on loopback, faithful to ``docs/orders-api.md``.

:class:`World` is the data and its lifecycle, deterministic for a seed: each :meth:`World.step`
may add new orders at the head, move open orders one step along the documented path
(Created → Payed → ReadyForDelivery → PartiallyDelivered | AwaitingCertificateAssignment →
Delivered) and cancel a few. :class:`Sandbox` serves it over HTTP: ``POST /connect/token``,
``GET /v1/orders?page=N`` (newest first, 20 a page, list key ``data`` or ``orders``) and
``GET /v1/orders/{id}/status``. Its ``history`` records every change, for tests to compare
with what was announced, and when it happened (``WorldChange.at``, by the world's clock).

:class:`ShopDay` is a world with a realistic day instead of steps: orders arrive at the head,
busier in working hours, and leave each status after a random time whose mean depends on the
status; a long tail of old orders stays open for days. It runs on its own clock, compressed
(``speed``) or simulated (a clock the caller moves), for the request-budget benchmark.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
import random
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final, Literal, Self
from urllib.parse import parse_qs, urlsplit

import httpx

from orderwatch._models import PAGE_SIZE

__all__ = ["DayPace", "Faults", "Sandbox", "SandboxApp", "ShopDay", "World", "WorldChange"]

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
class WorldChange:
    """One change in the sandbox's world (not a detected :class:`~orderwatch._detect.Change`):
    ``previous`` is None for a new order."""

    order_id: str
    number: int
    previous: str | None
    status: str
    at: float = field(default=0.0, compare=False)  # the world's clock when it happened


@dataclass(slots=True)
class World:
    """Orders, newest first, and a lifecycle that keeps them moving. Deterministic per seed."""

    seed: int = 1
    orders: int = 60
    open_orders: int = 12
    arrival_rate: float = 0.5  # mean new orders per step
    move_rate: float = 0.25  # chance an open order moves on in a step
    cancel_rate: float = 0.03  # chance an open order is cancelled in a step
    number_step: int = 1  # numbers grow by 1 to this many (orders of other accounts between)
    clock: Callable[[], float] = time.time  # stamps each change (``WorldChange.at``)
    rng: random.Random = field(init=False)
    newest_first: list[SandboxOrder] = field(init=False, default_factory=list)
    by_id: dict[str, SandboxOrder] = field(init=False, default_factory=dict)
    open_ids: list[str] = field(init=False, default_factory=list)
    history: list[WorldChange] = field(init=False, default_factory=list)
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
        self._next_number += 1 if self.number_step <= 1 else self.rng.randint(1, self.number_step)
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
        self.history.append(WorldChange(order.id, order.number, None, order.status, self.now()))
        return order

    def set_status(self, order_id: str, status: str) -> None:
        order = self.by_id[order_id]
        if order.status == status:
            return
        self.history.append(WorldChange(order.id, order.number, order.status, status, self.now()))
        order.status = status
        if status not in _NEXT and order_id in self.open_ids:
            self.open_ids.remove(order_id)
        elif status in _NEXT and order_id not in self.open_ids:
            self.open_ids.append(order_id)

    def now(self) -> float:
        """When a change made now happens (``WorldChange.at``)."""
        return self.clock()

    def step(self) -> list[WorldChange]:
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


_HOUR: Final = 3600.0
_DAY: Final = 24 * _HOUR


@dataclass(frozen=True, slots=True)
class DayPace:
    """How a simulated shop's day goes. Times in seconds of the shop's own clock."""

    arrivals_per_day: float = 2000.0
    working_hours: tuple[int, int] = (9, 18)  # arrivals are ``busy`` times as frequent then
    busy: float = 4.0
    dwell: tuple[tuple[str, float], ...] = (
        ("Created", 5 * 60.0),
        ("Payed", 30 * 60.0),
        ("ReadyForDelivery", 3 * _HOUR),
        ("PartiallyDelivered", 2 * _HOUR),
        ("AwaitingCertificateAssignment", 30 * _HOUR),
    )
    awaiting_share: float = 0.15  # of orders leaving ReadyForDelivery, the rest partially
    cancelled_share: float = 0.05  # of orders leaving Created
    old_open: int = 100  # the long tail: old orders awaiting certificates for days
    old_dwell: float = 5 * _DAY
    dwell_scale: float = 1.0  # every mean above (but the tail's) times this

    def mean_dwell(self, status: str) -> float:
        return dict(self.dwell)[status] * self.dwell_scale

    def arrival_rate(self, at: float) -> float:
        """Arrivals a second at shop time ``at`` (0 is a midnight)."""
        start, end = self.working_hours
        hours = end - start
        quiet = self.arrivals_per_day / (self.busy * hours + (24 - hours)) / _HOUR
        busy = start <= (at % _DAY) / _HOUR < end
        return quiet * self.busy if busy else quiet


@dataclass(slots=True)
class ShopDay(World):
    """A :class:`World` whose orders move on their own schedule, in shop time.

    Shop time is ``(clock() - start) * speed`` seconds; :meth:`step` (and :meth:`advance_to`)
    apply, in order, every arrival and exit due by then. Before shop time 0 (a midnight) the
    shop has run for ``warmup`` seconds, so that the open orders a day starts with are there.
    """

    pace: DayPace = field(default_factory=DayPace)
    speed: float = 1.0
    start: float = 0.0
    warmup: float = _DAY
    shop_time: float = field(init=False, default=0.0)
    _due: list[tuple[float, int, str, str]] = field(init=False, default_factory=list)
    _sequence: int = field(init=False, default=0)
    _next_arrival: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.open_orders = 0
        self.arrival_rate = self.move_rate = self.cancel_rate = 0.0
        World.__post_init__(self)
        tail = self.rng.sample(self.newest_first, min(self.pace.old_open, len(self.newest_first)))
        for order in tail:
            self.set_status(order.id, "AwaitingCertificateAssignment")
            self._schedule(order.id, 0.0, self.pace.old_dwell, "Delivered")
        self.shop_time = -self.warmup
        self._next_arrival = self._arrival_after(self.shop_time)
        self.advance_to(0.0)
        self.history.clear()

    def _schedule(self, order_id: str, now: float, mean: float, status: str) -> None:
        self._sequence += 1
        heapq.heappush(self._due, (now + self.rng.expovariate(1 / mean), self._sequence,
                                   order_id, status))  # fmt: skip

    def _arrival_after(self, now: float) -> float:
        """The next arrival, by thinning: candidates at the busiest rate, kept in proportion."""
        top = self.pace.arrival_rate(self.pace.working_hours[0] * _HOUR)
        while True:
            now += self.rng.expovariate(top)
            if self.rng.random() * top <= self.pace.arrival_rate(now):
                return now

    def _next_status(self, status: str) -> str:
        if status == "Created" and self.rng.random() < self.pace.cancelled_share:
            return "Cancelled"
        if status == "ReadyForDelivery":
            awaiting = self.rng.random() < self.pace.awaiting_share
            return "AwaitingCertificateAssignment" if awaiting else "PartiallyDelivered"
        return _NEXT[status][0]

    def _enter(self, order_id: str, status: str, now: float) -> None:
        if status in _NEXT:
            mean = self.pace.mean_dwell(status)
            self._schedule(order_id, now, mean, self._next_status(status))

    def add_order(self, status: str = "Created") -> SandboxOrder:
        """A new order at the head, now; it leaves its status on the day's schedule, whether
        it arrived on that schedule or was added (the ``shift`` fault, a test)."""
        order = World.add_order(self, status)
        self._enter(order.id, order.status, self.shop_time)
        return order

    def now(self) -> float:
        """The moment, by the clock, of the arrival or exit being applied: a change happens
        when it is due, even if the world catches up with it later."""
        return self.start + self.shop_time / self.speed

    def advance_to(self, until: float) -> list[WorldChange]:
        """Apply everything due by shop time ``until``; returns what changed."""
        first = len(self.history)
        while True:
            due = self._due[0][0] if self._due else math.inf
            if min(due, self._next_arrival) > until:
                break
            if self._next_arrival <= due:
                self.shop_time = self._next_arrival
                self.add_order()
                self._next_arrival = self._arrival_after(self.shop_time)
            else:
                self.shop_time, _, order_id, status = heapq.heappop(self._due)
                self.set_status(order_id, status)
                self._enter(order_id, status, self.shop_time)
        self.shop_time = max(self.shop_time, until)
        return self.history[first:]

    def step(self) -> list[WorldChange]:
        """Catch up with the clock."""
        return self.advance_to((self.clock() - self.start) * self.speed)


@dataclass(slots=True)
class Faults:
    """What the sandbox does wrong on purpose, each as a share of requests (0 to 1)."""

    errors: float = 0.0  # answered 500, 502 or 503
    resets: float = 0.0  # the connection is closed without an answer
    truncated: float = 0.0  # a 200 whose JSON body is cut short
    slow: float = 0.0  # answered only after ``slow_seconds`` (past the client's timeout)
    slow_seconds: float = 0.0
    rate_limited: float = 0.0  # 429 with ``Retry-After: retry_after``
    retry_after: int = 1
    token_errors: float = 0.0  # the token endpoint answers 503
    shift: int = 0  # new orders land at the head before every list request
    duplicates: float = 0.0  # a page repeats an order of the page before it
    wrong_types: float = 0.0  # number and total as strings, total like "2200.00"
    missing: float = 0.0  # an item loses a field or has nulls
    old_spelling: bool = False  # "Canceled", as an older docs version spells it
    trailing_comma: bool = False  # the docs' status body: {"status": "Created",}
    alternate_keys: bool = False  # the list under "data" and "orders" by turns


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer: a status code, a body (bytes) and headers; ``reset`` drops the connection."""

    code: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    reset: bool = False
    delay: float = 0.0


def _json(code: int, body: object, *headers: tuple[str, str]) -> Reply:
    return Reply(code, json.dumps(body).encode(), (("Content-Type", "application/json"), *headers))


class SandboxApp:
    """The simulated API's behaviour, transport-free: :meth:`handle` turns a request into a
    :class:`Reply`. Thread-safe. :class:`Sandbox` serves it over HTTP; :meth:`mock_transport`
    serves it to an ``httpx`` client in-process."""

    def __init__(
        self,
        world: World | None = None,
        *,
        list_key: str = "data",
        token_lifetime: float = 3600.0,
        client_id: str = "sandbox",
        client_secret: str = "sandbox-secret",  # noqa: S107 - the sandbox's public demo secret
        faults: Faults | None = None,
        fault_seed: int = 0,
        etags: bool = True,
        credentials_error: Literal["invalid_request", "invalid_client"] = "invalid_request",
    ) -> None:
        self.world = world or World()
        self.etags = etags  # answer If-None-Match with 304, as an API with ETags would
        self.list_key = list_key
        self.token_lifetime = token_lifetime
        self.client_id, self.client_secret = client_id, client_secret
        # Bad credentials: the API's documented 400 invalid_request, or OAuth2's 401
        # invalid_client (docs/orders-api.md: either may come).
        self.credentials_error = credentials_error
        self.faults = faults or Faults()
        self.lock = threading.RLock()
        self.requests: Counter[str] = Counter()
        self.replies: Counter[str] = Counter()  # "endpoint code", for tests and reports
        self.status_requests: list[str] = []
        self.forced: list[int] = []  # HTTP codes to answer the next requests with (faults)
        self.before_list: list[object] = []  # callables run before each list request (tests)
        self._tokens: dict[str, float] = {}
        self._fault_rng = random.Random(fault_seed)  # noqa: S311 - simulation
        self._list_turn = 0

    def issue_token(self) -> str:
        token = secrets.token_urlsafe(24)
        self._tokens[token] = time.monotonic() + self.token_lifetime
        return token

    def rotate_secret(self, secret: str) -> None:
        """Accept only ``secret`` from now on and revoke every token issued, as rotating a
        client secret does."""
        with self.lock:
            self.client_secret = secret
            self._tokens.clear()

    def token_valid(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        expires = self._tokens.get(header.removeprefix("Bearer "))
        return expires is not None and time.monotonic() < expires

    def _roll(self, share: float) -> bool:
        return share > 0 and self._fault_rng.random() < share

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        """Answer one request. ``headers`` keys are lower-case."""
        parts = urlsplit(target)
        segments = [s for s in parts.path.split("/") if s]
        if method == "POST" and parts.path == "/connect/token":
            endpoint = "token"
        elif method == "GET" and segments == ["v1", "orders"]:
            endpoint = "list"
        elif (
            method == "GET"
            and len(segments) == 4
            and segments[:2] == ["v1", "orders"]
            and segments[3] == "status"
        ):
            endpoint = "status"
        else:
            return _json(404, {"error": "not found"})
        with self.lock:
            self.requests[endpoint] += 1
            reply = self._fault(endpoint) or self._answer(
                endpoint, segments, parts.query, headers, body
            )
            self.replies[f"{endpoint} {'reset' if reply.reset else reply.code}"] += 1
        return reply

    def _fault(self, endpoint: str) -> Reply | None:
        if self.forced:
            code = self.forced.pop(0)
            extra = (("Retry-After", "1"),) if code == 429 else ()
            return _json(code, {"error": "injected fault"}, *extra)
        f = self.faults
        if endpoint == "token" and self._roll(f.token_errors):
            return _json(503, {"error": "temporarily_unavailable"})
        if self._roll(f.resets):
            return Reply(0, reset=True)
        if self._roll(f.errors):
            return _json(self._fault_rng.choice((500, 502, 503)), {"error": "injected fault"})
        if self._roll(f.rate_limited):
            return _json(429, {"error": "too many requests"}, ("Retry-After", str(f.retry_after)))
        return None

    def _answer(
        self, endpoint: str, segments: list[str], query: str, headers: dict[str, str], body: bytes
    ) -> Reply:
        if endpoint == "token":
            form = parse_qs(body.decode(errors="replace"))
            ok = (
                form.get("grant_type") == ["client_credentials"]
                and form.get("client_id") == [self.client_id]
                and form.get("client_secret") == [self.client_secret]
            )
            if not ok:
                code = 401 if self.credentials_error == "invalid_client" else 400
                return _json(code, {"error": self.credentials_error})
            return _json(
                200,
                {
                    "access_token": self.issue_token(),
                    "expires_in": int(self.token_lifetime) or 1,
                    "token_type": "Bearer",
                    "scope": "external-api",
                },
            )
        if not self.token_valid(headers.get("authorization")):
            return _json(401, {"error": "invalid_token"})
        reply = self._list(query) if endpoint == "list" else self._status(segments[2].lower())
        if reply.code == 200 and self.etags:
            tag = '"' + hashlib.sha256(reply.body).hexdigest()[:20] + '"'
            if headers.get("if-none-match") == tag:
                return Reply(304, b"", (("ETag", tag),))
            reply = Reply(200, reply.body, (*reply.headers, ("ETag", tag)))
        delay = self.faults.slow_seconds if self._roll(self.faults.slow) else 0.0
        if reply.code == 200 and self._roll(self.faults.truncated):
            self.replies[f"{endpoint} truncated"] += 1
            reply = Reply(200, reply.body[: len(reply.body) // 2], reply.headers)
        return Reply(reply.code, reply.body, reply.headers, delay=delay)

    def _list(self, query: str) -> Reply:
        for hook in self.before_list:
            hook()  # type: ignore[operator]
        for _ in range(self.faults.shift):
            self.world.add_order()
        raw = (parse_qs(query).get("page") or ["1"])[0]
        page = int(raw) if raw.isdigit() and int(raw) > 0 else 1
        orders, total_pages = self.world.page(page)
        items = [self._present(order.as_json()) for order in orders]
        if page > 1 and items and self._roll(self.faults.duplicates):
            previous, _ = self.world.page(page - 1)
            if previous:
                items.insert(0, self._present(previous[-1].as_json()))
        key = self.list_key
        if self.faults.alternate_keys:
            self._list_turn += 1
            key = ("data", "orders")[self._list_turn % 2]
        return _json(
            200, {key: items, "totalPages": total_pages, "currentPage": page, "pageSize": PAGE_SIZE}
        )

    def _present(self, item: dict[str, object]) -> dict[str, object]:
        f = self.faults
        if f.old_spelling and item["status"] == "Cancelled":
            item["status"] = "Canceled"
        if self._roll(f.wrong_types):
            item["number"] = str(item["number"])
            item["total"] = self._fault_rng.choice((str(item["total"]), f"{item['total']}.00"))
        if self._roll(f.missing):
            damage = self._fault_rng.choice(("status", "id", "number", "total", "createdDate"))
            if self._fault_rng.random() < 0.5:
                item.pop(damage, None)
            else:
                item[damage] = None
        return item

    def _status(self, order_id: str) -> Reply:
        self.status_requests.append(order_id)
        order = self.world.by_id.get(order_id)
        if order is None:
            return _json(404, {"error": "not found"})
        status = order.status
        if self.faults.old_spelling and status == "Cancelled":
            status = "Canceled"
        if self.faults.trailing_comma:
            body = ('{"status": "' + status + '",}').encode()
            return Reply(200, body, (("Content-Type", "application/json"),))
        return _json(200, {"status": status})

    def mock_transport(self) -> httpx.MockTransport:
        """This app as an ``httpx`` transport: no sockets, no threads (for property tests)."""

        def handler(request: httpx.Request) -> httpx.Response:
            headers = {k.lower(): v for k, v in request.headers.items()}
            target = request.url.raw_path.decode()
            reply = self.handle(request.method, target, headers, request.content)
            if reply.reset:
                raise httpx.RemoteProtocolError("connection reset", request=request)
            if reply.delay:
                raise httpx.ReadTimeout("slow", request=request)
            return httpx.Response(reply.code, content=reply.body, headers=list(reply.headers))

        return httpx.MockTransport(handler)


class Sandbox(SandboxApp):
    """Serves a :class:`World` over HTTP on loopback until :meth:`stop`."""

    def __init__(
        self,
        world: World | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        **options: object,
    ) -> None:
        super().__init__(world, **options)  # type: ignore[arg-type]
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

    def stop_ticking(self) -> None:
        self._stopping.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)

    def step(self, times: int = 1) -> list[WorldChange]:
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


def _handler_for(app: SandboxApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out as two writes; without this, Nagle's algorithm and the
        # client's delayed ACK add some 40 ms to every keep-alive request.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """Quiet: the daemon's own logs tell the story."""

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = app.handle(self.command, self.path, headers, body)
            if reply.reset:
                self.close_connection = True
                return
            if reply.delay:
                time.sleep(reply.delay)
            self.send_response(reply.code)
            for name, value in reply.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        do_GET = _serve  # noqa: N815 - http.server's naming
        do_POST = _serve  # noqa: N815

    return Handler
