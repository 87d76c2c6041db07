"""Authentication to the Orders API: a fixed bearer token, or OAuth2 client credentials.

The client-credentials token is fetched once, cached until shortly before ``expires_in`` runs
out, and fetched again when the API answers 401 (see :meth:`TokenSource.invalidate`). A 400 or
401 from the token endpoint is a :class:`~orderwatch.CredentialsError`: retrying cannot help.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

import anyio
import httpx

from orderwatch._exceptions import CredentialsError, TransientApiError

__all__ = ["ClientCredentials", "StaticToken", "TokenSource"]

_EARLY: Final = 0.1  # refresh after 90% of the token's lifetime…
_EARLY_MAX: Final = 60.0  # …but never more than a minute early


class TokenSource(Protocol):
    async def token(self) -> str:
        """A bearer token believed valid now."""

    def invalidate(self, token: str) -> bool:
        """Forget ``token`` after a 401. False when a fresh token cannot help (a fixed one)."""


class StaticToken:
    """A fixed bearer token from the configuration."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self) -> str:
        return self._token

    def invalidate(self, token: str) -> bool:
        del token
        return False


PostForm = Callable[[str, dict[str, str]], Awaitable[httpx.Response]]


def _oauth_error(response: httpx.Response) -> str:
    try:
        body = json.loads(response.content)
    except ValueError:
        return f"HTTP {response.status_code}"
    error = body.get("error") if isinstance(body, dict) else None
    return str(error) if isinstance(error, str) and error.isprintable() else "no error code"


class ClientCredentials:
    """OAuth2 client credentials, exchanged at ``POST /connect/token`` for a cached token.

    ``post_form(path, form)`` performs the request (the client passes its own, which counts and
    rate-limits it);
    ``on_token`` is told of every new token so that logs can redact it.
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        post_form: PostForm,
        on_token: Callable[[str], None] = lambda _: None,
    ) -> None:
        self._form = {
            "client_id": client_id,
            "client_secret": client_secret,
            "grant_type": "client_credentials",
        }
        self._post_form = post_form
        self._on_token = on_token
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = anyio.Lock()

    async def token(self) -> str:
        if self._token is not None and anyio.current_time() < self._expires_at:
            return self._token  # the common case takes no lock
        async with self._lock:  # one fetch serves every task waiting for it
            if self._token is None or anyio.current_time() >= self._expires_at:
                self._token, lifetime = await self._fetch()
                self._on_token(self._token)
                early = min(lifetime * _EARLY, _EARLY_MAX)
                self._expires_at = anyio.current_time() + lifetime - early
            return self._token

    def invalidate(self, token: str) -> bool:
        if self._token == token:
            self._token = None
        return True

    async def _fetch(self) -> tuple[str, float]:
        response = await self._post_form("/connect/token", self._form)
        if response.status_code in {400, 401}:
            raise CredentialsError(
                f"api: the token endpoint rejected the client credentials "
                f"({_oauth_error(response)}); check api.client_id and api.client_secret"
            )
        if response.status_code != 200:
            raise TransientApiError(f"token: HTTP {response.status_code} from /connect/token")
        try:
            body = json.loads(response.content)
            token, lifetime = body["access_token"], float(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise TransientApiError("token: /connect/token sent an unreadable body") from None
        if not isinstance(token, str) or not token or lifetime <= 0:
            raise TransientApiError("token: /connect/token sent no usable access_token")
        return token, lifetime
