"""Ack-link tokens and the ack page's logic (the page in a real browser: test_ack_browser.py)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import pytest

from orderwatch._acklink import TOKEN_LIFETIME, AckToken, BadToken, make_token, read_token
from orderwatch._silences import Ack
from orderwatch._web import AckPage, EpisodeView, ack_app

SECRET = "a-made-up-web-secret"
NOW = 1_767_600_000.0


def token(**overrides: object) -> str:
    values: dict[str, object] = {"status": "Payed", "since": 1_767_500_000.123, "now": NOW}
    return make_token(SECRET, "5e0b7a6c-97b3", **{**values, **overrides})  # type: ignore[arg-type]


def test_a_token_names_the_order_and_its_stuck_episode() -> None:
    episode = read_token(SECRET, token(), NOW + 60)
    assert episode == AckToken("5e0b7a6c-97b3", "Payed", 1_767_500_000.123, NOW + TOKEN_LIFETIME)


def test_a_token_expires_after_seven_days() -> None:
    read_token(SECRET, token(), NOW + TOKEN_LIFETIME - 1)
    with pytest.raises(BadToken, match="expired"):
        read_token(SECRET, token(), NOW + TOKEN_LIFETIME)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:5] + ("A" if t[5] != "A" else "B") + t[6:],  # payload altered
        lambda t: t[:-3] + ("A" if t[-3] != "A" else "B") + t[-2:],  # signature altered
        lambda t: t.split(".")[0],  # signature removed
        lambda t: make_token("another-secret", "5e0b7a6c-97b3", status="Payed", since=1.0, now=NOW),
        lambda t: "%%%.%%%",
    ],
)
def test_a_forged_or_altered_token_is_refused(tamper: object) -> None:
    with pytest.raises(BadToken):
        read_token(SECRET, tamper(token()), NOW)  # type: ignore[operator]


@dataclass
class FakeDesk:
    view: EpisodeView | None
    acks: list[tuple[AckToken, str | None, str | None]] = field(default_factory=list)

    def episode(self, order_id: str) -> EpisodeView | None:
        return self.view

    def acknowledge(self, token: AckToken, by: str | None, comment: str | None) -> Ack | None:
        self.acks.append((token, by, comment))
        assert self.view is not None
        ack = Ack(
            token.order_id, self.view.number, token.status, token.since, NOW, math.inf, by, comment
        )
        self.view = EpisodeView(self.view.number, self.view.status, self.view.since, ack)
        return ack


def call(
    page: AckPage, method: str, path: str, body: bytes = b""
) -> tuple[str, dict[str, str], str]:
    seen: dict[str, object] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen.update(status=status, headers=dict(headers))

    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    out = b"".join(ack_app(page)(environ, start_response))
    return str(seen["status"]), seen["headers"], out.decode()  # type: ignore[return-value]


def stuck_desk() -> FakeDesk:
    return FakeDesk(EpisodeView(3048, "Payed", 1_767_500_000.123))


def test_get_shows_the_order_and_changes_nothing() -> None:
    desk = stuck_desk()
    status, headers, text = call(AckPage(desk, SECRET, lambda: NOW), "GET", f"/ack/{token()}")
    assert status.startswith("200")
    assert "Order #3048 is stuck in Payed" in text
    assert '<form method="post">' in text and 'name="comment"' in text and 'name="by"' in text
    assert "<script" not in text and "http" not in text.split("</style>")[1]
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert desk.acks == []


def test_post_acknowledges_with_the_form_fields_and_shows_who() -> None:
    desk = stuck_desk()
    body = b"by=Anna+K&comment=%3Cb%3Eon+it%3C%2Fb%3E"
    status, _, text = call(AckPage(desk, SECRET, lambda: NOW), "POST", f"/ack/{token()}", body)
    assert status.startswith("200")
    assert [(by, comment) for _, by, comment in desk.acks] == [("Anna K", "<b>on it</b>")]
    assert "Acknowledged by <strong>Anna K</strong>" in text
    assert "&lt;b&gt;on it&lt;/b&gt;" in text  # escaped, never markup


def test_a_tampered_token_gets_the_403_page_and_changes_nothing() -> None:
    desk = stuck_desk()
    bad = token()[:-2] + ("AA" if not token().endswith("AA") else "BB")
    for method in ("GET", "POST"):
        status, _, text = call(AckPage(desk, SECRET, lambda: NOW), method, f"/ack/{bad}", b"by=x")
        assert status.startswith("403")
        assert "This link is not valid" in text and "Nothing was acknowledged" in text
    assert desk.acks == []


def test_an_order_that_moved_on_has_nothing_to_acknowledge() -> None:
    desk = FakeDesk(EpisodeView(3048, "Delivered", NOW - 10))
    _, _, text = call(AckPage(desk, SECRET, lambda: NOW), "GET", f"/ack/{token()}")
    assert "no longer stuck in Payed" in text and "<form" not in text
