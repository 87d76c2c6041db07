"""Signed webhooks: one HTTP POST per event, signed per the Standard Webhooks specification.

Body: ``{"type": "order.created" | "order.status_changed" | "order.stuck", "timestamp": …,
"data": {…}}`` (``docs/webhooks.md`` lists every field). Headers ``webhook-id`` (the event id,
the same on every retry), ``webhook-timestamp`` and ``webhook-signature`` (``v1,<base64>``),
made by the reference ``standardwebhooks`` library. A 2xx is success; redirects are not
followed; a 410 Gone disables the webhook; ``Retry-After`` on 429/503 is honoured (at most five
minutes, as for the Orders API: ``_ratelimit.retry_after``).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

import httpx
from standardwebhooks import Webhook

from orderwatch._detect import Event, EventKind
from orderwatch._ratelimit import retry_after
from orderwatch._sinks import Destination

__all__ = ["SendOutcome", "WebhookSender", "event_type", "payload", "test_payload"]

TIMEOUT: Final = 15.0


def event_type(kind: EventKind) -> str:
    return f"order.{kind}"


def _iso(moment: float) -> str:
    return (
        datetime.fromtimestamp(moment, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _total(total: Decimal | None) -> int | float | None:
    if total is None:
        return None
    return int(total) if total == total.to_integral_value() else float(total)


def _note_payload(event: Event, event_id: str) -> bytes:
    assert event.note is not None  # noqa: S101 - the caller checked
    body = {
        "type": f"{event.kind}.{event.note.case}",
        "timestamp": _iso(event.detected_at),
        "data": {"event_id": event_id, **event.note.data, "title": event.note.title},
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def payload(event: Event, event_id: str) -> bytes:
    """The JSON body for ``event``: stable, so every retry carries the same bytes.
    A watcher notice is ``watcher.<case>`` (``watcher.api_unreachable`` …)."""
    if event.note is not None:
        return _note_payload(event, event_id)
    order = event.order
    spent = (
        event.detected_at - event.previous_since
        if event.previous_since is not None and event.kind == "status_changed"
        else None
    )
    data: dict[str, object] = {
        "event_id": event_id,
        "id": order.id,
        "number": order.number,
        "previous_status": event.previous_status,
        "status": order.status,
        "createdDate": order.created_date,
        "participantLogin": order.participant_login,
        "total": _total(order.total),
        "detected_at": _iso(event.detected_at),
        "time_in_previous_status_seconds": spent,
        "after_gap": event.after_gap,
    }
    if event.kind == "status_changed":
        data["resolves_stuck"] = event.resolves_stuck
    if event.kind == "stuck" and event.previous_since is not None:
        data["stuck_since"] = _iso(event.previous_since)
        data["stuck_for_seconds"] = event.detected_at - event.previous_since
        data["reminder"] = event.reminder
    body = {"type": event_type(event.kind), "timestamp": _iso(event.detected_at), "data": data}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def test_payload() -> tuple[str, bytes]:
    """``(event id, body)`` of the ``orderwatch.test`` event ``notify-test`` sends: a type no
    receiver acts on as an order change."""
    event_id = f"test_{uuid.uuid4().hex}"
    body = {
        "type": "orderwatch.test",
        "timestamp": _iso(time.time()),
        "data": {"message": "If you can read this, orderwatch can reach this webhook."},
    }
    return event_id, json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What a destination said: success, or why not (and how long it asked us to wait)."""

    error: str | None = None
    retry_after: float | None = None
    gone: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


class WebhookSender:
    """Posts signed events; one shared HTTP client."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(
            timeout=TIMEOUT,
            follow_redirects=False,
            transport=transport,
            headers={"User-Agent": "orderwatch"},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, destination: Destination, body: bytes, event_id: str) -> SendOutcome:
        assert destination.secret is not None  # noqa: S101 - webhooks always have one
        now = datetime.fromtimestamp(int(time.time()), UTC)  # the header has whole seconds
        signature = Webhook(destination.secret).sign(event_id, now, body.decode())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": event_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        }
        try:
            response = await self._client.post(destination.url, content=body, headers=headers)
        except httpx.TimeoutException:
            return SendOutcome(error=f"timed out after {TIMEOUT:g}s")
        except httpx.TransportError as error:
            return SendOutcome(error=f"connection failed ({type(error).__name__})")
        code = response.status_code
        if 200 <= code < 300:
            return SendOutcome()
        if code == 410:
            return SendOutcome(error="HTTP 410 Gone", gone=True)
        wait = (
            retry_after(response.headers.get("Retry-After"), time.time())
            if code in {429, 503}
            else None
        )
        return SendOutcome(error=f"HTTP {code}", retry_after=wait)
