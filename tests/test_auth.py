"""Authentication to the Orders API: the client-credentials token, its cache and its errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import parse_qs

import anyio
import httpx
import pytest

from orderwatch import CredentialsError, TransientApiError
from orderwatch._auth import ClientCredentials, StaticToken

pytestmark = pytest.mark.anyio

SECRET = "s3cret-client-value"


class TokenEndpoint:
    """A fake ``POST /connect/token``: answers with the queued responses, records the forms."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.forms: list[dict[str, list[str]]] = []
        self.client = httpx.AsyncClient(
            base_url="https://api.test", transport=httpx.MockTransport(self._handle)
        )

    def _handle(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "POST"
        assert request.url.path == "/connect/token"
        self.forms.append(parse_qs(request.content.decode()))
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    def credentials(self, on_token: Callable[[str], None] = lambda _: None) -> ClientCredentials:
        return ClientCredentials(
            "shop-42",
            SECRET,
            post_form=lambda path, form: self.client.post(path, data=form),
            on_token=on_token,
        )


def granted(token: str, expires_in: object = 3600) -> httpx.Response:
    return httpx.Response(200, json={"access_token": token, "expires_in": expires_in})


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """``anyio.current_time`` as a hand-moved clock: ``clock[0]`` is now."""
    now = [1000.0]
    monkeypatch.setattr(anyio, "current_time", lambda: now[0])
    return now


async def test_the_token_is_fetched_once_with_the_client_credentials_form() -> None:
    endpoint = TokenEndpoint(granted("tok-1"))
    source = endpoint.credentials()
    assert await source.token() == "tok-1"
    assert await source.token() == "tok-1"
    assert endpoint.forms == [
        {
            "client_id": ["shop-42"],
            "client_secret": [SECRET],
            "grant_type": ["client_credentials"],
        }
    ]


async def test_tasks_waiting_at_once_share_one_fetch() -> None:
    endpoint = TokenEndpoint(granted("tok-1"))
    source = endpoint.credentials()
    got: list[str] = []

    async def ask() -> None:
        got.append(await source.token())

    async with anyio.create_task_group() as group:
        for _ in range(5):
            group.start_soon(ask)
    assert got == ["tok-1"] * 5
    assert len(endpoint.forms) == 1


async def test_a_token_is_renewed_after_90_percent_of_its_lifetime(clock: list[float]) -> None:
    endpoint = TokenEndpoint(granted("tok-1", 100), granted("tok-2", 100))
    source = endpoint.credentials()
    assert await source.token() == "tok-1"
    clock[0] += 89.9
    assert await source.token() == "tok-1"
    clock[0] += 0.1
    assert await source.token() == "tok-2"


async def test_a_long_lived_token_is_renewed_at_most_a_minute_early(clock: list[float]) -> None:
    """``expires_in`` is seconds, and not always 3600: a string number is read too."""
    endpoint = TokenEndpoint(granted("tok-1", "7200"), granted("tok-2"))
    source = endpoint.credentials()
    await source.token()
    clock[0] += 7200 - 60 - 0.1
    assert await source.token() == "tok-1"
    clock[0] += 0.1
    assert await source.token() == "tok-2"


async def test_after_a_401_the_rejected_token_is_replaced_but_a_newer_one_is_kept() -> None:
    endpoint = TokenEndpoint(granted("tok-1"), granted("tok-2"))
    source = endpoint.credentials()
    assert await source.token() == "tok-1"
    assert source.invalidate("tok-1") is True
    assert await source.token() == "tok-2"
    source.invalidate("tok-1")  # a late 401 for the old token forgets nothing
    assert await source.token() == "tok-2"
    assert len(endpoint.forms) == 2


async def test_every_new_token_is_reported_so_logs_can_redact_it() -> None:
    endpoint = TokenEndpoint(granted("tok-1"), granted("tok-2"))
    seen: list[str] = []
    source = endpoint.credentials(on_token=seen.append)
    await source.token()
    source.invalidate("tok-1")
    await source.token()
    assert seen == ["tok-1", "tok-2"]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (httpx.Response(400, json={"error": "invalid_request"}), "(invalid_request)"),
        (httpx.Response(401, json={"error": "invalid_client"}), "(invalid_client)"),
        (httpx.Response(400, json={"error": "bad\nline"}), "(no error code)"),
        (httpx.Response(400, json=["invalid_client"]), "(no error code)"),
        (httpx.Response(401, text="<html>nope</html>"), "(HTTP 401)"),
    ],
)
async def test_rejected_credentials_are_one_line_naming_the_keys_without_the_secret(
    answer: httpx.Response, reason: str
) -> None:
    source = TokenEndpoint(answer).credentials()
    with pytest.raises(CredentialsError) as caught:
        await source.token()
    message = str(caught.value)
    assert message == (
        f"api: the token endpoint rejected the client credentials {reason}; "
        "check api.client_id and api.client_secret"
    )
    assert SECRET not in message


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (httpx.Response(503), "token: HTTP 503 from /connect/token"),
        (httpx.Response(200, text="{not json"), "token: /connect/token sent an unreadable body"),
        (httpx.Response(200, json={"expires_in": 60}), "token: /connect/token sent an unreadable body"),
        (httpx.Response(200, json={"access_token": "t", "expires_in": "soon"}), "token: /connect/token sent an unreadable body"),
        (httpx.Response(200, json={"access_token": "", "expires_in": 60}), "token: /connect/token sent no usable access_token"),
        (httpx.Response(200, json={"access_token": 12, "expires_in": 60}), "token: /connect/token sent no usable access_token"),
        (httpx.Response(200, json={"access_token": "t", "expires_in": 0}), "token: /connect/token sent no usable access_token"),
    ],
)  # fmt: skip
async def test_a_failing_or_unreadable_token_answer_is_transient(
    answer: httpx.Response, message: str
) -> None:
    endpoint = TokenEndpoint(answer, granted("tok-ok"))
    source = endpoint.credentials()
    with pytest.raises(TransientApiError) as caught:
        await source.token()
    assert str(caught.value) == message
    assert await source.token() == "tok-ok"  # the next try fetches again


async def test_a_missing_expires_in_means_an_hour(clock: list[float]) -> None:
    endpoint = TokenEndpoint(
        httpx.Response(200, content=json.dumps({"access_token": "tok-1"}).encode()),
        granted("tok-2"),
    )
    source = endpoint.credentials()
    await source.token()
    clock[0] += 3600 - 60 - 0.1
    assert await source.token() == "tok-1"
    clock[0] += 0.1
    assert await source.token() == "tok-2"


async def test_a_fixed_token_is_used_as_is_and_a_401_cannot_be_helped() -> None:
    source = StaticToken("fixed-bearer")
    assert await source.token() == "fixed-bearer"
    assert source.invalidate("fixed-bearer") is False
    assert await source.token() == "fixed-bearer"
