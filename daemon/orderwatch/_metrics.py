"""Prometheus metrics, built on a registry passed in, and the HTTP listener that serves them.

Names are a contract (dashboards and alerts are written against them):
``orderwatch_orders{status}``, ``orderwatch_transitions_total{from_status,to_status}``,
``orderwatch_poll_cycles_total``, ``orderwatch_api_requests_total{endpoint,code}``,
``orderwatch_last_successful_poll_timestamp_seconds``,
``orderwatch_malformed_responses_total{endpoint}``, ``orderwatch_malformed_orders_total``,
``orderwatch_notifications_total{route,outcome}``, ``orderwatch_notification_queue{state}``,
``orderwatch_notification_latency_seconds``,
``orderwatch_oldest_open_order_age_seconds{status}``,
``orderwatch_status_duration_seconds{status}``,
``orderwatch_api_request_duration_seconds{endpoint}``, ``orderwatch_poll_cycle_duration_seconds``,
``orderwatch_poll_requests``, ``orderwatch_build_info{version}``, ``orderwatch_lifecycle``,
``orderwatch_list_rereads_total``, ``orderwatch_status_exit_rate_per_hour{status}``,
``orderwatch_poll_budget``, ``orderwatch_expected_notification_delay_seconds``,
``orderwatch_poll_budget_floor_wins_total``, ``orderwatch_leader``,
``orderwatch_leader_changes_total``.
No metric carries a per-order label. ``/healthz`` is served beside ``/metrics``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    disable_created_metrics,
    make_wsgi_app,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from orderwatch._exceptions import OrderwatchError
from orderwatch._models import KNOWN_STATUSES, OPEN_STATUSES
from orderwatch._version import __version__

__all__ = ["Health", "Listener", "Metrics", "MetricsServer"]

disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series only double the scrape; nothing here reads them

LIFECYCLE_STATES = ("starting", "syncing", "running", "stopping")
_MINUTE, _HOUR, _DAY = 60.0, 3600.0, 86400.0
_STATUS_BUCKETS = (
    _MINUTE, 5 * _MINUTE, 15 * _MINUTE, 30 * _MINUTE, _HOUR, 3 * _HOUR, 6 * _HOUR, 12 * _HOUR,
    _DAY, 2 * _DAY, 4 * _DAY, 7 * _DAY, 14 * _DAY,
)  # fmt: skip
_REQUEST_BUCKETS = (1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class _OldestOpenOrder(Collector):
    """Age at scrape time of the longest-waiting open order in each status."""

    def __init__(self) -> None:
        self.since: dict[str, float] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "orderwatch_oldest_open_order_age_seconds",
            "Seconds the longest-waiting open order has been in each status (as orderwatch saw).",
            labels=["status"],
        )
        now = time.time()
        since = dict(self.since)
        for status in (*OPEN_STATUSES, *sorted(set(since) - set(OPEN_STATUSES))):
            started = since.get(status)
            family.add_metric([status], 0.0 if started is None else max(now - started, 0.0))
        yield family


class Metrics:
    """Every metric orderwatch exports, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.orders = Gauge(
            "orderwatch_orders", "Known orders in each status.", ["status"], registry=r
        )
        self.transitions = Counter(
            "orderwatch_transitions",
            "Status transitions observed.",
            ["from_status", "to_status"],
            registry=r,
        )
        self.poll_cycles = Counter(
            "orderwatch_poll_cycles", "Poll cycles finished (successfully or not).", registry=r
        )
        self.api_requests = Counter(
            "orderwatch_api_requests",
            "Requests to the Orders API by endpoint and HTTP code (timeout/error: no response).",
            ["endpoint", "code"],
            registry=r,
        )
        self.malformed_responses = Counter(
            "orderwatch_malformed_responses",
            "Answers of the Orders API whose body could not be read (not JSON, wrong shape).",
            ["endpoint"],
            registry=r,
        )
        self.malformed_orders = Counter(
            "orderwatch_malformed_orders",
            "Orders in list pages skipped for lack of a usable id, number or status.",
            registry=r,
        )
        self.list_rereads = Counter(
            "orderwatch_list_rereads",
            "List pages read again (or page 1 probed) to prove a walk missed no order.",
            registry=r,
        )
        self.exit_rate = Gauge(
            "orderwatch_status_exit_rate_per_hour",
            "Learned rate at which an order leaves each status, per hour (with poll.budget).",
            ["status"],
            registry=r,
        )
        self.poll_budget = Gauge(
            "orderwatch_poll_budget",
            "Requests an hour orderwatch may spend on the Orders API (poll.budget; 0: none).",
            registry=r,
        )
        self.expected_delay = Gauge(
            "orderwatch_expected_notification_delay_seconds",
            "The request budget's own estimate of the mean time from a change to its fetch.",
            registry=r,
        )
        self.floor_wins = Counter(
            "orderwatch_poll_budget_floor_wins",
            "Cycles that spent beyond poll.budget to read every open order once per interval.",
            registry=r,
        )
        self.last_successful_poll = Gauge(
            "orderwatch_last_successful_poll_timestamp_seconds",
            "Unix time at which the last successful poll cycle finished.",
            registry=r,
        )
        self.notifications = Counter(
            "orderwatch_notifications",
            "Notification delivery attempts by route and outcome (sent, failed, dead).",
            ["route", "outcome"],
            registry=r,
        )
        self.notification_queue = Gauge(
            "orderwatch_notification_queue",
            "Deliveries waiting (pending) or given up (dead).",
            ["state"],
            registry=r,
        )
        self.notification_latency = Histogram(
            "orderwatch_notification_latency_seconds",
            "Time from detecting a change to a destination accepting its notification.",
            buckets=(0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 900, 3600, 4 * 3600, 24 * 3600),
            registry=r,
        )
        self.status_duration = Histogram(
            "orderwatch_status_duration_seconds",
            "Time an order spent in a status, observed when it left it (entry seen by orderwatch).",
            ["status"],
            buckets=_STATUS_BUCKETS,
            registry=r,
        )
        self.api_request_duration = Histogram(
            "orderwatch_api_request_duration_seconds",
            "Duration of requests to the Orders API.",
            ["endpoint"],
            registry=r,
        )
        self.poll_cycle_duration = Histogram(
            "orderwatch_poll_cycle_duration_seconds",
            "Duration of poll cycles.",
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 1800, 3600),
            registry=r,
        )
        self.poll_requests = Histogram(
            "orderwatch_poll_requests",
            "Requests made by one poll cycle.",
            buckets=_REQUEST_BUCKETS,
            registry=r,
        )
        self.build_info = Gauge(
            "orderwatch_build_info", "orderwatch's version; always 1.", ["version"], registry=r
        )
        self.build_info.labels(version=__version__).set(1)
        self.lifecycle = Enum(
            "orderwatch_lifecycle",
            "What the daemon is doing: starting, syncing (first sync), running, stopping.",
            states=list(LIFECYCLE_STATES),
            registry=r,
        )
        self.leader = Gauge(
            "orderwatch_leader",
            "1 on the instance that polls the Orders API (the leader), 0 on a standby.",
            registry=r,
        )
        self.leader_changes = Counter(
            "orderwatch_leader_changes",
            "Times this instance became the leader or stood down.",
            registry=r,
        )
        self._oldest = _OldestOpenOrder()
        r.register(self._oldest)
        self.set_order_counts({})
        self.set_queue({})

    def set_oldest_open(self, since: Mapping[str, float]) -> None:
        """When the longest-waiting open order of each status entered it (Unix time)."""
        self._oldest.since = dict(since)

    def set_order_counts(self, counts: Mapping[str, int]) -> None:
        """Publish per-status counts; the seven documented statuses are always present."""
        for status in dict.fromkeys((*KNOWN_STATUSES, *counts)):
            self.orders.labels(status=status).set(counts.get(status, 0))

    def set_queue(self, counts: Mapping[str, int]) -> None:
        for state in ("pending", "dead"):
            self.notification_queue.labels(state=state).set(counts.get(state, 0))

    def observe_api(self, endpoint: str, code: str, seconds: float) -> None:
        self.api_requests.labels(endpoint=endpoint, code=code).inc()
        self.api_request_duration.labels(endpoint=endpoint).observe(seconds)


