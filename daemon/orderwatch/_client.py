"""The Orders API client: requests, their budget, their retries, and what the answers mean.

Retries are decided here and only here: timeouts, connection errors, 5xx, 429 and malformed
bodies are retried with exponential backoff and jitter (a 429 waits as ``Retry-After`` says);
a 401 fetches a new token once; anything else is final. When retries run out the last
:class:`~orderwatch.ApiError` propagates: the caller turns it into "no event", never into a
vanished order.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Self, TypeVar
from urllib.parse import quote

import httpx
import stamina

from orderwatch._auth import ClientCredentials, StaticToken, TokenSource
from orderwatch._exceptions import (
    ApiError,
    CredentialsError,
    PermanentApiError,
    RateLimitedError,
    TransientApiError,
)
from orderwatch._models import OrderPage, parse_order_page, parse_status_body
from orderwatch._ratelimit import RateLimiter, retry_after
from orderwatch._settings import ApiSettings

__all__ = ["OrdersApi", "RetryPolicy"]

log = logging.getLogger("orderwatch.api")

T = TypeVar("T")
Observe = Callable[[str, str, float], None]  # endpoint, code, seconds
_ETAG_CACHE: Final = 512  # answers remembered for conditional requests (If-None-Match)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard one logical request tries before its error reaches the caller."""

    attempts: int = 5
    wait_initial: float = 0.5
    wait_max: float = 30.0
    wait_jitter: float = 1.0


def _backoff(error: Exception) -> bool | float:
    """stamina's hook: retry transient errors; a 429's wait is the server's to choose."""
    if isinstance(error, RateLimitedError) and error.retry_after is not None:
        return error.retry_after
    return isinstance(error, TransientApiError)


def _describe(error: httpx.TransportError) -> str:
    if isinstance(error, httpx.TimeoutException):
        return "timed out"
    cause = error.__cause__ or error.__context__
    reason = getattr(cause, "strerror", None) or type(error).__name__
    return f"connection failed ({reason})"


