"""The order model and the tolerant reading of the Orders API's bodies.

Parsing is pure: bytes in, typed values out, :class:`~orderwatch.TransientApiError` for a body
that cannot be read. The quirks it absorbs are listed in ``docs/orders-api.md``: the list key
is ``data`` or ``orders``, ``number`` and ``total`` may be strings, the login may be called
``customerEmail``, the status body may carry a trailing comma, ``Canceled`` means ``Cancelled``.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from orderwatch._exceptions import TransientApiError

__all__ = [
    "FINAL_STATUSES",
    "KNOWN_STATUSES",
    "OPEN_STATUSES",
    "PAGE_SIZE",
    "Order",
    "OrderPage",
    "canonical_status",
    "is_final",
    "parse_order_page",
    "parse_status_body",
]

PAGE_SIZE: Final = 20

KNOWN_STATUSES: Final = (
    "Created",
    "Payed",
    "ReadyForDelivery",
    "PartiallyDelivered",
    "AwaitingCertificateAssignment",
    "Delivered",
    "Cancelled",
)
FINAL_STATUSES: Final = frozenset({"Delivered", "Cancelled"})
OPEN_STATUSES: Final = tuple(s for s in KNOWN_STATUSES if s not in FINAL_STATUSES)
_ALIASES: Final = {"Canceled": "Cancelled"}
_SPELLINGS: Final = frozenset(KNOWN_STATUSES) | _ALIASES.keys()


def canonical_status(raw: str) -> str:
    """The one spelling orderwatch uses for a status string the API sent."""
    status = raw if raw in _SPELLINGS else raw.strip()  # the common case needs no stripping
    return _ALIASES.get(status, status)


def is_final(status: str) -> bool:
    """Delivered and Cancelled end an order; every other status, unknown ones too, keeps it open."""
    return canonical_status(status) in FINAL_STATUSES


@dataclass(frozen=True, slots=True)
class Order:
    """One order as the list endpoint showed it. ``id`` is lower-cased, ``status`` canonical."""

    id: str
    number: int
    status: str
    created_date: str | None = None
    participant_login: str | None = None
    total: Decimal | None = None


@dataclass(frozen=True, slots=True)
class OrderPage:
    """One page of the order list. ``rejected`` counts items too malformed to use."""

    orders: tuple[Order, ...]
    total_pages: int
    current_page: int | None
    rejected: int = 0

    @property
    def numbers_decrease(self) -> bool:
        """True when the page is newest first, as the docs show but do not promise."""
        numbers = [order.number for order in self.orders]
        return all(a > b for a, b in itertools.pairwise(numbers))


_TRAILING_COMMA = re.compile(rb",(\s*[}\]])")


def _loads(body: bytes, what: str) -> Any:  # noqa: ANN401 - JSON is Any until checked
    try:
        return json.loads(body)
    except ValueError:
        pass
    try:
        # The docs' own example has a trailing comma; forgiving exactly that costs little.
        return json.loads(_TRAILING_COMMA.sub(rb"\1", body))
    except ValueError:
        raise TransientApiError(f"{what}: the body is not valid JSON") from None


def _as_int(value: object) -> int | None:
    if type(value) is int:  # the common case first; bool, a subclass of int, is not one
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _as_decimal(value: object) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _as_text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _parse_order(item: object) -> Order | None:
    if not isinstance(item, dict):
        return None
    order_id, status, number = item.get("id"), item.get("status"), _as_int(item.get("number"))
    if not isinstance(order_id, str) or not order_id.strip():
        return None
    if not isinstance(status, str) or not status.strip() or number is None:
        return None
    return Order(
        order_id.strip().lower(),
        number,
        canonical_status(status),
        _as_text(item.get("createdDate")),
        _as_text(item.get("participantLogin")) or _as_text(item.get("customerEmail")),
        _as_decimal(item.get("total")),
    )


def parse_order_page(body: bytes) -> OrderPage:
    """Read a ``GET /v1/orders`` body. Items without a usable id, number or status are rejected.

    Raises :class:`TransientApiError` when the body as a whole is unusable (not JSON, no list,
    no ``totalPages``): such a page tells nothing and must produce no event.
    """
    data = _loads(body, "order list")
    if not isinstance(data, dict):
        raise TransientApiError("order list: the body is not a JSON object")
    items = data.get("data")
    if items is None:
        items = data.get("orders")
    if not isinstance(items, list):
        raise TransientApiError("order list: the body has no 'data' or 'orders' list")
    total_pages = _as_int(data.get("totalPages"))
    if total_pages is None or total_pages < 0:
        raise TransientApiError("order list: the body has no usable 'totalPages'")
    parsed = [_parse_order(item) for item in items]
    orders = tuple(order for order in parsed if order is not None)
    return OrderPage(
        orders=orders,
        total_pages=total_pages,
        current_page=_as_int(data.get("currentPage")),
        rejected=len(parsed) - len(orders),
    )


def parse_status_body(body: bytes) -> str:
    """Read a ``GET /v1/orders/{id}/status`` body into a canonical status."""
    data = _loads(body, "order status")
    status = data.get("status") if isinstance(data, dict) else None
    if not isinstance(status, str) or not status.strip():
        raise TransientApiError("order status: the body has no 'status' string")
    return canonical_status(status)
