"""The Orders API client against ``httpx.MockTransport`` fakes."""

from __future__ import annotations

import json
from collections.abc import Callable

import anyio
import httpx
import pytest

from orderwatch import CredentialsError, PermanentApiError, TransientApiError
from orderwatch._client import OrdersApi, RetryPolicy
from orderwatch._settings import ApiSettings

pytestmark = pytest.mark.anyio

SECRET = "sup3r-s3cret-value"
FAST = RetryPolicy(attempts=3, wait_initial=0.0, wait_max=0.0, wait_jitter=0.0)
PAGE = {"data": [], "totalPages": 1, "currentPage": 1, "pageSize": 20}


def settings(**overrides: object) -> ApiSettings:
    values: dict[str, object] = {
        "base_url": "https://api.example/base",
        "client_id": "cid",
        "client_secret": SECRET,
        "max_rps": 1000.0,
    }
    values.update(overrides)
    return ApiSettings.model_validate(values)


def token_reply(token: str = "tok-1", expires_in: int = 3600) -> httpx.Response:
    return httpx.Response(200, json={"access_token": token, "expires_in": expires_in})


Handler = Callable[[httpx.Request], httpx.Response]


def api(handler: Handler, **overrides: object) -> tuple[OrdersApi, list[tuple[str, str, float]]]:
    seen: list[tuple[str, str, float]] = []
    client = OrdersApi(
        settings(**overrides),
        transport=httpx.MockTransport(handler),
        retry=FAST,
        observe=lambda *args: seen.append(args),
    )
    return client, seen


async def test_the_token_is_fetched_once_with_the_form_and_reused() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if request.url.path == "/base/connect/token":
            return token_reply()
        assert request.headers["Authorization"] == "Bearer tok-1"
        return httpx.Response(200, json=PAGE)

    client, seen = api(handler)
    async with client:
        await client.list_orders(1)
        await client.list_orders(2)
    assert [c.url.path for c in calls] == [
        "/base/connect/token",
        "/base/v1/orders",
        "/base/v1/orders",
    ]
    form = dict(x.split("=") for x in calls[0].content.decode().split("&"))
    assert form == {"client_id": "cid", "client_secret": SECRET, "grant_type": "client_credentials"}
    assert [(e, c) for e, c, _ in seen] == [("token", "200"), ("list", "200"), ("list", "200")]


async def test_a_token_is_refreshed_before_it_expires() -> None:
    tokens = iter(["tok-1", "tok-2"])
    used: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/connect/token"):
            return token_reply(next(tokens), expires_in=1)
        used.append(request.headers["Authorization"])
        return httpx.Response(200, json=PAGE)

    client, _ = api(handler)
    async with client:
        await client.list_orders(1)
        await anyio.sleep(1.0)  # the 1 s token is refreshed 0.1 s early
        await client.list_orders(1)
    assert used == ["Bearer tok-1", "Bearer tok-2"]


async def test_a_401_fetches_a_new_token_once_and_retries() -> None:
    tokens = iter(["old", "new"])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/connect/token"):
            return token_reply(next(tokens))
        if request.headers["Authorization"] == "Bearer old":
            return httpx.Response(401)
        return httpx.Response(200, json=PAGE)

    client, seen = api(handler)
    async with client:
        page = await client.list_orders(1)
    assert page.total_pages == 1
    assert [(e, c) for e, c, _ in seen] == [
        ("token", "200"),
        ("list", "401"),
        ("token", "200"),
        ("list", "200"),
    ]


@pytest.mark.parametrize("error", ["invalid_request", "invalid_client", "unauthorized_client"])
async def test_rejected_credentials_are_a_credentials_error_without_retries(error: str) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(400, json={"error": error})

    client, _ = api(handler)
    async with client:
        with pytest.raises(CredentialsError) as caught:
            await client.list_orders(1)
    assert calls == 1
    message = str(caught.value)
    assert error in message
    assert "api.client_id and api.client_secret" in message
    assert SECRET not in message


async def test_a_rejected_fixed_token_is_a_credentials_error() -> None:
    client, _ = api(
        lambda r: httpx.Response(401), token="fixed-token-value", client_id=None, client_secret=None
    )
    async with client:
        with pytest.raises(CredentialsError) as caught:
            await client.list_orders(1)
    assert "fixed-token-value" not in str(caught.value)


