"""Notification sinks: apprise destinations, checked, masked and sent to.

A *destination* is one apprise URL of one route. Its ``key`` (a hash of the URL) is what the
outbox stores, so the state file never holds a URL and its credentials. ``console://`` is
orderwatch's own apprise service: it prints the message to standard output (the demo uses it).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import anyio
import apprise
from apprise.decorators import notify as apprise_service
from apprise.manager_plugins import NotificationManager

if TYPE_CHECKING:
    from orderwatch._settings import RouteSettings

__all__ = [
    "CONSOLE_SCHEME",
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


def url_key(url: str) -> str:
    """A stable, non-reversible name for ``url``, stored instead of the URL itself."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Destination:
    """One apprise URL of one route. ``url`` carries credentials: never log it, log ``masked``."""

    route: str
    key: str
    masked: str
    url: str = field(repr=False)
    statuses: frozenset[str] | None = None

    def accepts(self, status: str) -> bool:
        """Whether an event whose new status is ``status`` goes to this destination."""
        return self.statuses is None or status in self.statuses


def destinations_for(routes: Iterable[RouteSettings]) -> list[Destination]:
    """Every destination of every route, in configuration order."""
    return [
        Destination(
            route=route.name,
            key=url_key(url),
            masked=mask_url(url),
            url=url,
            statuses=frozenset(route.statuses) if route.statuses is not None else None,
        )
        for route in routes
        for url in route.urls
    ]


def secrets_in(destinations: Sequence[Destination]) -> list[str]:
    """The parts of the destinations' URLs that may be credentials, for the log redactor."""
    found: list[str] = []
    for destination in destinations:
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


def _send_blocking(url: str, title: str, body: str) -> str | None:
    target = apprise.Apprise()
    if not target.add(url):
        return "apprise could not load this URL"
    with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
        ok = bool(target.notify(title=title, body=body))
    if ok:
        return None
    reason = " ".join(str(captured.getvalue()).split())
    return reason or "the service did not accept the message"


async def send(destination: Destination, title: str, body: str) -> str | None:
    """Send one message. None when apprise reports success, else why not (one line)."""
    # apprise is synchronous (requests); a thread keeps the event loop free meanwhile.
    return await anyio.to_thread.run_sync(_send_blocking, destination.url, title, body)
