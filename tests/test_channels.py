"""Each channel, for real: signed webhooks (verified by the reference ``standardwebhooks``
library), e-mail to a real SMTP server, Slack captured at apprise's HTTP layer, JSON."""

from __future__ import annotations

import email
import json
import socket
from collections.abc import Iterator
from decimal import Decimal
from email import policy
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from standardwebhooks import Webhook

from orderwatch._detect import Event
from orderwatch._messages import render
from orderwatch._models import Order
from orderwatch._settings import NotifySettings
from orderwatch._sinks import Destination, destinations_for, send
from orderwatch._webhooks import WebhookSender, payload

pytestmark = pytest.mark.anyio

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ORDER = Order(
    id="5e0b7a6c-97b3-4c1e-9b44-3a3a3a3a3a3a", number=3048, status="Cancelled",
    created_date="2020-01-11T16:13:56.814239", participant_login="sss@ss.ss_company", total=Decimal(2200),
)  # fmt: skip
EVENT = Event(
    kind="status_changed", order=ORDER, previous_status="Payed", previous_since=1000.0,
    previous_since_exact=True, detected_at=1600.0, after_gap=False,
)  # fmt: skip


def webhook(url: str = "https://erp.example/hooks") -> Destination:
    [dest] = destinations_for(
        NotifySettings.model_validate({"webhooks": [{"name": "erp", "url": url, "secret": SECRET}]})
    )
    return dest


async def test_a_webhook_post_verifies_with_the_reference_library() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    sender = WebhookSender(transport=httpx.MockTransport(handler))
    body = payload(EVENT, "evt_1")
    assert (await sender.send(webhook(), body, "evt_1")).ok
    assert (await sender.send(webhook(), body, "evt_1")).ok  # a retry
    await sender.aclose()
    first, retry = seen
    verified = Webhook(SECRET).verify(first.content, dict(first.headers))
    assert verified == json.loads(body)
    assert first.headers["webhook-id"] == retry.headers["webhook-id"] == "evt_1"
    assert first.content == retry.content
    assert first.headers["webhook-signature"].startswith("v1,")
    assert verified["type"] == "order.status_changed"
    data = verified["data"]
    assert data | {"detected_at": None} == {
        "event_id": "evt_1", "id": ORDER.id, "number": 3048, "previous_status": "Payed",
        "status": "Cancelled", "createdDate": ORDER.created_date, "participantLogin": "sss@ss.ss_company",
        "total": 2200, "detected_at": None, "time_in_previous_status_seconds": 600.0,
        "after_gap": False, "resolves_stuck": False,
    }  # fmt: skip
    assert verified["timestamp"] == "1970-01-01T00:26:40.000Z"


async def test_a_tampered_body_fails_verification() -> None:
    seen: list[httpx.Request] = []
    sender = WebhookSender(
        transport=httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(200))
    )
    await sender.send(webhook(), payload(EVENT, "evt_1"), "evt_1")
    await sender.aclose()
    from standardwebhooks.webhooks import WebhookVerificationError

    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(seen[0].content.replace(b"3048", b"3049"), dict(seen[0].headers))


def test_created_and_stuck_payloads() -> None:
    created = json.loads(payload(Event(kind="created", order=ORDER, previous_status=None, previous_since=None,
                                       previous_since_exact=False, detected_at=5.0, after_gap=False), "e"))  # fmt: skip
    assert created["type"] == "order.created"
    assert created["data"]["previous_status"] is None
    stuck = json.loads(payload(Event(kind="stuck", order=ORDER, previous_status=None, previous_since=5.0,
                                     previous_since_exact=True, detected_at=7205.0, after_gap=False, reminder=1), "e"))  # fmt: skip
    assert stuck["type"] == "order.stuck"
    assert (stuck["data"]["stuck_for_seconds"], stuck["data"]["reminder"]) == (7200.0, 1)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(410), ("HTTP 410 Gone", None, True)),
        (httpx.Response(429, headers={"Retry-After": "30"}), ("HTTP 429", 30.0, False)),
        (httpx.Response(503, headers={"Retry-After": "7"}), ("HTTP 503", 7.0, False)),
        (httpx.Response(429, headers={"Retry-After": "86400"}), ("HTTP 429", 300.0, False)),
        (httpx.Response(500, headers={"Retry-After": "30"}), ("HTTP 500", None, False)),
        (httpx.Response(500), ("HTTP 500", None, False)),
        (
            httpx.Response(301, headers={"Location": "https://elsewhere.example/"}),
            ("HTTP 301", None, False),
        ),
    ],
)
async def test_webhook_answers_map_to_outcomes(
    response: httpx.Response, expected: tuple[object, ...]
) -> None:
    sender = WebhookSender(transport=httpx.MockTransport(lambda _: response))
    outcome = await sender.send(webhook(), b"{}", "e")
    await sender.aclose()
    assert (outcome.error, outcome.retry_after, outcome.gone) == expected


async def test_a_webhook_timeout_is_a_failure_not_a_crash() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    sender = WebhookSender(transport=httpx.MockTransport(slow))
    outcome = await sender.send(webhook(), b"{}", "e")
    await sender.aclose()
    assert outcome.error == "timed out after 15s"


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))  # type: ignore[arg-type]
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[int, Mailbox]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, mailbox
    controller.stop()


def apprise_destination(url: str) -> Destination:
    [dest] = destinations_for(
        NotifySettings.model_validate({"routes": [{"name": "ops", "urls": [url]}]})
    )
    return dest


async def test_email_reaches_a_real_smtp_server_with_subject_and_body(
    smtp: tuple[int, Mailbox],
) -> None:
    port, mailbox = smtp
    dest = apprise_destination(
        f"mailto://127.0.0.1:{port}?from=orderwatch@example.com&to=ops@example.com&mode=insecure"
    )
    title, body = render(EVENT)
    assert await send(dest, title, body) is None
    [message] = mailbox.messages
    assert message["Subject"] == "Order #3048: Payed → Cancelled"
    assert message["To"] == "ops@example.com"
    text = message.get_body(("plain", "html")).get_content()  # type: ignore[union-attr]
    assert "sss@ss.ss_company" in text
    assert "2 200 ₽" in text


async def test_slack_gets_the_title_and_body_in_its_payload(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """apprise talks to a fixed Slack host: the request is captured at requests' adapter."""
    import requests
    from requests.adapters import HTTPAdapter

    captured: list[requests.PreparedRequest] = []

    def fake_send(
        self: HTTPAdapter, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        captured.append(request)
        response = requests.Response()
        response.status_code = 200
        response._content = b"ok"
        response.request = request
        response.url = str(request.url)
        return response

    monkeypatch.setattr(HTTPAdapter, "send", fake_send)
    dest = apprise_destination("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#orders")
    title, body = render(EVENT)
    assert await send(dest, title, body) is None
    [request] = captured
    assert request.method == "POST"
    assert (
        request.url
        == "https://hooks.slack.com/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ"
    )
    sent = json.loads(request.body)  # type: ignore[arg-type]
    text = json.dumps(sent, ensure_ascii=False)
    assert "Order #3048: Payed → Cancelled" in text
    assert "sss@ss.ss_company" in text
    assert sent["channel"] == "#orders"