class Health:
    """What ``/healthz`` answers: healthy while polls succeed and the state file takes writes.

    Healthy means the last successful poll is younger than three intervals, or the first sync
    is making progress that recently; and the last write to the state file worked.
    """

    def __init__(self, interval: float, *, lease: float | None = None) -> None:
        """``lease`` (instances sharing a database): how long the database may stay
        unreachable before the instance is unhealthy; a standby is healthy while it is not."""
        self.interval = interval
        self.started = time.time()
        self.last_success: float | None = None
        self.last_progress: float | None = None
        self.store_error: str | None = None
        self.lease = lease
        self.role = "leader"
        self.last_contact: float | None = None  # the last exchange with the shared database

    def check(self, now: float | None = None) -> tuple[bool, dict[str, object]]:
        now = time.time() if now is None else now
        body: dict[str, object] = {"last_successful_poll": self.last_success, "role": self.role}
        if self.lease is not None and self.store_error is None:
            contact = self.started if self.last_contact is None else self.last_contact
            if now - contact >= self.lease:
                reason = f"the state database unreachable for {now - contact:.0f}s"
                return False, {**body, "status": "unhealthy", "reason": reason}
            if self.role == "standby":
                return True, {**body, "status": "ok"}
        return self._polls(now, body)

    def _polls(self, now: float, body: dict[str, object]) -> tuple[bool, dict[str, object]]:
        """Healthy while polls succeed (the leader; a single instance)."""
        horizon = 3 * self.interval
        if self.store_error is not None:
            return False, {**body, "status": "unhealthy", "reason": self.store_error}
        if self.last_success is not None and now - self.last_success < horizon:
            return True, {**body, "status": "ok"}
        if self.last_progress is not None and now - self.last_progress < horizon:
            return True, {**body, "status": "syncing"}
        if self.last_success is None and now - self.started < horizon:
            return True, {**body, "status": "starting"}
        age = "never" if self.last_success is None else f"{now - self.last_success:.0f}s ago"
        reason = f"no successful poll within {horizon:g}s (last: {age})"
        return False, {**body, "status": "unhealthy", "reason": reason}


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002, ANN401
        """Scrapes are not news."""


