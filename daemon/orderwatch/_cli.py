"""The ``orderwatch`` command: run, check-config, health, notify-test, routes explain, outbox,
status, sandbox, demo.

Every failure a user can cause ends in one line naming the cause and a non-zero exit: 2 for an
invalid configuration, 1 for anything else. Never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx

from orderwatch._console import build_summary, summary_event, summary_key
from orderwatch._detect import EVENT_KINDS, EventKind
from orderwatch._exceptions import ConfigError, OrderwatchError
from orderwatch._explain import explain
from orderwatch._logging import configure_logging
from orderwatch._messages import format_duration, render, title_for
from orderwatch._models import KNOWN_STATUSES, canonical_status, is_final
from orderwatch._pacing import open_units
from orderwatch._rates import RateLearner
from orderwatch._routing import parse_duration
from orderwatch._sandbox import DayPace, Faults, Sandbox, ShopDay, World
from orderwatch._settings import Settings, config_path, default_state_path, load_settings
from orderwatch._silences import Ack, Silence
from orderwatch._sinks import Destination, destinations_for, send
from orderwatch._store import Store, masked_url, open_store, url_problem
from orderwatch._store._migrate import migrate_to_postgres
from orderwatch._version import __version__
from orderwatch._webhooks import WebhookSender, test_payload

__all__ = ["main"]

EXIT_FAILURE = 1
EXIT_CONFIG = 2

_SCENARIOS = ("steps", "shop-day")
_TICK = {"steps": 2.0, "shop-day": 0.1}  # seconds; shop-day's stamps changes when due anyway
# Each scenario's own options, with their defaults: given for the other one, they are an error.
_STEPS_DEFAULTS: dict[str, float] = {"open": 15, "arrival_rate": 0.5}
_MOST_ARRIVALS = 1000.0  # new orders a wall-clock second a shop-day sandbox serves
_DAY_DEFAULTS: dict[str, float] = {
    "speed": 60.0,
    "dwell_scale": 1.0,
    "arrivals_per_day": DayPace().arrivals_per_day,
    "start_hour": 9,
}


def _real(
    low: float, high: float = math.inf, *, low_allowed: bool = True
) -> Callable[[str], float]:
    """A finite number from ``low`` (excluded unless ``low_allowed``) to ``high``."""
    bounds = f"{'>=' if low_allowed else '>'} {low:g}"
    if high < math.inf:
        bounds += f" and <= {high:,.0f}" if high == int(high) else f" and <= {high:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
        if value < low or (value == low and not low_allowed) or value > high:
            raise argparse.ArgumentTypeError(f"must be {bounds}, not {text}")
        return value

    return parse


_positive = _real(0, low_allowed=False)
_non_negative = _real(0)


def _whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """A whole number from ``low`` to ``high`` (no bound: None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"from {low} to {high}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, not {text}")
        return value

    return parse


def _add_state_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state",
        metavar="PATH|URL",
        help="the state file or postgresql:// URL (default: from the config)",
    )


