"""``orderwatch routes explain``: who would receive an event, and what each would get."""

from __future__ import annotations

import json
import time
from dataclasses import replace

from orderwatch._console import summary_event
from orderwatch._detect import Event, EventKind
from orderwatch._messages import sample_events
from orderwatch._routing import plan_delivery, recipients, sent_alone
from orderwatch._settings import Settings
from orderwatch._sinks import destinations_for
from orderwatch._summary import summarize
from orderwatch._watcher import API, Notice, notice_event
from orderwatch._webhooks import event_type, payload

__all__ = ["explain"]


def _sample(kind: EventKind, status: str, previous: str | None, now: float) -> Event:
    if kind == "watcher":
        reason = "the Orders API answers with errors: HTTP 503"
        return notice_event(Notice("api_unreachable", API, "", now - 600, now, reason))
    template = next(e for e in sample_events() if e.kind == kind)
    order = replace(template.order, status=status)
    return replace(
        template, order=order, previous_status=previous if kind == "status_changed" else None
    )


def _summary_samples(settings: Settings, now: float) -> dict[str, Event]:
    """A summary of an empty day for each route that has one."""
    samples: dict[str, Event] = {}
    for summary in settings.notify.summaries:
        empty = summarize(
            start=now - 86400, end=now, events=[], created_at={}, open_orders=[], stuck=[]
        )
        samples.setdefault(summary.route, summary_event(settings, summary, empty, now))
    return samples


def explain(settings: Settings, *, status: str, previous: str | None, kind: EventKind) -> str:
    """A report, one block per destination, of where a sample event would go."""
    now = time.time()
    summaries = _summary_samples(settings, now) if kind == "summary" else {}
    event = _sample(kind, status, previous, now) if kind != "summary" else None
    if event is None:
        lines = ["A summary (a sample: an empty day) goes to the route [[notify.summaries]] names:"]
    elif event.note is not None:
        lines = [f"A {kind} notice (a sample: {event.note.case}):"]
    else:
        what = f"{event_type(kind)} to {status}" + (f" from {previous}" if previous else "")
        lines = [f"An {what} event (sample order #{event.order.number}):"]
    lines.append("")
    receivers = 0
    for destination in destinations_for(settings.notify):
        label = f"{'webhook' if destination.kind == 'webhook' else 'route'} {destination.route}"
        sample = summaries.get(destination.route) if event is None else event
        if sample is None or not recipients(sample, [destination], disabled=(), alerted=()):
            lines.append(f"- {label} ({destination.masked}): not matched")
            continue
        receivers += 1
        lines.append(f"+ {label} ({destination.masked}): receives it")
        if destination.kind == "webhook":
            body = json.loads(payload(sample, "evt_sample"))
            lines.extend(f"    {line}" for line in json.dumps(body, indent=2).splitlines())
            continue
        policy = destination.policy
        alone = sent_alone(sample)
        then = "sent alone" if alone else "sent in a digest"
        plan = plan_delivery(policy, sample.order.status, now)
        if plan.held:
            lines.append(f"    now: held for quiet hours, then {then}")
        elif policy.group_wait:
            lines.append(
                f"    sent after {policy.group_wait:g}s, "
                + (
                    "alone, never in a digest"
                    if alone
                    else f"or in a digest if more than {policy.digest_threshold} wait"
                )
            )
        quiet = policy.quiet_hours
        if quiet is not None:
            urgent = sample.order.status in policy.urgent
            lines.append(
                f"    quiet hours {quiet.start:%H:%M}-{quiet.end:%H:%M} {quiet.zone.key}: "
                + ("urgent, never held" if urgent else f"held until they end, then {then}")
            )
        title, body = destination.templates.render(sample, "evt_sample")
        lines.append(f"    title: {title}")
        lines.extend(
            f"    {'body: ' if i == 0 else '      '}{line}"
            for i, line in enumerate(body.splitlines())
        )
    lines.append("")
    lines.append(f"{receivers} destination(s) would receive it; nothing was sent.")
    return "\n".join(lines)