async def test_5xx_and_connection_errors_are_retried_then_succeed() -> None:
    script: list[httpx.Response | Exception] = [
        httpx.Response(503),
        httpx.ConnectError("refused"),
        httpx.Response(200, json=PAGE),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/connect/token"):
            return token_reply()
        step = script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    client, seen = api(handler)
    async with client:
        await client.list_orders(1)
    assert [(e, c) for e, c, _ in seen] == [
        ("token", "200"),
        ("list", "503"),
        ("list", "error"),
        ("list", "200"),
    ]


async def test_retries_run_out_into_a_transient_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/connect/token"):
            return token_reply()
        raise httpx.ReadTimeout("slow")

    client, seen = api(handler)
    async with client:
        with pytest.raises(TransientApiError, match="list: timed out"):
            await client.list_orders(1)
    assert [c for e, c, _ in seen if e == "list"] == ["timeout"] * FAST.attempts


def scripted(*replies: httpx.Response) -> Handler:
    """A token for the token endpoint; ``replies`` in turn for everything else."""
    script = list(replies)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/connect/token"):
            return token_reply()
        return script.pop(0)

    return handler


async def test_a_429_waits_as_retry_after_says() -> None:
    client, _ = api(
        scripted(httpx.Response(429, headers={"Retry-After": "1"}), httpx.Response(200, json=PAGE))
    )
    async with client:
        started = anyio.current_time()
        await client.list_orders(1)
        waited = anyio.current_time() - started
    assert waited >= 0.9


async def test_a_malformed_body_is_retried_as_transient() -> None:
    client, _ = api(
        scripted(httpx.Response(200, content=b"<html>"), httpx.Response(200, json=PAGE))
    )
    async with client:
        assert (await client.list_orders(1)).total_pages == 1


async def test_status_404_means_unknown_and_other_4xx_are_permanent() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/connect/token"):
            return token_reply()
        if "missing" in request.url.path:
            return httpx.Response(404)
        if "forbidden" in request.url.path:
            return httpx.Response(403)
        return httpx.Response(200, content=b'{"status": "Payed",}')

    client, _ = api(handler)
    async with client:
        assert await client.order_status("missing") is None
        assert await client.order_status("present") == "Payed"
        with pytest.raises(PermanentApiError):
            await client.order_status("forbidden")


async def test_requests_stay_under_max_rps() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/connect/token"):
            return token_reply()
        return httpx.Response(200, json=PAGE)

    client, _ = api(handler, max_rps=20.0)
    async with client:
        started = anyio.current_time()
        async with anyio.create_task_group() as group:
            for page in range(1, 11):
                group.start_soon(client.list_orders, page)
        elapsed = anyio.current_time() - started
    # 11 requests (token + 10 pages) at 20/s need at least 10 gaps of 50 ms.
    assert elapsed >= 0.45


async def test_no_redirect_is_followed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/connect/token"):
            return token_reply()
        return httpx.Response(302, headers={"Location": "https://elsewhere.example/"})

    client, _ = api(handler)
    async with client:
        with pytest.raises(PermanentApiError, match="HTTP 302"):
            await client.list_orders(1)


async def test_error_messages_carry_no_secret() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, content=json.dumps({"echo": SECRET}).encode())

    client, _ = api(handler)
    async with client:
        with pytest.raises(TransientApiError) as caught:
            await client.list_orders(1)
    assert SECRET not in str(caught.value)


async def test_conditional_requests_reuse_an_unchanged_answer() -> None:
    from orderwatch._sandbox import SandboxApp, World

    world = World(seed=3, orders=30, open_orders=4)
    app = SandboxApp(world)
    seen: list[tuple[str | None, int]] = []
    inner = app.mock_transport()

    async def handler(request: httpx.Request) -> httpx.Response:
        response = await inner.handle_async_request(request)
        if request.url.path.endswith("/orders"):
            seen.append((request.headers.get("If-None-Match"), response.status_code))
        return response

    settings_ = ApiSettings(
        base_url="http://127.0.0.1:9",
        client_id="sandbox",
        client_secret="sandbox-secret",
        max_rps=1000.0,
    )
    async with OrdersApi(settings_, transport=httpx.MockTransport(handler), retry=FAST) as api:
        first = await api.list_orders(1)
        again = await api.list_orders(1)
        world.add_order()
        changed = await api.list_orders(1)
    assert again == first
    assert changed.orders[0].number == first.orders[0].number + 1
    assert [code for _, code in seen] == [200, 304, 200]
    assert seen[0][0] is None
    assert seen[1][0] is not None
