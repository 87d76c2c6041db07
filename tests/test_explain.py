"""``routes explain``: the report of who would receive a sample event, and what each would get."""

from __future__ import annotations

import json

from orderwatch._explain import explain
from orderwatch._settings import Settings

from .conftest import SECRET


def settings(**notify: object) -> Settings:
    return Settings.model_validate(
        {"api": {"base_url": "https://api.test", "token": "fixed-bearer"}, "notify": notify}
    )


def webhook_body(report: str) -> dict[str, object]:
    """The JSON printed, indented, under a webhook that receives the event."""
    start = report.index("    {")
    end = report.index("\n    }", start) + len("\n    }")
    body: dict[str, object] = json.loads(report[start:end])
    return body


def test_matched_routes_show_their_rendered_message_and_others_say_not_matched() -> None:
    report = explain(
        settings(
            routes=[
                {"name": "ops", "urls": ["json://user:pa55word@example.com/hook"], "group_wait": 0},
                {"name": "finance", "urls": ["json://example.org/x"], "statuses": ["Delivered"]},
            ]
        ),
        status="Cancelled",
        previous="Payed",
        kind="status_changed",
    )
    lines = report.splitlines()
    assert lines[0] == "An order.status_changed to Cancelled from Payed event (sample order #3048):"
    assert "+ route ops (json://user:****@example.com/hook): receives it" in lines
    assert "    title: Order #3048: Payed → Cancelled" in lines
    assert "- route finance (json://example.org/x): not matched" in lines
    assert lines[-1] == "1 destination(s) would receive it; nothing was sent."
    assert "pa55word" not in report


def test_grouping_and_quiet_hours_are_explained_for_each_route() -> None:
    report = explain(
        settings(
            routes=[
                {
                    "name": "night",
                    "urls": ["json://example.com/n"],
                    "group_wait": 30,
                    "digest_threshold": 4,
                    "quiet_hours": "00:00-23:59",
                    "timezone": "Europe/Moscow",
                    "urgent": ["Cancelled"],
                }
            ]
        ),
        status="Cancelled",
        previous="Payed",
        kind="status_changed",
    )
    assert "    sent after 30s, or in a digest if more than 4 wait" in report
    assert "    quiet hours 00:00-23:59 Europe/Moscow: urgent, never held" in report
    assert "held for quiet hours" not in report


def test_a_webhook_shows_the_payload_it_would_be_posted() -> None:
    report = explain(
        settings(
            webhooks=[
                {"name": "erp", "url": "https://erp.example/hooks?key=abc", "secret": SECRET},
            ]
        ),
        status="Created",
        previous=None,
        kind="created",
    )
    assert "+ webhook erp (https://erp.example/hooks): receives it" in report
    body = webhook_body(report)
    assert body["type"] == "order.created"
    data = body["data"]
    assert isinstance(data, dict)
    assert data["status"] == "Created"
    assert SECRET not in report
    assert "key=abc" not in report
    assert report.endswith("1 destination(s) would receive it; nothing was sent.")


def test_no_destination_is_reported_as_nobody_receiving_it() -> None:
    report = explain(settings(), status="Delivered", previous="Payed", kind="status_changed")
    assert report.splitlines()[-1] == "0 destination(s) would receive it; nothing was sent."


def test_a_watcher_notice_goes_to_routes_that_take_it_and_never_in_a_digest() -> None:
    report = explain(
        settings(
            routes=[
                {"name": "ops", "urls": ["json://example.com/ops"], "statuses": ["Cancelled"]},
                {"name": "orders", "urls": ["json://example.com/o"], "events": ["created"]},
            ],
            webhooks=[{"name": "erp", "url": "https://erp.test/h", "secret": SECRET}],
        ),
        status="Created",
        previous=None,
        kind="watcher",
    )
    lines = report.splitlines()
    assert lines[0] == "A watcher notice (a sample: api_unreachable):"
    assert "+ route ops (json://example.com/ops): receives it" in lines
    assert "    sent after 10s, alone, never in a digest" in lines
    assert "    title: orderwatch cannot see the Orders API" in lines
    assert "- route orders (json://example.com/o): not matched" in lines
    assert webhook_body(report)["type"] == "watcher.api_unreachable"


def test_a_summary_goes_to_the_route_its_summary_names_only() -> None:
    report = explain(
        settings(
            routes=[
                {"name": "ops", "urls": ["json://example.com/ops"], "events": ["stuck"]},
                {"name": "chat", "urls": ["json://example.com/chat"]},
            ],
            summaries=[{"route": "ops", "at": "09:00"}],
        ),
        status="Created",
        previous=None,
        kind="summary",
    )
    assert "+ route ops (json://example.com/ops): receives it" in report
    assert "    title: Daily summary to " in report
    assert "- route chat (json://example.com/chat): not matched" in report
    assert report.endswith("1 destination(s) would receive it; nothing was sent.")
