"""The ack page: a small web listener on ``web.listen`` behind the links in stuck alerts.

- ``GET /ack/<token>`` shows the order, its status, for how long, and who acknowledged it if
  anyone, with an "Acknowledge" button and two optional fields, ``comment`` and ``by``. A GET
  never changes anything: chat link previews and mail scanners fetch links by themselves.
- ``POST /ack/<token>`` (the button) acknowledges the stuck episode the token names.
- A forged, altered or expired token gets a 403 page saying so, and changes nothing.

Plain HTML, no JavaScript, no external asset; every value is escaped. What the page reads and
writes goes through an :class:`AckDesk`, so the listener knows nothing of the state file.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import parse_qs

from orderwatch._acklink import AckToken, BadToken, read_token
from orderwatch._messages import format_duration
from orderwatch._metrics import Listener
from orderwatch._silences import Ack

__all__ = ["AckPage", "EpisodeView", "WebServer", "ack_app"]

_MAX_BODY: Final = 8192
_MAX_FIELD: Final = 200
_HEADERS: Final = [
    ("Content-Type", "text/html; charset=utf-8"),
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "no-referrer"),  # the token is in the URL
    ("X-Content-Type-Options", "nosniff"),
    (
        "Content-Security-Policy",
        (
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'"
        ),
    ),
]
_STYLE: Final = (
    "body{font:16px/1.5 system-ui,sans-serif;max-width:34em;margin:2em auto;padding:0 1em;"
    "color:#222}h1{font-size:1.4em}label{display:block;margin:.6em 0 .2em}"
    "input[type=text]{width:100%;padding:.4em;box-sizing:border-box}"
    "button{margin-top:1em;padding:.5em 1.4em;font-size:1em}.note{color:#555}"
)


@dataclass(frozen=True, slots=True)
class EpisodeView:
    """What the page shows of an order: its number and status now, since when, its ack."""

    number: int
    status: str
    since: float
    ack: Ack | None = None


class AckDesk(Protocol):
    """Where the page reads orders and records acknowledgements (the state, in the daemon)."""

    def episode(self, order_id: str) -> EpisodeView | None:
        """The order as the state knows it now; None when unknown."""

    def acknowledge(self, token: AckToken, by: str | None, comment: str | None) -> Ack | None:
        """Acknowledge the episode ``token`` names; None when it is over (the order moved on)."""


def _page(title: str, *paragraphs: str, form: str = "") -> bytes:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}{form}</body></html>"
    ).encode()


def _when(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(moment))


def _ack_line(ack: Ack) -> str:
    who = html.escape(ack.by) if ack.by else "someone"
    text = f"Acknowledged by <strong>{who}</strong> at {_when(ack.at)}"
    if ack.comment:
        text += f": “{html.escape(ack.comment)}”"
    return text + "."


@dataclass(frozen=True, slots=True)
class AckPage:
    """The page's logic, request by request: ``(status, body)`` for a token and a method."""

    desk: AckDesk
    secret: str
    clock: Callable[[], float] = time.time

    def get(self, token: str) -> tuple[str, bytes]:
        try:
            episode = read_token(self.secret, token, self.clock())
        except BadToken as error:
            return self._refused(error)
        view = self.desk.episode(episode.order_id)
        if view is None:
            return "404 Not Found", _page("Unknown order", "orderwatch does not know this order.")
        return "200 OK", self._show(episode, view)

    def post(self, token: str, form: dict[str, str]) -> tuple[str, bytes]:
        try:
            episode = read_token(self.secret, token, self.clock())
        except BadToken as error:
            return self._refused(error)
        by, comment = form.get("by") or None, form.get("comment") or None
        self.desk.acknowledge(episode, by, comment)
        view = self.desk.episode(episode.order_id)
        if view is None:
            return "404 Not Found", _page("Unknown order", "orderwatch does not know this order.")
        return "200 OK", self._show(episode, view)

    def _refused(self, error: BadToken) -> tuple[str, bytes]:
        return "403 Forbidden", _page(
            "This link is not valid",
            html.escape(str(error)) + ".",
            "Nothing was acknowledged. Use the link of a recent alert, or "
            "<code>orderwatch ack NUMBER</code>.",
        )

    def _show(self, episode: AckToken, view: EpisodeView) -> bytes:
        number = f"Order #{view.number}"
        same = view.status == episode.status and abs(view.since - episode.since) < 0.001
        if not same:
            return _page(
                f"{number}: no longer stuck in {episode.status}",
                f"It is now in <strong>{html.escape(view.status)}</strong> "
                f"(since {_when(view.since)}). There is nothing to acknowledge.",
            )
        spent = format_duration(self.clock() - view.since)
        lines = [
            f"<strong>{html.escape(view.status)}</strong> for {spent} (since {_when(view.since)}).",
        ]
        if view.ack is not None:
            lines.append(_ack_line(view.ack))
            lines.append('<span class="note">Reminders stop until it leaves this status.</span>')
        button = "Acknowledge again" if view.ack is not None else "Acknowledge"
        form = (
            '<form method="post">'
            '<label for="by">Your name (optional)</label>'
            f'<input type="text" id="by" name="by" maxlength="{_MAX_FIELD}">'
            '<label for="comment">Comment (optional)</label>'
            f'<input type="text" id="comment" name="comment" maxlength="{_MAX_FIELD}">'
            f'<button type="submit">{button}</button></form>'
        )
        return _page(f"{number} is stuck in {episode.status}", *lines, form=form)


def _form(environ: dict[str, Any]) -> dict[str, str]:
    try:
        length = min(int(environ.get("CONTENT_LENGTH") or 0), _MAX_BODY)
    except ValueError:
        length = 0
    raw = environ["wsgi.input"].read(length).decode("utf-8", errors="replace") if length else ""
    fields = parse_qs(raw, keep_blank_values=False)
    return {
        name: " ".join(fields[name][0].split())[:_MAX_FIELD]
        for name in ("by", "comment")
        if fields.get(name)
    }


def ack_app(page: AckPage) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """The WSGI application serving ``page`` under ``/ack/<token>``."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO") or "")
        method = environ.get("REQUEST_METHOD", "GET")
        token = path.removeprefix("/ack/") if path.startswith("/ack/") else None
        if not token or "/" in token:
            status, body = "404 Not Found", _page("Not found", "Nothing here.")
        elif method in {"GET", "HEAD"}:
            status, body = page.get(token)
        elif method == "POST":
            status, body = page.post(token, _form(environ))
        else:
            start_response("405 Method Not Allowed", [*_HEADERS, ("Allow", "GET, POST")])
            return [_page("Method not allowed", "Use the link, then the button.")]
        start_response(status, [*_HEADERS, ("Content-Length", str(len(body)))])
        return [b""] if method == "HEAD" else [body]

    return app


class WebServer(Listener):
    """The ack page on ``host:port``, served from a thread until :meth:`close`."""

    def __init__(self, host: str, port: int, page: AckPage) -> None:
        super().__init__(host, port, ack_app(page), name="orderwatch-web", key="web.listen")
