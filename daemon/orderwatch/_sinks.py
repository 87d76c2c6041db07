"""Notification sinks: destinations built from the configuration; apprise URLs checked, masked
and sent to.

A *destination* is one apprise URL of one route, or one webhook. Its ``key`` (a hash of the
route's name and URL, or of the webhook's whole configuration) is what the outbox stores, so the
state file never holds a URL or its credentials. ``console://`` is orderwatch's own apprise
service: it prints the message to standard output (the demo uses it).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

import anyio
import apprise
from apprise.decorators import notify as apprise_service
from apprise.manager_plugins import NotificationManager

from orderwatch._detect import Event
from orderwatch._messages import MessageTemplates
from orderwatch._routing import Filters, RoutePolicy

if TYPE_CHECKING:
    from orderwatch._settings import NotifySettings, RouteSettings, WebhookSettings

__all__ = [
    "CONSOLE_SCHEME",
    "WEBHOOK_MAX_AGE",
    "Destination",
    "apprise_problem",
    "destinations_for",
    "mask_url",
    "secrets_in",
    "send",
    "url_key",
]

CONSOLE_SCHEME: Final = "console"
_SCHEMES: Final = NotificationManager()


@apprise_service(on=CONSOLE_SCHEME, name="orderwatch console")
def _console(body: str, title: str, notify_type: str, *_: Any, **__: Any) -> bool:  # noqa: ANN401
    del notify_type
    print(f"\n📣 {title}\n" + "".join(f"   {line}\n" for line in body.splitlines()), flush=True)  # noqa: T201
    return True


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def apprise_problem(url: str) -> str | None:
    """Why apprise cannot use ``url``, in a line that shows no credential; None if it can."""
    scheme = _scheme(url)
    if not scheme or scheme not in _SCHEMES.schemas():
        shown = f"{scheme}://…" if scheme else "…"
        return f'no apprise service understands "{shown}"'
    if apprise.Apprise.instantiate(url) is None:
        return f'"{scheme}://…" is not a valid {scheme} URL (see the apprise docs for its form)'
    return None


def mask_url(url: str) -> str:
    """``url`` in apprise's privacy form (credentials masked), without the query string."""
    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        return f"{_scheme(url)}://…"
    return str(plugin.url(privacy=True)).split("?", 1)[0]


def url_key(*parts: str) -> str:
    """A stable, non-reversible name for a destination, stored instead of its URL."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


WEBHOOK_MAX_AGE: Final = 72 * 3600.0


@dataclass(frozen=True, slots=True)
class Destination:
    """One apprise URL of one route, or one webhook. ``url`` and ``secret`` are credentials:
    never log them; log ``masked``."""

    route: str
    key: str
    masked: str
    url: str = field(repr=False)
    kind: Literal["apprise", "webhook"] = "apprise"
    filters: Filters = field(default_factory=Filters)
    policy: RoutePolicy = field(default_factory=RoutePolicy)
    templates: MessageTemplates = field(default_factory=MessageTemplates, compare=False)
    secret: str | None = field(default=None, repr=False)
    max_age: float = 24 * 3600.0

    def accepts(self, event: Event) -> bool:
        """Whether ``event`` goes to this destination."""
        return self.filters.accepts(event.kind, event.order.status, event.previous_status)


def _filters(source: RouteSettings | WebhookSettings) -> Filters:
    def frozen(values: list[str] | None) -> frozenset[str] | None:
        return None if values is None else frozenset(values)

    return Filters(
        statuses=frozen(source.statuses),
        from_statuses=frozen(source.from_statuses),
        events=frozen(source.events),  # type: ignore[arg-type]
    )


def _route_destinations(
    route: RouteSettings, max_age: float, ack_link: Callable[[Event], str | None] | None
) -> list[Destination]:
    templates = MessageTemplates(
        title=route.title,
        body=route.body,
        digest_title=route.digest_title,
        digest_body=route.digest_body,
        fmt=route.format,
        ack_link=ack_link,
    )
    policy = RoutePolicy(
        group_wait=route.group_wait,
        digest_threshold=route.digest_threshold,
        quiet_hours=route.quiet(),
        urgent=frozenset(route.urgent),
    )
    return [
        Destination(
            route=route.name,
            key=url_key(route.name, url),
            masked=mask_url(url),
            url=url,
            filters=_filters(route),
            policy=policy,
            templates=templates,
            max_age=max_age,
        )
        for url in route.urls
    ]


def _webhook_destination(webhook: WebhookSettings) -> Destination:
    secret = webhook.secret.get_secret_value()
    return Destination(
        route=webhook.name,
        key=url_key("webhook", webhook.name, webhook.url, secret),
        masked=webhook.url.split("?", 1)[0],
        url=webhook.url,
        kind="webhook",
        filters=_filters(webhook),
        secret=secret,
        max_age=WEBHOOK_MAX_AGE,
    )


def destinations_for(
    notify: NotifySettings, ack_link: Callable[[Event], str | None] | None = None
) -> list[Destination]:
    """Every destination of every route, then every webhook, in configuration order.
    ``ack_link`` makes the link a stuck alert carries (with ``[web]``)."""
    found = [
        d for route in notify.routes for d in _route_destinations(route, notify.max_age, ack_link)
    ]
    return found + [_webhook_destination(webhook) for webhook in notify.webhooks]


def secrets_in(destinations: Sequence[Destination]) -> list[str]:
    """The parts of the destinations' URLs that may be credentials, for the log redactor."""
    found: list[str] = []
    for destination in destinations:
        if destination.secret:
            found += [destination.secret, destination.secret.removeprefix("whsec_")]
        rest = destination.url.split("://", 1)[-1]
        userinfo, _, hostpart = rest.rpartition("@")
        if ":" in userinfo:
            found.append(userinfo.split(":", 1)[1])
        pieces = hostpart.replace("?", "/").replace("&", "/").replace("=", "/").split("/")
        # tokens (Slack, Telegram, …) travel in the path: long, mixed letters and digits
        found.extend(
            piece
            for piece in pieces
            if len(piece) >= 8
            and any(c.isdigit() for c in piece)
            and any(c.isalpha() for c in piece)
        )
    return found


def _send_blocking(url: str, title: str, body: str, fmt: str) -> str | None:
    target = apprise.Apprise()
    if not target.add(url):
        return "apprise could not load this URL"
    with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
        ok = bool(target.notify(title=title, body=body, body_format=fmt))
    if ok:
        return None
    reason = " ".join(str(captured.getvalue()).split())
    return reason or "the service did not accept the message"


async def send(destination: Destination, title: str, body: str) -> str | None:
    """Send one message. None when apprise reports success, else why not (one line)."""
    # apprise is synchronous (requests); a thread keeps the event loop free meanwhile.
    fmt = destination.templates.format
    return await anyio.to_thread.run_sync(_send_blocking, destination.url, title, body, fmt)