class OrdersApi:
    """The three calls orderwatch makes: token, order list page, order status."""

    def __init__(
        self,
        settings: ApiSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        observe: Observe = lambda *_: None,
        on_secret: Callable[[str], None] = lambda _: None,
        on_malformed: Callable[[str], None] = lambda _: None,
        before_request: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``before_request``: awaited before every request (the request budget's ledger)."""
        verify: ssl.SSLContext | bool = True  # certificates are always checked
        if settings.ca_bundle is not None:
            verify = ssl.create_default_context(cafile=str(settings.ca_bundle))
        self._http = httpx.AsyncClient(
            base_url=settings.base_url,
            timeout=settings.timeout,
            verify=verify,
            transport=transport,
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": "orderwatch"},
        )
        self._prefix = str(self._http.base_url).rstrip("/") + "/"
        self._headers = dict(self._http.headers)
        self._extensions = {"timeout": self._http.timeout.as_dict()}
        self._limiter = RateLimiter(settings.max_rps)
        self._retry = retry or RetryPolicy()
        self._observe = observe
        self._before_request = before_request
        self._on_malformed = on_malformed
        # url -> (ETag, parsed answer): a 304 reuses the answer without reading a body
        self._etags: OrderedDict[str, tuple[str, object]] = OrderedDict()
        self._failing = False
        self.requests_made = 0
        self._auth: TokenSource
        if settings.token is not None:
            self._auth = StaticToken(settings.token.get_secret_value())
        else:
            assert settings.client_id is not None  # noqa: S101 - guaranteed by ApiSettings
            assert settings.client_secret is not None  # noqa: S101
            self._auth = ClientCredentials(
                settings.client_id,
                settings.client_secret.get_secret_value(),
                post_form=lambda path, form: self._send(
                    "token", self._http.build_request("POST", path, data=form)
                ),
                on_token=on_secret,
            )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def list_orders(self, page: int) -> OrderPage:
        """Page ``page`` (from 1) of the order list."""
        result = await self._call("list", f"/v1/orders?page={page}", parse_order_page)
        if result is None:  # only /status turns a 404 into None
            raise PermanentApiError(f"list: HTTP 404 for page {page}")
        return result

    async def order_status(self, order_id: str) -> str | None:
        """The status of one order; None when the API does not know the id (404)."""
        return await self._call(
            "status", f"/v1/orders/{quote(order_id, safe='')}/status", parse_status_body
        )

    async def _call(self, endpoint: str, url: str, parse: Callable[[bytes], T]) -> T | None:
        try:
            try:
                # Most requests succeed at once: they skip the retry machinery (~40 µs each).
                result = await self._once(endpoint, url, parse)
            except TransientApiError as error:
                result = await self._retry_after_failure(endpoint, url, parse, error)
        except ApiError as error:
            self._failing = not isinstance(error, PermanentApiError)
            raise
        if self._failing:
            log.info("api: answering again")
            self._failing = False
        return result

    async def _retry_after_failure(
        self, endpoint: str, url: str, parse: Callable[[bytes], T], first: TransientApiError
    ) -> T | None:
        """Go on after a first attempt failed with ``first``: stamina replays that failure as
        its own first attempt, so the backoff is exactly as if it had made it."""
        retrying = stamina.retry_context(
            on=_backoff,
            attempts=self._retry.attempts,
            timeout=None,
            wait_initial=self._retry.wait_initial,
            wait_max=self._retry.wait_max,
            wait_jitter=self._retry.wait_jitter,
        )
        replay: TransientApiError | None = first
        async for attempt in retrying:
            with attempt:
                try:
                    if replay is not None:
                        error, replay = replay, None
                        raise error
                    result = await self._once(endpoint, url, parse)
                except TransientApiError as error:
                    if not self._failing:
                        log.warning("api: %s; retrying with backoff", error)
                    self._failing = True
                    raise
        return result

    async def _once(self, endpoint: str, url: str, parse: Callable[[bytes], T]) -> T | None:
        token = await self._auth.token()
        cached = self._etags.get(url)
        etag = cached[0] if cached else None
        response = await self._get(endpoint, url, token, etag)
        if response.status_code == 401 and self._auth.invalidate(token):
            response = await self._get(endpoint, url, await self._auth.token(), etag)
        if response.status_code == 304 and cached is not None:
            self._etags.move_to_end(url)
            return cached[1]  # type: ignore[return-value]  # stored by this same url's parse
        if response.status_code == 404 and endpoint == "status":
            return None
        self._raise_for_status(endpoint, response)
        try:
            result = parse(response.content)
        except TransientApiError:
            self._on_malformed(endpoint)
            raise
        if tag := response.headers.get("ETag"):
            self._remember(url, tag, result)
        return result

    def _raise_for_status(self, endpoint: str, response: httpx.Response) -> None:
        """The error an answer other than 200 means, if any."""
        code = response.status_code
        if code == 401:
            raise CredentialsError(
                "api: the Orders API rejected the access token (HTTP 401); "
                "check api.token or the client credentials"
            )
        if code == 429:
            wait = retry_after(response.headers.get("Retry-After"), time.time())
            if wait:
                self._limiter.hold_off(wait)
            raise RateLimitedError(f"{endpoint}: rate limited (HTTP 429)", wait)
        if code >= 500:
            raise TransientApiError(f"{endpoint}: HTTP {code} from the Orders API")
        if code != 200:
            raise PermanentApiError(f"{endpoint}: HTTP {code} from the Orders API")

    def _remember(self, url: str, tag: str, result: object) -> None:
        self._etags[url] = (tag, result)
        self._etags.move_to_end(url)
        while len(self._etags) > _ETAG_CACHE:
            self._etags.popitem(last=False)

    async def _get(self, endpoint: str, url: str, token: str, etag: str | None) -> httpx.Response:
        headers = {**self._headers, "Authorization": f"Bearer {token}"}
        if etag:
            headers["If-None-Match"] = etag
        # What build_request would make (base URL, default headers, timeout), without merging
        # cookies and query parameters the API never uses: a third of the client's cost a page.
        request = httpx.Request(
            "GET", self._prefix + url.lstrip("/"), headers=headers, extensions=self._extensions
        )
        return await self._send(endpoint, request)

    async def _send(self, endpoint: str, request: httpx.Request) -> httpx.Response:
        if self._before_request is not None:
            await self._before_request()
        await self._limiter.acquire()
        self.requests_made += 1
        started = time.perf_counter()
        try:
            response = await self._http.send(request)
        except httpx.TransportError as error:
            code = "timeout" if isinstance(error, httpx.TimeoutException) else "error"
            self._observe(endpoint, code, time.perf_counter() - started)
            raise TransientApiError(f"{endpoint}: {_describe(error)}") from None
        self._observe(endpoint, str(response.status_code), time.perf_counter() - started)
        return response
