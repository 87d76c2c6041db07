"""Reading the Orders API's bodies, with every quirk ``docs/orders-api.md`` lists."""

from __future__ import annotations

import contextlib
import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orderwatch import TransientApiError
from orderwatch._models import is_final, parse_order_page, parse_status_body

ORDER = {
    "id": "5E0B7A6C-97B3-4C1E-9B44-3A3A3A3A3A3A",
    "number": 3048,
    "createdDate": "2020-01-11T16:13:56.814239",
    "status": "Created",
    "participantLogin": "sss@ss.ss_company",
    "total": 2200,
}


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_list_under_data_or_orders_reads_the_same() -> None:
    a = parse_order_page(body(data=[ORDER], totalPages=1, currentPage=1, pageSize=20))
    b = parse_order_page(body(orders=[ORDER], totalPages=1, currentPage=1, pageSize=20))
    assert a == b
    assert a.orders[0].number == 3048


def test_ids_are_lower_cased_for_case_insensitive_comparison() -> None:
    page = parse_order_page(body(data=[ORDER], totalPages=1))
    assert page.orders[0].id == ORDER["id"].lower()


def test_number_and_total_may_come_as_strings() -> None:
    item = {**ORDER, "number": "3048", "total": "2200.00"}
    order = parse_order_page(body(data=[item], totalPages=1)).orders[0]
    assert order.number == 3048
    assert order.total == Decimal("2200.00")


def test_old_login_field_name_is_accepted() -> None:
    item = {k: v for k, v in ORDER.items() if k != "participantLogin"} | {"customerEmail": "a@b.c"}
    assert parse_order_page(body(data=[item], totalPages=1)).orders[0].participant_login == "a@b.c"


def test_old_spelling_canceled_means_cancelled_and_is_final() -> None:
    item = {**ORDER, "status": "Canceled"}
    order = parse_order_page(body(data=[item], totalPages=1)).orders[0]
    assert order.status == "Cancelled"
    assert is_final(order.status)


def test_unknown_status_is_kept_and_open() -> None:
    order = parse_order_page(body(data=[{**ORDER, "status": "OnHold"}], totalPages=1)).orders[0]
    assert order.status == "OnHold"
    assert not is_final(order.status)


def test_items_without_id_status_or_number_are_rejected_and_counted() -> None:
    items = [ORDER, {**ORDER, "id": None}, {**ORDER, "status": ""}, {**ORDER, "number": "x"}, 5]
    page = parse_order_page(body(data=items, totalPages=1))
    assert len(page.orders) == 1
    assert page.rejected == 4


def test_status_body_with_the_docs_trailing_comma_is_read() -> None:
    assert parse_status_body(b'{"status": "Created",}') == "Created"


@pytest.mark.parametrize(
    "raw",
    [b"", b"<html>oops</html>", b'{"data": [', b"[]", b'{"data": {}}', b'{"data": []}', b"null"],
)
def test_unusable_list_bodies_raise_transient_errors(raw: bytes) -> None:
    with pytest.raises(TransientApiError):
        parse_order_page(raw)


@pytest.mark.parametrize("raw", [b"", b"{}", b'{"status": 5}', b'{"status": ""}', b"[1]"])
def test_unusable_status_bodies_raise_transient_errors(raw: bytes) -> None:
    with pytest.raises(TransientApiError):
        parse_status_body(raw)


def test_numbers_decrease_tells_whether_a_page_is_newest_first() -> None:
    older = {**ORDER, "id": "b", "number": 3047}
    assert parse_order_page(body(data=[ORDER, older], totalPages=1)).numbers_decrease
    assert not parse_order_page(body(data=[older, ORDER], totalPages=1)).numbers_decrease


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=20,
)


@given(st.binary(max_size=200))
def test_random_bytes_never_crash_the_parsers(raw: bytes) -> None:
    for parse in (parse_order_page, parse_status_body):
        with contextlib.suppress(TransientApiError):
            parse(raw)


@given(st.dictionaries(st.sampled_from(["data", "orders", "totalPages", "x"]), json_values))
def test_random_json_shapes_give_a_page_or_a_transient_error(shape: dict[str, object]) -> None:
    try:
        page = parse_order_page(json.dumps(shape).encode())
    except TransientApiError:
        return
    assert all(order.id and order.status for order in page.orders)
