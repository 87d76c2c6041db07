"""The daemon: the poll loop, the courier and the metrics listener in one anyio task group.

SIGTERM or SIGINT stops it: no new cycle or send starts, sends already under way finish and are
recorded, the state file is closed, and :func:`run_service` returns.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import httpx
import stamina.instrumentation

from orderwatch._client import OrdersApi, RetryPolicy
from orderwatch._exceptions import ApiError, CredentialsError
from orderwatch._logging import redactor
from orderwatch._metrics import Metrics, MetricsServer
from orderwatch._outbox import Courier
from orderwatch._poller import Poller
from orderwatch._settings import Settings
from orderwatch._sinks import destinations_for, secrets_in
from orderwatch._store import Store

__all__ = ["ServiceOptions", "run_service"]

log = logging.getLogger("orderwatch")


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    """Knobs for embedding the daemon (the demo, tests); the defaults are the daemon's."""

    transport: httpx.AsyncBaseTransport | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    handle_signals: bool = True
    on_metrics_port: Callable[[int], None] = lambda _: None


async def run_service(settings: Settings, options: ServiceOptions | None = None) -> None:
    """Run the daemon until a signal (or cancellation) stops it.

    Raises :class:`~orderwatch.OrderwatchError` for what it cannot run with (an unusable state
    file, a metrics port in use); everything upstream is logged and retried instead.
    """
    options = options or ServiceOptions()
    stamina.instrumentation.set_on_retry_hooks([])  # the client logs retries once per streak
    destinations = destinations_for(settings.notify.routes)
    api_secrets = (settings.api.client_secret, settings.api.token)
    redactor.add(*(s.get_secret_value() for s in api_secrets if s is not None))
    redactor.add(*secrets_in(destinations))

    store = Store.open(settings.state.path)
    metrics = Metrics()
    server = None
    try:
        if settings.metrics.address is not None:
            server = MetricsServer(*settings.metrics.address, metrics.registry)
            options.on_metrics_port(server.port)
            log.info("metrics on http://%s:%d/metrics", settings.metrics.address[0], server.port)
        async with OrdersApi(
            settings.api,
            transport=options.transport,
            retry=options.retry,
            observe=metrics.observe_api,
            on_secret=redactor.add,
        ) as api:
            courier = Courier(store, destinations, metrics)
            poller = Poller(
                api,
                store,
                destinations,
                metrics,
                announce_initial=settings.notify.initial,
                on_committed=lambda _: courier.wake(),
            )
            log.info(
                "orderwatch started: watching %s every %gs, %d destinations, state %s",
                settings.api.base_url,
                settings.poll.interval,
                len(destinations),
                settings.state.path,
            )
            async with anyio.create_task_group() as group:
                if options.handle_signals:
                    group.start_soon(_stop_on_signal, group.cancel_scope)
                group.start_soon(courier.run)
                group.start_soon(_poll_forever, poller, metrics, store, settings.poll.interval)
    finally:
        if server is not None:
            server.close()
        store.close()
        log.info("orderwatch stopped")


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("%s received: stopping", signal.Signals(signum).name)
            scope.cancel()
            return


async def _poll_forever(poller: Poller, metrics: Metrics, store: Store, interval: float) -> None:
    failing: str | None = None
    while True:
        started = anyio.current_time()
        try:
            report = await poller.cycle()
        except CredentialsError as error:
            if failing != str(error):
                log.error("%s", error)  # noqa: TRY400 - the message is the whole story
            failing = str(error)
        except ApiError as error:
            if failing != str(error):
                log.warning("poll failed: %s; trying again next cycle", error)
            failing = str(error)
        else:
            if failing is not None:
                log.info("poll succeeded again")
            failing = None
            metrics.last_successful_poll.set(time.time())
            log.log(
                logging.INFO if report.events else logging.DEBUG,
                "poll: %d requests, %d new orders, %d transitions, %d open",
                report.requests,
                report.new_orders,
                report.transitions,
                poller.open_count,
            )
        metrics.poll_cycles.inc()
        metrics.set_queue(store.queue_counts())
        await anyio.sleep(max(0.0, started + interval - anyio.current_time()))
