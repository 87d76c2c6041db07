"""The default human messages."""

from __future__ import annotations

from decimal import Decimal

from orderwatch._detect import Event
from orderwatch._messages import format_duration, render
from orderwatch._models import Order

ORDER = Order(
    id="x",
    number=3048,
    status="ReadyForDelivery",
    created_date="2020-01-11T16:13:56.814239",
    participant_login="sss@ss.ss_company",
    total=Decimal(2200),
)


def event(**overrides: object) -> Event:
    values: dict[str, object] = {
        "kind": "status_changed",
        "order": ORDER,
        "previous_status": "Payed",
        "previous_since": 1000.0,
        "previous_since_exact": True,
        "detected_at": 1000.0 + 7500,
        "after_gap": False,
    }
    values.update(overrides)
    return Event(**values)  # type: ignore[arg-type]


def test_a_transition_title_names_both_statuses() -> None:
    assert render(event())[0] == "Order #3048: Payed → ReadyForDelivery"


def test_a_new_order_title() -> None:
    new = event(
        kind="created",
        order=Order(id="y", number=3049, status="Created"),
        previous_status=None,
        previous_since=None,
    )
    assert render(new)[0] == "Order #3049: new order (Created)"


def test_the_body_carries_login_total_creation_and_time_in_previous_status() -> None:
    body = render(event())[1]
    assert "Participant: sss@ss.ss_company" in body
    assert "Total: 2 200 ₽" in body
    assert "Created: 2020-01-11 16:13:56\n" in body
    assert "Time in Payed: 2h 05m" in body


def test_time_first_seen_is_a_lower_bound_and_a_gap_is_admitted() -> None:
    body = render(event(previous_since_exact=False, after_gap=True))[1]
    assert "Time in Payed: at least 2h 05m" in body
    assert "intermediate statuses may have been missed" in body


def test_durations_read_naturally() -> None:
    assert [format_duration(s) for s in (5, 250, 7500, 200000)] == [
        "5s",
        "4m 10s",
        "2h 05m",
        "2d 7h",
    ]


def test_a_stuck_title_and_body() -> None:
    stuck = event(kind="stuck", previous_status=None, previous_since=1000.0, reminder=2)
    title, body = render(stuck)
    assert title == "Order #3048: stuck in ReadyForDelivery for 2h 05m"
    assert "In ReadyForDelivery for 2h 05m (reminder 2)" in body


def test_a_digest_counts_each_change_and_lists_the_first_twenty_numbers() -> None:
    from orderwatch._messages import digest_text

    moved = [
        event(order=Order(id=str(n), number=n, status="Delivered"), previous_status="Payed")
        for n in range(100, 130)
    ]
    title, body = digest_text(moved)
    assert title == "30 orders changed status"
    lines = body.splitlines()
    assert lines[0] == "Payed → Delivered: 30"
    assert lines[-1] == "Orders: " + ", ".join(f"#{n}" for n in range(100, 120)) + " and 10 more"


def test_template_problems_are_reported_not_raised() -> None:
    from orderwatch._messages import template_problem

    assert template_problem("{{ order.number }} {{ status }}", digest=False) is None
    assert template_problem("{% for e in events %}{{ e.number }}{% endfor %}", digest=True) is None
    assert (
        template_problem("{{ nosuchvariable }}", digest=False)
        == "template error: 'nosuchvariable' is undefined"
    )
    assert template_problem("{{ unclosed", digest=False).startswith("template error on line 1: ")
    sandboxed = template_problem("{{ order.__class__.__mro__ }}", digest=False)
    assert sandboxed is not None


def test_html_templates_escape_order_data() -> None:
    from orderwatch._messages import MessageTemplates

    evil = event(order=Order(id="x", number=1, status="Payed", participant_login="<script>"))
    _title, body = MessageTemplates(body="{{ participant_login }}", fmt="html").render(evil, "e")
    assert body == "&lt;script&gt;"