def _add_routes_outbox_state(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    routes = commands.add_parser(
        "routes",
        help="inspect routing: 'routes explain' shows who would get an event",
        description="Inspect routing without sending anything.",
    )
    routes_commands = routes.add_subparsers(dest="routes_command", required=True, metavar="ACTION")
    explain = routes_commands.add_parser(
        "explain",
        parents=[common],
        help="which routes and webhooks would receive such an event, and what each would get",
        description="Print which routes and webhooks would receive an event with this status "
        "(and previous status, and type), and the message each would get. Sends nothing.",
    )
    explain.add_argument("--status", required=True, help="the event's (new) status")
    explain.add_argument("--from", dest="from_status", help="the previous status")
    explain.add_argument(
        "--event",
        choices=EVENT_KINDS,
        help="the event type (default: status_changed with --from, else created)",
    )

    outbox = commands.add_parser(
        "outbox",
        help="list, retry or drop pending and dead deliveries",
        description="Work on the outbox in the state file (the daemon may be running).",
    )
    outbox_commands = outbox.add_subparsers(dest="outbox_command", required=True, metavar="ACTION")
    for action, text in (
        ("list", "show pending and dead deliveries"),
        ("retry", "make deliveries due now, their age limit starting again"),
        ("drop", "delete deliveries (their events stay in the history)"),
    ):
        sub = outbox_commands.add_parser(action, parents=[common], help=text, description=text)
        _add_state_option(sub)
        sub.add_argument("--event", metavar="ID", help="only this event id")
        sub.add_argument("--route", metavar="NAME", help="only this route or webhook")
        if action == "list":
            sub.add_argument("--dead", action="store_true", help="only dead letters")
            sub.add_argument(
                "--silenced", action="store_true", help="only deliveries a silence held back"
            )
        else:
            sub.add_argument("--all", action="store_true", help="every pending and dead delivery")

    state = commands.add_parser(
        "state",
        help="check, export or move the state",
        description="Work on the state (a SQLite file or a PostgreSQL database): 'check' "
        "verifies it, 'export' writes orders and their status history as JSON lines, "
        "'migrate' copies a state file into an empty PostgreSQL database.",
    )
    state_commands = state.add_subparsers(dest="state_command", required=True, metavar="ACTION")
    for action, text in (
        ("check", "verify the state; exit 0 when sound, 1 with the problems otherwise"),
        ("export", "write every order and its status history as JSON lines"),
        ("migrate", "copy a state file into an empty PostgreSQL database (stop the daemon first)"),
    ):
        sub = state_commands.add_parser(action, parents=[common], help=text, description=text)
        _add_state_option(sub)
        if action == "export":
            sub.add_argument("--output", metavar="FILE", help="write here instead of stdout")
        if action == "migrate":
            sub.add_argument(
                "--to", required=True, metavar="URL", help="postgresql://user@host:5432/database"
            )


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="the TOML configuration file (default: $ORDERWATCH_CONFIG)",
    )
    parser = argparse.ArgumentParser(
        prog="orderwatch",
        description="Watch gift-card orders on the Orders API and announce every status change.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"orderwatch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        parents=[common],
        help="run the daemon in the foreground, logging to stderr",
        description="Run the daemon in the foreground, logging to stderr. SIGTERM or SIGINT "
        "finishes what is in flight, closes the state and exits 0.",
    )
    run.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="overrides log.level (default INFO)",
    )
    run.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="overrides log.format: human-readable lines or one JSON object per line",
    )

    commands.add_parser(
        "check-config",
        parents=[common],
        help="validate the configuration without touching the network",
        description="Validate the configuration file and the ORDERWATCH_* environment without "
        "touching the network. Exit 0 when valid, else 2 with one line per problem.",
    )
    health = commands.add_parser(
        "health",
        parents=[common],
        help="ask the running daemon's /healthz; exit 0 when healthy, else 1",
        description="GET /healthz on the metrics listener of a running daemon (for container "
        "health checks); print its answer; exit 0 when healthy, 1 otherwise.",
    )
    health.add_argument("--url", help="the health URL (default: from metrics.listen)")
    health.add_argument("--timeout", type=float, default=5.0)
    commands.add_parser(
        "notify-test",
        parents=[common],
        help="send a test message through every route",
        description="Send one test message to every destination of every route, print each "
        "(credentials masked) with its outcome; exit 1 if any failed.",
    )
    _add_routes_outbox_state(commands, common)

    _add_console(commands, common)

    status = commands.add_parser(
        "status",
        parents=[common],
        help="show what the state file knows",
        description="Read the state file: orders per status, the open orders, the last "
        "successful poll, the first sync's progress and the outbox.",
    )
    _add_state_option(status)
    status.add_argument("--limit", type=int, default=50, help="open orders to list (default 50)")

    day, (opening, closing) = DayPace(), DayPace().working_hours
    sandbox = commands.add_parser(
        "sandbox",
        help="serve a simulated Orders API on loopback",
        usage="orderwatch sandbox [--scenario {steps,shop-day}] [OPTION ...]",
        description="Serve a simulated Orders API on loopback: token, paged list, status, and "
        "orders that keep moving. Scenario steps (the default): every --tick seconds new orders "
        "arrive and open orders move one step. Scenario shop-day: a shop's day on a compressed "
        f"clock: orders arrive at the head, {day.busy:g} times as often {opening}:00-{closing}:00,"
        " and leave each status after a random stay whose mean depends on the status; a long "
        "tail of old orders stays open for days. Deterministic for a given seed.",
    )
    sandbox.set_defaults(reject=sandbox.error)  # a misfit option ends like an argparse error
    sandbox.add_argument(
        "--scenario",
        choices=_SCENARIOS,
        default="steps",
        help="how the orders move (default steps)",
    )
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=_whole(0, 65535), default=8080)
    sandbox.add_argument("--seed", type=int, default=1)
    sandbox.add_argument(
        "--orders",
        type=_whole(0),
        default=200,
        help="orders at start (default 200; shop-day adds the day before and the morning)",
    )
    sandbox.add_argument(
        "--tick",
        type=_real(0, 86400, low_allowed=False),  # a longer wait overflows threading's timeout
        metavar="SECONDS",
        help=f"steps: seconds between lifecycle steps (default {_TICK['steps']:g}); shop-day: "
        f"seconds between catch-ups with its clock (default {_TICK['shop-day']:g})",
    )
    sandbox.add_argument(
        "--token-lifetime", type=_real(0, 366 * 86400, low_allowed=False), default=3600.0,
        help="expires_in seconds",
    )  # fmt: skip
    sandbox.add_argument("--list-key", choices=["data", "orders"], default="data")
    sandbox.add_argument("--client-id", default="sandbox")
    sandbox.add_argument("--client-secret", default="sandbox-secret")
    steps = sandbox.add_argument_group("scenario steps")
    steps.add_argument(
        "--open",
        type=_whole(0),
        help=f"of the orders at start, open (newest) (default {_STEPS_DEFAULTS['open']})",
    )
    steps.add_argument(
        "--arrival-rate",
        type=_non_negative,
        help=f"new orders per step (default {_STEPS_DEFAULTS['arrival_rate']:g})",
    )
    shop = sandbox.add_argument_group("scenario shop-day")
    shop.add_argument(
        "--speed",
        type=_real(0, 86400, low_allowed=False),  # up to a day a second
        metavar="X",
        help=f"shop seconds a second (default {_DAY_DEFAULTS['speed']:g}: an hour a minute)",
    )
    shop.add_argument(
        "--dwell-scale",
        type=_real(0, 1000, low_allowed=False),
        metavar="X",
        help=f"multiplies every mean stay in a status (default {_DAY_DEFAULTS['dwell_scale']:g})",
    )
    shop.add_argument(
        "--arrivals-per-day",
        type=_real(0, 1_000_000, low_allowed=False),  # more would never catch up
        metavar="N",
        help=f"new orders a day (default {_DAY_DEFAULTS['arrivals_per_day']:g})",
    )
    shop.add_argument(
        "--start-hour",
        type=_whole(0, 23),
        metavar="H",
        help=f"the shop's hour of the day at start, 0 to 23 (default "
        f"{_DAY_DEFAULTS['start_hour']:g}: working hours begin)",
    )
    faults = sandbox.add_argument_group("faults (shares of requests, 0 to 1, unless noted)")
    for name, text in (
        ("errors", "answered 500/502/503"),
        ("resets", "connection closed without an answer"),
        ("truncated", "200 with a JSON body cut short"),
        ("slow", "answered only after --slow-seconds"),
        ("rate-limited", "429 with Retry-After: --retry-after"),
        ("token-errors", "the token endpoint answers 503"),
        ("duplicates", "a page repeats an order of the page before"),
        ("wrong-types", "number and total as strings, total like 2200.00"),
        ("missing", "an item loses a field or has nulls"),
    ):
        faults.add_argument(
            f"--fault-{name}", dest=name.replace("-", "_"), type=_real(0, 1), default=0.0,
            metavar="SHARE", help=text,
        )  # fmt: skip
    faults.add_argument("--slow-seconds", type=_real(0, 3600), default=15.0)
    faults.add_argument("--retry-after", type=_whole(0, 86400), default=1)
    faults.add_argument("--fault-shift", dest="shift", type=_whole(0, 1000), default=0, metavar="N",
                        help="N new orders land at the head before every list request")  # fmt: skip
    faults.add_argument("--old-spelling", action="store_true", help='"Canceled"')
    faults.add_argument("--trailing-comma", action="store_true", help="the docs' status body")
    faults.add_argument("--alternate-keys", action="store_true", help='"data"/"orders" by turns')

    demo = commands.add_parser(
        "demo",
        help="run the sandbox and the daemon together, printing notifications",
        description="Start a sandbox Orders API and the daemon against it; print every "
        "notification to the terminal; serve metrics. Ctrl-C stops.",
    )
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--metrics-port", type=int, default=9464)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    path = config_path(getattr(args, "config", None))
    if path is None:
        raise ConfigError(
            ["config: no configuration file: pass --config PATH or set ORDERWATCH_CONFIG"]
        )
    return load_settings(path)


