"""Every error orderwatch raises on purpose, in one tree.

    OrderwatchError
    ├── ConfigError               the configuration is invalid; ``problems`` names each key
    ├── ApiError                  the Orders API gave no usable answer
    │   ├── TransientApiError     timeouts, resets, 5xx, 429, malformed bodies: a later try may work
    │   │   └── RateLimitedError  429; ``retry_after`` says how long the server asked us to wait
    │   └── PermanentApiError     the same request will fail again (4xx other than 401/404/429)
    │       └── CredentialsError  the token endpoint or the API rejected the credentials
    ├── StateError                the state (file or database) cannot be opened, read or written
    │   ├── StateUnavailableError the shared database cannot be reached now: a later try may work
    │   └── LeadershipLostError   this instance's lease was taken over: its writes are refused
    └── DeliveryError             a notification destination did not accept a message

Messages are one line, name the cause and never contain a secret: the CLI prints them as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ApiError",
    "ConfigError",
    "CredentialsError",
    "DeliveryError",
    "LeadershipLostError",
    "OrderwatchError",
    "PermanentApiError",
    "RateLimitedError",
    "StateError",
    "StateUnavailableError",
    "TransientApiError",
    "first_orderwatch_error",
]


class OrderwatchError(Exception):
    """Base of every error orderwatch raises on purpose."""


class ConfigError(OrderwatchError):
    """The configuration is invalid. ``problems``: one line per problem, each naming its key."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


class ApiError(OrderwatchError):
    """The Orders API did not give a usable answer."""


class TransientApiError(ApiError):
    """A failure that a later attempt may not see: timeouts, resets, 5xx, 429, malformed bodies."""


class RateLimitedError(TransientApiError):
    """The API answered 429. ``retry_after`` is the wait it asked for, in seconds, if it said."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentApiError(ApiError):
    """Retrying the same request cannot help."""


class CredentialsError(PermanentApiError):
    """The credentials were rejected: a configuration problem, not an outage."""


class StateError(OrderwatchError):
    """The state file or database cannot be opened, read or written."""


class StateUnavailableError(StateError):
    """The shared database (PostgreSQL) cannot be reached now; nothing was written. Transient:
    the daemon neither polls nor sends meanwhile, and tries again with backoff."""


class LeadershipLostError(StateError):
    """A write of poll results found another instance's epoch on the leader lease: this
    instance was paused or cut off past its lease, and the write was rolled back."""


class DeliveryError(OrderwatchError):
    """A notification destination did not accept a message."""


def first_orderwatch_error(group: BaseExceptionGroup[BaseException]) -> OrderwatchError | None:
    """The first :class:`OrderwatchError` in ``group``, nested groups included, or None: a task
    group's failure told as the one-line story the user needs, not as the group."""
    for error in group.exceptions:
        if isinstance(error, OrderwatchError):
            return error
        if isinstance(error, BaseExceptionGroup) and (found := first_orderwatch_error(error)):
            return found
    return None
