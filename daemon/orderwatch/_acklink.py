"""Ack links: a signed token naming one order's stuck episode, valid for seven days. Pure.

A token is ``<payload>.<signature>``, both base64url without padding: the payload is
``v1|<order id>|<episode start, ms>|<expiry, Unix s>|<status>`` and the signature is
HMAC-SHA256 over it with ``web.secret``. :func:`read_token` refuses anything forged, altered or
expired with :class:`BadToken` saying which; the comparison is constant-time.

The standard library's ``hmac`` does this in a few lines; a library (itsdangerous) would add a
dependency for the same HMAC and one more token format to reason about.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from orderwatch._detect import Event

__all__ = ["TOKEN_LIFETIME", "AckLinks", "AckToken", "BadToken", "make_token", "read_token"]

TOKEN_LIFETIME: Final = 7 * 86400.0
_VERSION: Final = "v1"


class BadToken(ValueError):  # noqa: N818 - it is the token that is bad, not an error of ours
    """The token was not made by this orderwatch (forged, altered) or has expired."""


@dataclass(frozen=True, slots=True)
class AckToken:
    """What a valid token names: an order's stay in ``status`` that began at ``since``."""

    order_id: str
    status: str
    since: float
    expires: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, payload: bytes) -> bytes:
    return hmac.new(secret.encode(), payload, hashlib.sha256).digest()


def make_token(
    secret: str,
    order_id: str,
    *,
    status: str,
    since: float,
    now: float,
    lifetime: float = TOKEN_LIFETIME,
) -> str:
    """A token for the stuck episode of ``order_id`` in ``status`` since ``since``."""
    payload = f"{_VERSION}|{order_id}|{round(since * 1000)}|{int(now + lifetime)}|{status}".encode()
    return f"{_b64(payload)}.{_b64(_sign(secret, payload))}"


def read_token(secret: str, token: str, now: float) -> AckToken:
    """The episode ``token`` names. Raises :class:`BadToken` (forged, altered or expired)."""
    encoded, dot, signature = token.partition(".")
    try:
        payload, given = _unb64(encoded), _unb64(signature)
    except (binascii.Error, ValueError):
        raise BadToken("this link is damaged: it was not made by orderwatch") from None
    if not dot or not hmac.compare_digest(_sign(secret, payload), given):
        raise BadToken("this link's signature does not match: it was altered or forged")
    try:
        version, order_id, since_ms, expires, status = payload.decode().split("|", 4)
        episode = AckToken(order_id, status, int(since_ms) / 1000, float(expires))
    except ValueError:
        raise BadToken("this link is damaged: it was not made by orderwatch") from None
    if version != _VERSION:
        raise BadToken("this link was made by another version of orderwatch")
    if now >= episode.expires:
        raise BadToken("this link has expired (links are valid for 7 days)")
    return episode


@dataclass(frozen=True, slots=True)
class AckLinks:
    """Makes the ``…/ack/<token>`` link a stuck alert carries (``web.public_url``)."""

    public_url: str
    secret: str = field(repr=False)
    clock: Callable[[], float] = time.time

    def for_event(self, event: Event) -> str | None:
        """The link of a ``stuck`` event; None for any other."""
        if event.kind != "stuck" or event.previous_since is None:
            return None
        token = make_token(
            self.secret,
            event.order.id,
            status=event.order.status,
            since=event.previous_since,
            now=self.clock(),
        )
        return f"{self.public_url.rstrip('/')}/ack/{token}"
