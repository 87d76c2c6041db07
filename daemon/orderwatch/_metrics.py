"""Prometheus metrics, built on a registry passed in, and the HTTP listener that serves them.

Names are a contract (dashboards and alerts are written against them):
``orderwatch_orders{status}``, ``orderwatch_transitions_total{from_status,to_status}``,
``orderwatch_poll_cycles_total``, ``orderwatch_api_requests_total{endpoint,code}``,
``orderwatch_last_successful_poll_timestamp_seconds``,
``orderwatch_notifications_total{route,outcome}``, ``orderwatch_notification_queue{state}``.
No metric carries a per-order label.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, make_wsgi_app

from orderwatch._exceptions import OrderwatchError
from orderwatch._models import KNOWN_STATUSES

__all__ = ["Metrics", "MetricsServer"]


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
        self.set_order_counts({})
        self.set_queue({})

    def set_order_counts(self, counts: Mapping[str, int]) -> None:
        """Publish per-status counts; the seven documented statuses are always present."""
        for status in (*KNOWN_STATUSES, *counts):
            self.orders.labels(status=status).set(counts.get(status, 0))

    def set_queue(self, counts: Mapping[str, int]) -> None:
        for state in ("pending", "dead"):
            self.notification_queue.labels(state=state).set(counts.get(state, 0))

    def observe_api(self, endpoint: str, code: str, seconds: float) -> None:
        del seconds  # the duration histogram arrives with the operations issue
        self.api_requests.labels(endpoint=endpoint, code=code).inc()


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002, ANN401
        """Scrapes are not news."""


Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class MetricsServer:
    """``GET /metrics`` on ``host:port``, served from a thread until :meth:`close`."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        metrics_app = make_wsgi_app(registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO") in {"/metrics", "/metrics/"}:
                served: Iterable[bytes] = metrics_app(environ, start_response)
                return served
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: try /metrics\n"]

        server_class = _Server6 if ":" in host else _Server
        try:
            self._server = make_server(
                host, port, app, server_class=server_class, handler_class=_QuietHandler
            )
        except OSError as error:
            raise OrderwatchError(
                f"metrics.listen: cannot listen on {host}:{port}: {error.strerror or error}"
            ) from None
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="orderwatch-metrics", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
