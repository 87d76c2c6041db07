"""Notification sinks: the destinations the configuration names, built from its settings.

A *destination* is one apprise URL of one route, or one webhook. Its ``key`` (a hash of the
route's name and URL, or of the webhook's whole configuration) is what the outbox stores, so the
state file never holds a URL or its credentials. apprise itself is confined to ``_apprise``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, TypeVar

from orderwatch import _apprise
from orderwatch._apprise import mask_url
from orderwatch._detect import Event
from orderwatch._messages import MessageTemplates
from orderwatch._routing import Filters, RoutePolicy
from orderwatch._settings import NotifySettings, RouteSettings, WebhookSettings

__all__ = ["Destination", "destinations_for", "secrets_in", "send"]

T = TypeVar("T")


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


def _frozen(values: list[T] | None) -> frozenset[T] | None:
    return None if values is None else frozenset(values)


def _filters(source: RouteSettings | WebhookSettings) -> Filters:
    return Filters(
        statuses=_frozen(source.statuses),
        from_statuses=_frozen(source.from_statuses),
        events=_frozen(source.events),
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


async def send(destination: Destination, title: str, body: str) -> str | None:
    """Send one message to an apprise destination. None when apprise reports success, else why
    not (one line)."""
    return await _apprise.send(destination.url, title, body, destination.templates.format)
