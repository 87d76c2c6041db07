"""Human messages: the default texts, the digest, and routes' own Jinja2 templates. Pure.

Default titles: ``Order #3048: Payed → ReadyForDelivery``, ``Order #3049: new order (Created)``,
``Order #3050: stuck in AwaitingCertificateAssignment for 2h 05m``; a digest:
``60 orders changed status``. Bodies carry the participant login, the total, the creation date
and, when known, how long the order spent in its previous status.

Templates run in Jinja2's sandbox with strict undefined variables; the variables are listed in
``docs/notifications.md`` and built by :func:`template_context`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from orderwatch._detect import Event
from orderwatch._models import Order

__all__ = [
    "MessageTemplates",
    "digest_text",
    "format_duration",
    "render",
    "render_problem",
    "sample_events",
    "template_environment",
    "template_problem",
    "title_for",
]

DIGEST_LISTED: Final = 20  # order numbers a digest lists before "and N more"


def format_duration(seconds: float) -> str:
    """``2d 3h``, ``3h 05m``, ``4m 10s``, ``12s``: two units at most."""
    total = max(int(seconds), 0)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _stuck_for(event: Event) -> float | None:
    if event.kind != "stuck" or event.previous_since is None:
        return None
    return event.detected_at - event.previous_since


def title_for(event: Event) -> str:
    if event.note is not None:  # a watcher notice or a summary: its text is made already
        return event.note.title
    number = event.order.number
    if event.kind == "created":
        return f"Order #{number}: new order ({event.order.status})"
    if event.kind == "stuck":
        spent = format_duration(_stuck_for(event) or 0)
        return f"Order #{number}: stuck in {event.order.status} for {spent}"
    return f"Order #{number}: {event.previous_status} → {event.order.status}"


def _total(total: Decimal | None) -> str:
    if total is None:
        return "unknown"
    text = f"{total:,.2f}".replace(",", " ").removesuffix(".00")
    return f"{text} ₽"


def _created(value: str | None) -> str:
    if not value:
        return "unknown"
    return value.replace("T", " ").split(".", 1)[0]  # seconds are precise enough for people


def render(event: Event) -> tuple[str, str]:
    """The ``(title, body)`` of the default message for ``event``."""
    if event.note is not None:
        return event.note.title, event.note.body
    order = event.order
    lines = [
        f"Participant: {order.participant_login or 'unknown'}",
        f"Total: {_total(order.total)}",
        f"Created: {_created(order.created_date)}",
    ]
    if event.kind == "stuck":
        lines.append(
            f"In {order.status} for {'at least ' if not event.previous_since_exact else ''}"
            f"{format_duration(_stuck_for(event) or 0)}"
            + (f" (reminder {event.reminder})" if event.reminder else "")
        )
    elif event.previous_status is not None and event.previous_since is not None:
        spent = format_duration(event.detected_at - event.previous_since)
        qualifier = "" if event.previous_since_exact else "at least "
        lines.append(f"Time in {event.previous_status}: {qualifier}{spent}")
    if event.acknowledged:
        lines.append(f"It was {event.acknowledged}.")
    if event.resolves_stuck:
        lines.append(f"This resolves the alert that it was stuck in {event.previous_status}.")
    if event.after_gap:
        lines.append(
            "Detected after orderwatch was stopped: intermediate statuses may have been missed."
        )
    return title_for(event), "\n".join(lines)


def _label(event: Event) -> str:
    if event.kind == "created":
        return f"new order ({event.order.status})"
    if event.kind == "stuck":
        return f"stuck in {event.order.status}"
    return f"{event.previous_status} → {event.order.status}"


def digest_text(events: Sequence[Event]) -> tuple[str, str]:
    """One message for many events: counts per change, then the first order numbers."""
    count = len(events)
    if all(e.kind == "status_changed" for e in events):
        title = f"{count} orders changed status"
    elif all(e.kind == "created" for e in events):
        title = f"{count} new orders"
    else:
        title = f"{count} order updates"
    counts = Counter(_label(e) for e in events)
    lines = [f"{label}: {n}" for label, n in counts.most_common()]
    numbers = [f"#{e.order.number}" for e in events[:DIGEST_LISTED]]
    more = f" and {count - DIGEST_LISTED} more" if count > DIGEST_LISTED else ""
    lines.append(f"Orders: {', '.join(numbers)}{more}")
    return title, "\n".join(lines)


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


def template_context(event: Event, event_id: str) -> dict[str, Any]:
    """The variables a route's templates see for one event (documented in notifications.md)."""
    order = event.order
    spent = (
        None
        if event.previous_since is None or event.kind != "status_changed"
        else event.detected_at - event.previous_since
    )
    stuck = _stuck_for(event)
    title, body = render(event)
    order_vars = {
        "id": order.id,
        "number": order.number,
        "status": order.status,
        "created_date": order.created_date,
        "participant_login": order.participant_login,
        "total": None if order.total is None else str(order.total),
    }
    return {
        "event_id": event_id,
        "event_type": event.kind,
        "detected_at": _iso(event.detected_at),
        "after_gap": event.after_gap,
        "resolves_stuck": event.resolves_stuck,
        "acknowledged": event.acknowledged,
        "reminder": event.reminder,
        "order": order_vars,
        **order_vars,
        "previous_status": event.previous_status,
        "time_in_previous_status": None if spent is None else format_duration(spent),
        "time_in_previous_status_seconds": spent,
        "stuck_for": None if stuck is None else format_duration(stuck),
        "stuck_for_seconds": stuck,
        "default_title": title,
        "default_body": body,
        "ack_url": None,
    }