def _budget_problem(settings: Settings) -> str | None:
    """``poll.budget`` against the open orders in the state file (if there is one yet)."""
    poll = settings.poll
    location = settings.state.location
    # A database server is not asked: check-config touches no network.
    if poll.budget is None or not isinstance(location, Path) or not location.exists():
        return None
    store = open_store(location, readonly=True)
    try:
        units = open_units(store.open_statuses(), store.arrivals, RateLearner())
    finally:
        store.close()
    need = poll.floor_budget(len(units))
    if need <= poll.budget:
        return None
    return (
        f"poll.budget: {poll.budget:g}/h cannot read the {len(units)} pages and orders holding "
        f"open orders once per poll.interval ({poll.interval:g}s): the smallest budget that "
        f"does is {math.ceil(need)}/h (or lengthen poll.interval)"
    )


def _cmd_check_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    problem = _budget_problem(settings)
    if problem:
        raise ConfigError([problem])
    routes = settings.notify.routes
    print(
        f"configuration is valid: {settings.api.base_url}, every {settings.poll.interval:g}s, "
        f"{len(routes)} route(s), {sum(len(r.urls) for r in routes)} destination(s)"
    )
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    configure_logging(args.log_level or settings.log.level, args.log_format or settings.log.format)
    # +60 ms (prometheus-client, stamina) that check-config, status and health never need
    from orderwatch._service import ServiceOptions, run_service  # noqa: PLC0415

    path = config_path(getattr(args, "config", None))
    anyio.run(run_service, settings, ServiceOptions(config_path=path))
    return 0