class Listener:
    """A WSGI application on ``host:port``, served from a daemon thread until :meth:`close`.

    ``key`` is the setting that chose the address, named when it cannot be used."""

    def __init__(
        self, host: str, port: int, app: Callable[..., Iterable[bytes]], *, name: str, key: str
    ) -> None:
        server_class = _Server6 if ":" in host else _Server
        try:
            self._server = make_server(
                host, port, app, server_class=server_class, handler_class=_QuietHandler
            )
        except OSError as error:
            raise OrderwatchError(
                f"{key}: cannot listen on {host}:{port}: {error.strerror or error}"
            ) from None
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class MetricsServer(Listener):
    """``GET /metrics`` (and ``/healthz``) on ``host:port``, served from a thread until
    :meth:`close`."""

    def __init__(
        self, host: str, port: int, registry: CollectorRegistry, health: Health | None = None
    ) -> None:
        metrics_app = make_wsgi_app(registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO")
            if path in {"/metrics", "/metrics/"}:
                served: Iterable[bytes] = metrics_app(environ, start_response)
                return served
            if path == "/healthz" and health is not None:
                ok, body = health.check()
                status = "200 OK" if ok else "503 Service Unavailable"
                start_response(status, [("Content-Type", "application/json")])
                return [json.dumps(body).encode() + b"\n"]
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: try /metrics or /healthz\n"]

        super().__init__(host, port, app, name="orderwatch-metrics", key="metrics.listen")