def _digest_context(contexts: list[dict[str, Any]], events: Sequence[Event]) -> dict[str, Any]:
    title, body = digest_text(events)
    counts = Counter(_label(e) for e in events)
    return {
        "events": contexts,
        "count": len(contexts),
        "counts": dict(counts.most_common()),
        "default_title": title,
        "default_body": body,
    }


def template_environment(fmt: str) -> SandboxedEnvironment:
    """Jinja2's sandbox, strict about unknown variables; HTML-escaping for ``html``."""
    return SandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=fmt == "html",
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


_SAMPLE_ORDER: Final = Order(
    id="5e0b7a6c-97b3-4c1e-9b44-3a3a3a3a3a3a",
    number=3048,
    status="ReadyForDelivery",
    created_date="2020-01-11T16:13:56.814239",
    participant_login="sss@ss.ss_company",
    total=Decimal(2200),
)


def sample_events() -> list[Event]:
    """One event of each type, for checking templates and for ``routes explain``."""
    entered, detected = 1_700_000_000.0, 1_700_007_500.0
    return [
        Event(
            kind="status_changed",
            order=_SAMPLE_ORDER,
            previous_status="Payed",
            previous_since=entered,
            previous_since_exact=True,
            detected_at=detected,
            after_gap=False,
        ),
        Event(
            kind="created",
            order=_SAMPLE_ORDER,
            previous_status=None,
            previous_since=None,
            previous_since_exact=False,
            detected_at=detected,
            after_gap=False,
        ),
        Event(
            kind="stuck",
            order=_SAMPLE_ORDER,
            previous_status=None,
            previous_since=entered,
            previous_since_exact=True,
            detected_at=detected,
            after_gap=False,
            reminder=1,
        ),
    ]


def template_problem(source: str, *, digest: bool, fmt: str = "text") -> str | None:
    """Why ``source`` cannot serve as a template (syntax, or an unknown variable); else None."""
    events = sample_events()
    contexts = [template_context(e, f"evt-{i}") for i, e in enumerate(events)]
    samples = [_digest_context(contexts, events)] if digest else contexts
    return render_problem(source, fmt, samples)


def render_problem(source: str, fmt: str, samples: Sequence[dict[str, Any]]) -> str | None:
    """Why ``source`` fails to compile or to render any of ``samples``, in one line; else None."""
    try:
        template = template_environment(fmt).from_string(source)
        for context in samples:
            template.render(context)
    except jinja2.TemplateSyntaxError as error:
        return f"template error on line {error.lineno}: {error.message}"
    except jinja2.TemplateError as error:
        return f"template error: {error.message or type(error).__name__}"
    except Exception as error:  # noqa: BLE001 - any failure while rendering is the template's
        return f"template error: {type(error).__name__}: {error}"
    return None


class MessageTemplates:
    """A route's title/body templates; defaults where a template is not set."""

    def __init__(
        self,
        *,
        title: str | None = None,
        body: str | None = None,
        digest_title: str | None = None,
        digest_body: str | None = None,
        fmt: str = "text",
        ack_link: Callable[[Event], str | None] | None = None,
    ) -> None:
        env = template_environment(fmt)
        self.format = fmt
        self._ack_link = ack_link

        def compile_(source: str | None) -> jinja2.Template | None:
            return None if source is None else env.from_string(source)

        self._title, self._body = compile_(title), compile_(body)
        self._digest_title, self._digest_body = compile_(digest_title), compile_(digest_body)

    def render(self, event: Event, event_id: str) -> tuple[str, str]:
        if event.note is not None:  # a watcher notice or a summary: its text is made already
            return event.note.title, event.note.body
        link = None if self._ack_link is None else self._ack_link(event)
        title, body = render(event)
        if link:
            body += f"\nAcknowledge (stops the reminders): {link}"

        def context() -> dict[str, Any]:
            variables = {**template_context(event, event_id), "ack_url": link}
            variables["default_body"] = body
            return {**variables, "events": [variables]}

        return _fill(self._title, self._body, (title, body), context)

    def render_digest(self, events: Sequence[tuple[Event, str]]) -> tuple[str, str]:
        plain = [event for event, _ in events]

        def context() -> dict[str, Any]:
            contexts = [template_context(event, event_id) for event, event_id in events]
            return _digest_context(contexts, plain)

        return _fill(self._digest_title, self._digest_body, digest_text(plain), context)


def _fill(
    title: jinja2.Template | None,
    body: jinja2.Template | None,
    defaults: tuple[str, str],
    context: Callable[[], dict[str, Any]],
) -> tuple[str, str]:
    """Each part from its template where the route set one, else orderwatch's default text;
    the variables are built only when a template needs them."""
    if title is None and body is None:
        return defaults
    variables = context()
    return (
        defaults[0] if title is None else title.render(variables).strip(),
        defaults[1] if body is None else body.render(variables).strip(),
    )
