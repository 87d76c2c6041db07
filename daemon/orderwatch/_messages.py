"""The human message for an event: a title and a plain-text body. Pure.

Title: ``Order #3048: Payed → ReadyForDelivery``, or ``Order #3049: new order (Created)``.
Body: the participant login, the total, the creation date and, when known, how long the order
spent in its previous status.
"""

from __future__ import annotations

from decimal import Decimal

from orderwatch._detect import Event

__all__ = ["format_duration", "render", "title_for"]


def title_for(event: Event) -> str:
    number = event.order.number
    if event.kind == "created":
        return f"Order #{number}: new order ({event.order.status})"
    return f"Order #{number}: {event.previous_status} → {event.order.status}"


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
    order = event.order
    lines = [
        f"Participant: {order.participant_login or 'unknown'}",
        f"Total: {_total(order.total)}",
        f"Created: {_created(order.created_date)}",
    ]
    if event.previous_status is not None and event.previous_since is not None:
        spent = format_duration(event.detected_at - event.previous_since)
        qualifier = "" if event.previous_since_exact else "at least "
        lines.append(f"Time in {event.previous_status}: {qualifier}{spent}")
    if event.after_gap:
        lines.append(
            "Detected after orderwatch was stopped: intermediate statuses may have been missed."
        )
    return title_for(event), "\n".join(lines)