def _health_url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url)
    address = _settings(args).metrics.address
    if address is None:
        raise OrderwatchError('health: metrics.listen is "" (off), so there is no /healthz')
    host, port = address
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/healthz"


def _cmd_health(args: argparse.Namespace) -> int:
    url = _health_url(args)
    try:
        response = httpx.get(url, timeout=args.timeout)
    except httpx.HTTPError as error:
        raise OrderwatchError(f"health: no answer from {url} ({type(error).__name__})") from None
    print(response.text.strip())
    return 0 if response.status_code == 200 else EXIT_FAILURE


def _cmd_notify_test(args: argparse.Namespace) -> int:
    settings = _settings(args)
    destinations = destinations_for(settings.notify)
    if not destinations:
        print("notify: no routes or webhooks configured, nothing to test", file=sys.stderr)
        return EXIT_FAILURE
    title = "orderwatch: test message"
    body = "If you can read this, orderwatch can reach this destination."

    async def send_one(webhooks: WebhookSender, destination: Destination) -> str | None:
        if destination.kind == "webhook":
            event_id, payload = test_payload()
            return (await webhooks.send(destination, payload, event_id)).error
        return await send(destination, title, body)

    async def send_all() -> list[str | None]:
        webhooks = WebhookSender()
        try:
            return [await send_one(webhooks, d) for d in destinations]
        finally:
            await webhooks.aclose()

    results = anyio.run(send_all)
    for destination, error in zip(destinations, results, strict=True):
        outcome = "ok    " if error is None else "FAILED"
        suffix = "" if error is None else f": {error}"
        print(f"{outcome} {destination.route}: {destination.masked}{suffix}")
    return EXIT_FAILURE if any(results) else 0


def _cmd_routes(args: argparse.Namespace) -> int:
    settings = _settings(args)
    kind: EventKind = args.event or ("status_changed" if args.from_status else "created")
    print(explain(settings, status=args.status, previous=args.from_status, kind=kind))
    return 0


def _state_location(args: argparse.Namespace) -> Path | str:
    """``--state`` (a path or a URL), else the configuration's ``[state]``, else the default."""
    given = getattr(args, "state", None)
    if given:
        return str(given) if "://" in given else Path(given)
    if config_path(getattr(args, "config", None)) is not None:
        return _settings(args).state.location
    return default_state_path()


def _cmd_outbox(args: argparse.Namespace) -> int:
    action = args.outbox_command
    if action != "list" and not (args.event or args.route or args.all):
        raise OrderwatchError(f"outbox {action}: say which deliveries: --event, --route or --all")
    store = open_store(_state_location(args), readonly=action == "list")
    try:
        if action == "list":
            states = (
                ("silenced",) if args.silenced else ("dead",) if args.dead else ("pending", "dead")
            )
            rows = [
                d
                for d in store.deliveries(states)
                if (args.event is None or d.stored.id == args.event)
                and (args.route is None or d.route == args.route)
            ]
            for d in rows:
                when = (
                    f"next try {_when(d.next_attempt_at, future=True)}"
                    if d.state == "pending"
                    else d.state
                )
                error = f" — {d.last_error}" if d.last_error else ""
                note = d.stored.event.note
                title = note.title if note else title_for(d.stored.event)
                print(
                    f"{d.stored.id}  {d.state:<8} {d.route:<16} tries {d.attempts:<3} {when}  "
                    f"{title}{error}"
                )
            print(f"{len(rows)} deliveries")
            return 0
        if action == "retry":
            count = store.requeue(event_id=args.event, route=args.route, now=time.time())
            print(f"{count} deliveries due now (a running daemon sends them within a minute)")
        else:
            count = store.drop(event_id=args.event, route=args.route)
            print(f"{count} deliveries dropped")
    finally:
        store.close()
    return 0


