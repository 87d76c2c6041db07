"""orderwatch: watches gift-card orders on the Orders API and announces every status change.

The public surface is small: the error tree, the settings loader, and :func:`main` for the
command line. Everything else lives in private modules, one concept each.
"""

from __future__ import annotations

from orderwatch._exceptions import (
    ApiError,
    ConfigError,
    CredentialsError,
    DeliveryError,
    LeadershipLostError,
    OrderwatchError,
    PermanentApiError,
    RateLimitedError,
    StateError,
    StateUnavailableError,
    TransientApiError,
)
from orderwatch._settings import Settings, load_settings
from orderwatch._version import __version__

__all__ = [
    "ApiError",
    "ConfigError",
    "CredentialsError",
    "DeliveryError",
    "LeadershipLostError",
    "OrderwatchError",
    "PermanentApiError",
    "RateLimitedError",
    "Settings",
    "StateError",
    "StateUnavailableError",
    "TransientApiError",
    "__version__",
    "load_settings",
]
