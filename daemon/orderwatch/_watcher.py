"""The watcher's own notices: when orderwatch tells people it cannot see or cannot speak. Pure.

Poll outcomes and delivery outcomes come in over time; notices come out:

- ``api_unreachable`` once polls have failed for ``after`` seconds (``notify.watcher_after``),
  then ``api_recovered`` at the first poll that succeeds again;
- ``destination_failing`` once a route's or webhook's deliveries have failed for ``after``
  seconds without one success, then ``destination_recovered`` at its next success.

One notice per outage, never one per failure: the state remembers that an outage was announced,
and it is kept in the state file (:meth:`WatcherState.to_json`), so a restart during an outage
repeats nothing. A recovery is announced only for an outage that was announced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Final, Literal

from orderwatch._detect import Event, Note
from orderwatch._exceptions import ApiError, CredentialsError
from orderwatch._messages import format_duration

__all__ = [
    "API",
    "Notice",
    "WatcherState",
    "api_failure_reason",
    "notice_event",
    "notice_text",
]

WatcherCase = Literal[
    "api_unreachable", "api_recovered", "destination_failing", "destination_recovered"
]
WATCHER_CASES: Final[tuple[WatcherCase, ...]] = (
    "api_unreachable",
    "api_recovered",
    "destination_failing",
    "destination_recovered",
)
API: Final = "api"  # the subject of the API's notices (destinations use their key)


@dataclass(frozen=True, slots=True)
class Outage:
    """Failing since ``since`` (the first failure of the streak); ``reason`` is the latest.
    ``name`` is the route or webhook (empty for the API); ``announced``: its notice went out."""

    since: float
    reason: str
    name: str = ""
    announced: bool = False


@dataclass(frozen=True, slots=True)
class Notice:
    """One notice to send. ``subject`` is :data:`API` or a destination's key, ``name`` the
    route or webhook it concerns (destination notices go to every *other* route)."""

    case: WatcherCase
    subject: str
    name: str
    since: float
    at: float
    reason: str | None = None

    @property
    def blind_for(self) -> float:
        """How long the outage lasted (or has lasted, for a failing notice)."""
        return max(self.at - self.since, 0.0)


@dataclass(frozen=True, slots=True)
class WatcherState:
    """What is failing now. Immutable: every observation returns a new state and its notices."""

    outages: dict[str, Outage] = field(default_factory=dict)

    def poll(self, *, ok: bool, now: float, reason: str | None = None) -> Decision:
        """A poll cycle ended: successfully, or failing for ``reason``."""
        return self._observe(API, "", ok=ok, now=now, reason=reason)

    def delivery(
        self, key: str, name: str, *, ok: bool, now: float, reason: str | None = None
    ) -> Decision:
        """A send to destination ``key`` (of route or webhook ``name``) succeeded or failed."""
        return self._observe(key, name, ok=ok, now=now, reason=reason)

    def due(self, now: float, after: float) -> Decision:
        """The failing notices of outages that have now lasted ``after`` seconds."""
        outages = dict(self.outages)
        notices: list[Notice] = []
        for subject, outage in self.outages.items():
            if not outage.announced and now - outage.since >= after:
                case: WatcherCase = "api_unreachable" if subject == API else "destination_failing"
                notices.append(Notice(case, subject, outage.name, outage.since, now, outage.reason))
                outages[subject] = replace(outage, announced=True)
        return Decision(WatcherState(outages), notices)

    def forget_except(self, keys: set[str]) -> WatcherState:
        """Drop the outages of destinations no longer configured (a reload)."""
        return WatcherState({k: o for k, o in self.outages.items() if k == API or k in keys})

    def _observe(
        self, subject: str, name: str, *, ok: bool, now: float, reason: str | None
    ) -> Decision:
        outages = dict(self.outages)
        current = outages.get(subject)
        if not ok:
            text = reason or "failed"
            outages[subject] = (
                Outage(now, text, name)
                if current is None
                else replace(current, reason=text, name=name or current.name)
            )
            return Decision(WatcherState(outages), [])
        if current is None:
            return Decision(self, [])
        del outages[subject]
        if not current.announced:
            return Decision(WatcherState(outages), [])
        case: WatcherCase = "api_recovered" if subject == API else "destination_recovered"
        return Decision(
            WatcherState(outages), [Notice(case, subject, current.name, current.since, now)]
        )

    def to_json(self) -> str:
        return json.dumps(
            {k: [o.since, o.reason, o.name, o.announced] for k, o in sorted(self.outages.items())}
        )

    @classmethod
    def from_json(cls, text: str | None) -> WatcherState:
        """The state :meth:`to_json` wrote; an empty state for nothing or for unreadable text
        (at worst, a notice is sent once more)."""
        try:
            data = json.loads(text or "{}")
            return cls(
                {
                    str(k): Outage(float(v[0]), str(v[1]), str(v[2]), bool(v[3]))
                    for k, v in data.items()
                }
            )
        except (ValueError, TypeError, IndexError, AttributeError):
            return cls()


@dataclass(frozen=True, slots=True)
class Decision:
    """The state after an observation, and the notices it calls for (usually none)."""

    state: WatcherState
    notices: list[Notice]


def api_failure_reason(error: ApiError) -> str:
    """Why polls fail, in words a chat channel understands (never a secret: messages hold none)."""
    text = str(error)
    if isinstance(error, CredentialsError):
        if "token endpoint" in text:
            code = text.split("(", 1)[1].split(")", 1)[0] if "(" in text else "no error code"
            return (
                f"the Orders API rejects the client credentials ({code}); "
                "check api.client_id / api.client_secret"
            )
        return "the Orders API rejects the access token (HTTP 401); check api.token"
    endpoint, _, detail = text.partition(": ")
    detail = detail or text
    if "timed out" in detail:
        return f"the Orders API does not answer in time ({endpoint} requests time out)"
    if detail.startswith("connection failed"):
        return f"the Orders API cannot be reached: {detail}"
    if "HTTP" in detail:
        return f"the Orders API answers with errors: {detail.removesuffix(' from the Orders API')}"
    return f"the Orders API's answers cannot be used: {detail}"


def _utc(moment: float) -> str:
    return f"{datetime.fromtimestamp(moment, UTC):%Y-%m-%d %H:%M} UTC"


def notice_text(notice: Notice) -> tuple[str, str]:
    """The default ``(title, body)`` of a watcher notice."""
    since, spent = _utc(notice.since), format_duration(notice.blind_for)
    if notice.case == "api_unreachable":
        return (
            "orderwatch cannot see the Orders API",
            (
                f"Polls have failed since {since} ({spent}): {notice.reason}.\n"
                "Until they succeed, new orders and status changes are not seen. "
                "Silence here does not mean nothing changed."
            ),
        )
    if notice.case == "api_recovered":
        return (
            "orderwatch sees the Orders API again",
            (
                f"It was blind for {spent} (since {since}). Changes from that time are announced "
                "as changes across a gap: intermediate statuses may have been missed."
            ),
        )
    if notice.case == "destination_failing":
        return (
            f"Notifications to {notice.name} are failing",
            (
                f"Deliveries to {notice.name} have failed since {since} ({spent}): "
                f"{notice.reason}.\n"
                "They are kept and retried; they are piling up until it accepts messages again."
            ),
        )
    return (
        f"Notifications to {notice.name} work again",
        (
            f"{notice.name} accepts messages again after {spent} of failures (since {since}); "
            "what waited is being delivered."
        ),
    )


def notice_event(notice: Notice) -> Event:
    """The ``watcher`` event that announces ``notice``; ``data`` is what a webhook gets."""
    title, body = notice_text(notice)
    data: dict[str, object] = {
        "case": notice.case,
        "since": notice.since,
        "seconds": notice.blind_for,
        "reason": notice.reason,
    }
    about = None
    if notice.subject != API:
        data["destination"] = about = notice.name
    return Event.about("watcher", Note(notice.case, title, body, data, about), notice.at)
