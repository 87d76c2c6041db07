"""``orderwatch routes explain``: who would receive an event, and what each would get."""

from __future__ import annotations

import json
import time
from dataclasses import replace

from orderwatch._detect import Event, EventKind
from orderwatch._messages import sample_events
from orderwatch._routing import plan_delivery
from orderwatch._settings import Settings
from orderwatch._sinks import destinations_for
from orderwatch._webhooks import event_type, payload

__all__ = ["explain"]


def _sample(kind: EventKind, status: str, previous: str | None) -> Event:
    template = next(e for e in sample_events() if e.kind == kind)
    order = replace(template.order, status=status)
    return replace(
        template, order=order, previous_status=previous if kind == "status_changed" else None
    )


def explain(settings: Settings, *, status: str, previous: str | None, kind: EventKind) -> str:
    """A report, one block per destination, of where a sample event would go."""
    event = _sample(kind, status, previous)
    what = f"{event_type(kind)} to {status}" + (f" from {previous}" if previous else "")
    lines = [f"An {what} event (sample order #{event.order.number}):", ""]
    now = time.time()
    receivers = 0
    for destination in destinations_for(settings.notify):
        label = f"{'webhook' if destination.kind == 'webhook' else 'route'} {destination.route}"
        if not destination.accepts(event):
            lines.append(f"- {label} ({destination.masked}): not matched")
            continue
        receivers += 1
        lines.append(f"+ {label} ({destination.masked}): receives it")
        if destination.kind == "webhook":
            body = json.loads(payload(event, "evt_sample"))
            lines.extend(f"    {line}" for line in json.dumps(body, indent=2).splitlines())
            continue
        plan = plan_delivery(destination.policy, status, now)
        if plan.held:
            lines.append("    now: held for quiet hours, then sent in a digest")
        elif destination.policy.group_wait:
            lines.append(
                f"    sent after {destination.policy.group_wait:g}s, or in a digest if more "
                f"than {destination.policy.digest_threshold} wait"
            )
        quiet = destination.policy.quiet_hours
        if quiet is not None:
            urgent = status in destination.policy.urgent
            lines.append(
                f"    quiet hours {quiet.start:%H:%M}-{quiet.end:%H:%M} {quiet.zone.key}: "
                + ("urgent, never held" if urgent else "held until they end, then in a digest")
            )
        title, body = destination.templates.render(event, "evt_sample")
        lines.append(f"    title: {title}")
        lines.extend(
            f"    {'body: ' if i == 0 else '      '}{line}"
            for i, line in enumerate(body.splitlines())
        )
    lines.append("")
    lines.append(f"{receivers} destination(s) would receive it; nothing was sent.")
    return "\n".join(lines)