def _cmd_state(args: argparse.Namespace) -> int:
    if args.state_command == "migrate":
        return _migrate(args)
    store = open_store(_state_location(args), readonly=True)
    try:
        if args.state_command == "check":
            problems = store.check()
            for problem in problems:
                print(f"state: {store.location}: {problem}", file=sys.stderr)
            if problems:
                return EXIT_FAILURE
            counts = store.status_counts()
            queue = store.queue_counts()
            print(
                f"state: {store.location} is sound: schema {store.schema_version} (current "
                f"{store.latest_schema}), {sum(counts.values())} orders, {queue['pending']} "
                f"deliveries pending, {queue['dead']} dead"
            )
            return 0
        out = Path(args.output).open("w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
        try:
            written = 0
            for record in store.export():
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                written += 1
        finally:
            if out is not sys.stdout:
                out.close()
        print(f"exported {written} orders", file=sys.stderr)
    except OSError as error:
        raise OrderwatchError(
            f"state export: cannot write {args.output}: {error.strerror}"
        ) from None
    finally:
        store.close()
    return 0


def _migrate(args: argparse.Namespace) -> int:
    source = _state_location(args)
    if not isinstance(source, Path):
        raise OrderwatchError(
            "state migrate: the source must be a SQLite state file (--state PATH or state.path)"
        )
    problem = url_problem(args.to)
    if problem:
        raise OrderwatchError(f"state migrate --to: {problem}")
    moved = migrate_to_postgres(source, args.to)
    print(
        f"state: moved {source} into {masked_url(args.to)}: {moved.orders} orders, "
        f"{moved.events} events, {moved.pending} deliveries pending, {moved.dead} dead, "
        f"{moved.stuck_timers} stuck-order timers, {moved.webhook_states} disabled webhooks, "
        f"{moved.acks} acknowledgements, {moved.silences} silences"
    )
    return 0


def _when(timestamp: float | None, *, future: bool = False) -> str:
    if timestamp is None:
        return "never"
    stamp = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if future:
        ahead = timestamp - time.time()
        return f"{stamp} (in {format_duration(ahead)})" if ahead > 0 else f"{stamp} (due)"
    return f"{stamp} ({format_duration(time.time() - timestamp)} ago)"


def _cmd_status(args: argparse.Namespace) -> int:
    store = open_store(_state_location(args), readonly=True)
    try:
        counts = store.status_counts()
        open_orders = store.open_orders()
        last = store.get_meta("last_successful_poll")
        print(f"state: {store.location}")
        for instance in store.instances():
            print(
                f"instance {instance.name}: {instance.role}, last seen {_when(instance.last_seen)}"
            )
        print(f"last successful poll: {_when(float(last) if last else None)}")
        if store.first_sync_done:
            print("first sync: done")
        else:
            page, pages = store.get_meta("sync_page"), store.get_meta("sync_total_pages")
            learned = store.get_meta("sync_orders") or "0"
            done = f"page {page} of {pages}, {learned} orders learned" if page else "not started"
            print(f"first sync: in progress ({done})")
        print(f"orders: {sum(counts.values())}")
        for status in (*KNOWN_STATUSES, *sorted(set(counts) - set(KNOWN_STATUSES))):
            print(f"  {status:<30} {counts.get(status, 0):>8}")
        print(f"open orders: {len(open_orders)}")
        for known in open_orders[: max(args.limit, 0)]:
            since = _when(known.status_since)
            print(f"  #{known.order.number:<8} {known.order.status:<30} since {since}")
        if len(open_orders) > args.limit:
            print(f"  … and {len(open_orders) - args.limit} more (--limit N shows more)")
        _print_budget(store)
        queue = store.queue_counts()
        print(f"deliveries: {queue['pending']} pending, {queue['dead']} dead")
        for name, reason, disabled_at in store.disabled_webhooks().values():
            print(f"webhook {name}: {reason} (since {_when(disabled_at)})")
        if store.has_console:
            _print_acks_and_silences(store)
    finally:
        store.close()
    return 0


def _print_acks_and_silences(store: Store) -> None:
    now = time.time()
    open_orders = {k.order.id: k for k in store.open_orders()}
    acks = [
        a
        for a in store.acks()
        if a.order_id in open_orders
        and a.covers(
            open_orders[a.order_id].order.status, open_orders[a.order_id].status_since, now
        )
    ]
    print(f"acknowledged: {len(acks)}")
    for ack in acks:
        until = "" if ack.until == float("inf") else f", until {_when(ack.until, future=True)}"
        print(f"  #{ack.number:<8} {ack.status:<30} {ack.describe()} at {_when(ack.at)}{until}")
    silences = store.silences(active_at=now)
    print(f"silences: {len(silences)} active")
    for silence in silences:
        comment = f' "{silence.comment}"' if silence.comment else ""
        print(
            f"  {silence.id:<4} {silence.describe()} until {_when(silence.ends_at, future=True)}"
            f"{comment}"
        )
    print(f"silenced deliveries: {store.silenced_count()}")


def _add_console(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    state = argparse.ArgumentParser(add_help=False)
    _add_state_option(state)
    ack = commands.add_parser(
        "ack",
        parents=[common, state],
        help="acknowledge a stuck order: its reminders stop",
        description="Acknowledge order NUMBER in its current status: its stuck reminders stop "
        "until it leaves the status or the acknowledgement expires.",
    )
    ack.add_argument("number", type=int, metavar="NUMBER")
    ack.add_argument("--for", dest="duration", metavar="DURATION", help="e.g. 24h (default: "
                     "until the order leaves its status)")  # fmt: skip
    ack.add_argument("--comment", metavar="TEXT")
    ack.add_argument("--by", metavar="NAME")

    silence = commands.add_parser(
        "silence",
        help="hold back deliveries to routes for a while",
        description="Silences: matching deliveries to routes are recorded as silenced "
        "instead of being sent. Webhooks are never silenced.",
    )
    actions = silence.add_subparsers(dest="silence_command", required=True, metavar="ACTION")
    add = actions.add_parser(
        "add", parents=[common, state], help="add a silence (every matcher given must match)"
    )
    add.add_argument("--status", action="append", metavar="S")
    add.add_argument("--order", action="append", type=int, metavar="N")
    add.add_argument("--route", action="append", metavar="R")
    add.add_argument("--event", action="append", metavar="KIND", choices=EVENT_KINDS)
    add.add_argument("--for", dest="duration", required=True, metavar="DURATION")
    add.add_argument("--comment", metavar="TEXT")
    actions.add_parser("list", parents=[common, state], help="list active silences")
    expire = actions.add_parser("expire", parents=[common, state], help="end a silence now")
    expire.add_argument("id", type=int, metavar="ID")

    summary = commands.add_parser(
        "summary",
        parents=[common, state],
        help="print the summary a route would get now",
        description="Print the summary a route's [[notify.summaries]] would send now, "
        "covering the time since the last one.",
    )
    summary.add_argument("--route", required=True, metavar="R")
    summary.add_argument("--dry-run", action="store_true", required=True,
                         help="print, send nothing (the only mode)")  # fmt: skip


def _duration_arg(text: str, flag: str = "--for") -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as error:
        raise OrderwatchError(f"{flag}: {error}") from None
    if seconds <= 0:
        raise OrderwatchError(f"{flag}: must be > 0")
    return seconds


def _cmd_ack(args: argparse.Namespace) -> int:
    now = time.time()
    until = now + _duration_arg(args.duration) if args.duration else float("inf")
    store = open_store(_state_location(args))
    try:
        known = store.order_by_number(args.number)
        if known is None:
            raise OrderwatchError(f"ack: no order #{args.number} in the state")
        if is_final(known.order.status):
            raise OrderwatchError(
                f"ack: order #{args.number} is {known.order.status}: nothing to acknowledge"
            )
        ack = Ack(
            known.order.id,
            known.order.number,
            known.order.status,
            known.status_since,
            now,
            until,
            args.by,
            args.comment,
        )
        store.add_ack(ack)
    finally:
        store.close()
    lasting = (
        "until it leaves" if args.duration is None else f"for {args.duration} or until it leaves"
    )
    print(f"order #{ack.number}: {ack.describe()} in {ack.status}; no reminders {lasting} it")
    return 0


def _cmd_silence(args: argparse.Namespace) -> int:
    now = time.time()
    store = open_store(_state_location(args), readonly=args.silence_command == "list")
    try:
        if args.silence_command == "add":
            matchers = (args.status, args.order, args.route, args.event)
            if not any(matchers):
                raise OrderwatchError(
                    "silence add: say what to silence: --status, --order, --route or --event"
                )
            statuses = (
                None if args.status is None else frozenset(canonical_status(s) for s in args.status)
            )
            unknown = sorted((statuses or set()) - set(KNOWN_STATUSES))
            if unknown:
                raise OrderwatchError(f"silence add: --status: unknown status {', '.join(unknown)}")

            def frozen(values: list[Any] | None) -> frozenset[Any] | None:
                return None if values is None else frozenset(values)

            silence = Silence(
                id=0,
                ends_at=now + _duration_arg(args.duration),
                statuses=statuses,
                orders=frozen(args.order),
                routes=frozen(args.route),
                events=frozen(args.event),
                comment=args.comment,
                created_at=now,
            )
            number = store.add_silence(silence)
            print(
                f"silence {number}: {silence.describe()} "
                f"until {_when(silence.ends_at, future=True)}"
            )
        elif args.silence_command == "expire":
            if not store.expire_silence(args.id, now=now):
                raise OrderwatchError(f"silence expire: no active silence {args.id}")
            print(f"silence {args.id} expired")
        else:
            silences = store.silences(active_at=now)
            for silence in silences:
                comment = f' "{silence.comment}"' if silence.comment else ""
                print(
                    f"{silence.id:<4} {silence.describe()} until "
                    f"{_when(silence.ends_at, future=True)}{comment}"
                )
            print(f"{len(silences)} active silence(s)")
    finally:
        store.close()
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    settings = _settings(args)
    chosen = [s for s in settings.notify.summaries if s.route == args.route]
    if not chosen:
        raise OrderwatchError(f"summary: no [[notify.summaries]] for route {args.route!r}")
    store = open_store(_state_location(args), readonly=True)
    try:
        for summary in chosen:
            now = time.time()
            last = store.summary_sent(summary_key(summary)) if store.has_console else None
            start = last if last is not None else summary.schedule().last_due(now)
            event = summary_event(settings, summary, build_summary(store, start, now, now), now)
            title, body = render(event)
            print(f"{title}\n\n{body}\n")
    finally:
        store.close()
    return 0


def _print_budget(store: Store) -> None:
    """The request budget's learned rates and planned intervals, as the daemon last saved them."""
    from orderwatch._rates import RateLearner  # noqa: PLC0415

    learned, plan = store.get_meta("budget_learned"), store.get_meta("budget_plan")
    if not learned or not plan:
        return
    learner = RateLearner()
    learner.restore(json.loads(learned))
    print("request budget: learned rates (per hour)")
    print(f"  {'new orders at the head':<30} {learner.arrival_rate:>8.2f}")
    for status, rate in learner.exit_rates().items():
        print(f"  leaving {status:<22} {rate:>8.3f}  (mean stay {format_duration(3600 / rate)})")
    print("request budget: planned fetch interval")
    for group, units, shortest, longest in json.loads(plan)["groups"]:
        span = format_duration(shortest)
        if round(longest) != round(shortest):
            span += f" to {format_duration(longest)}"
        print(f"  {group:<30} {units:>5} x every {span}")


def _sandbox_misfits(args: argparse.Namespace) -> str | None:
    """The options given that the chosen scenario does not use, as one line (None: none)."""
    others = _DAY_DEFAULTS if args.scenario == "steps" else _STEPS_DEFAULTS
    given = [f"--{name.replace('_', '-')}" for name in others if getattr(args, name) is not None]
    if not given:
        return None
    owner = "shop-day" if args.scenario == "steps" else "steps"
    verb = "applies" if len(given) == 1 else "apply"
    return f"{', '.join(given)} {verb} only to --scenario {owner}, not {args.scenario}"


def _scenario_options(args: argparse.Namespace, defaults: dict[str, float]) -> dict[str, float]:
    """The scenario's own options: as given, else their defaults."""
    return {
        name: default if getattr(args, name) is None else getattr(args, name)
        for name, default in defaults.items()
    }


def _shop_day(args: argparse.Namespace) -> ShopDay:
    """The shop day the options describe, caught up with its clock: at ``--start-hour``."""
    chosen = _scenario_options(args, _DAY_DEFAULTS)
    pace = DayPace(
        arrivals_per_day=float(chosen["arrivals_per_day"]), dwell_scale=float(chosen["dwell_scale"])
    )
    speed = float(chosen["speed"])
    world = ShopDay(seed=args.seed, orders=args.orders, pace=pace, speed=speed)
    # Its day starts at --start-hour now, however long the warm-up above took.
    world.start = time.time() - float(chosen["start_hour"]) * 3600 / speed
    world.step()
    world.history.clear()  # nobody reads it here, and it would only grow
    return world


def _shop_day_line(world: ShopDay, tick: float) -> str:
    """The shop day's pace in one line."""
    pace = world.pace
    opening, closing = pace.working_hours
    minutes = int(world.shop_time % 86400 // 60)
    clock = f"{minutes // 60:02d}:{minutes % 60:02d}"
    scale = "" if pace.dwell_scale == 1 else f" (x{pace.dwell_scale:g})"
    stays = ", ".join(f"{s} {format_duration(pace.mean_dwell(s))}" for s, _ in pace.dwell)
    old = min(pace.old_open, world.orders)
    return (
        f"scenario shop-day: {world.speed:g} shop seconds a second "
        f"({format_duration(60 * world.speed)} a minute), shop time {clock}, caught up every "
        f"{tick:g}s; {pace.arrivals_per_day:g} new orders a day, {pace.busy:g}x as many an hour "
        f"{opening}:00-{closing}:00; mean stays{scale}: {stays}; {old} old orders open for "
        f"about {format_duration(pace.old_dwell)}; {len(world.newest_first)} orders, "
        f"{len(world.open_ids)} open"
    )


def _cmd_sandbox(args: argparse.Namespace) -> int:
    misfits = _sandbox_misfits(args)
    if misfits:
        args.reject(misfits)
    if args.scenario == "shop-day":
        day = _scenario_options(args, _DAY_DEFAULTS)
        per_second = float(day["arrivals_per_day"]) * float(day["speed"]) / 86400
        if per_second > _MOST_ARRIVALS:
            args.reject(
                f"--speed x --arrivals-per-day: {per_second:,.0f} new orders a second, more than "
                f"the sandbox keeps up with ({_MOST_ARRIVALS:,.0f})"
            )
    faults = Faults(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Faults)})
    tick = _TICK[args.scenario] if args.tick is None else args.tick
    world: World
    if args.scenario == "shop-day":
        world = _shop_day(args)
        scenario_line: str | None = _shop_day_line(world, tick)
    else:
        chosen = _scenario_options(args, _STEPS_DEFAULTS)
        world = World(
            seed=args.seed,
            orders=args.orders,
            open_orders=int(chosen["open"]),
            arrival_rate=float(chosen["arrival_rate"]),
        )
        scenario_line = None
    try:
        sandbox = Sandbox(
            world,
            host=args.host,
            port=args.port,
            list_key=args.list_key,
            token_lifetime=args.token_lifetime,
            client_id=args.client_id,
            client_secret=args.client_secret,
            faults=faults,
            fault_seed=args.seed,
        )
    except OSError as error:
        raise OrderwatchError(
            f"sandbox: cannot listen on {args.host}:{args.port}: {error.strerror}"
        ) from None
    sandbox.start()
    sandbox.tick_every(tick)
    print(
        f"sandbox Orders API on {sandbox.url} (client_id={args.client_id}, "
        f"client_secret={args.client_secret}); Ctrl-C stops",
        flush=True,
    )
    if scenario_line:
        print(scenario_line, flush=True)
    # Ctrl-C and SIGTERM stop it, whatever the signals' dispositions were when it started.
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        # Shut the server down, but never hang on it: a stop is a stop.
        stopper = threading.Thread(target=sandbox.stop, name="sandbox-stop", daemon=True)
        stopper.start()
        stopper.join(timeout=5)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from orderwatch._demo import run_demo  # noqa: PLC0415 - loads the service: +60 ms, as run

    return run_demo(seed=args.seed, metrics_port=args.metrics_port)


_COMMANDS = {
    "run": _cmd_run,
    "check-config": _cmd_check_config,
    "health": _cmd_health,
    "routes": _cmd_routes,
    "outbox": _cmd_outbox,
    "state": _cmd_state,
    "notify-test": _cmd_notify_test,
    "status": _cmd_status,
    "ack": _cmd_ack,
    "silence": _cmd_silence,
    "summary": _cmd_summary,
    "sandbox": _cmd_sandbox,
    "demo": _cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``orderwatch`` command; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    except OrderwatchError as error:
        logging.getLogger("orderwatch").debug("fatal", exc_info=True)
        print(f"orderwatch: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
