"""Logging to stderr, with every known secret redacted from every line, whoever logs it.

Secrets are registered as they become known: the configured client secret, token and apprise
URL credentials at start, each access token when it is fetched. The redaction happens in the
handler, so third-party loggers (apprise, httpx) are covered too.
"""

from __future__ import annotations

import logging
import sys
from typing import Final

__all__ = ["REDACTED", "SecretRedactor", "configure_logging", "redactor"]

REDACTED: Final = "***"
_MIN_SECRET_LENGTH: Final = 4  # shorter strings would redact ordinary words


class SecretRedactor(logging.Filter):
    """Replaces every registered secret in a record's final text with ``***``."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()

    def add(self, *secrets: str | None) -> None:
        self._secrets.update(s for s in secrets if s and len(s) >= _MIN_SECRET_LENGTH)

    def redact(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


redactor: Final = SecretRedactor()


def configure_logging(level: str = "INFO") -> None:
    """Human-readable lines on stderr; quiet libraries; secrets redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S")
    )
    handler.addFilter(redactor)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "apprise", "stamina"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
