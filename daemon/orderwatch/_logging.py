"""Logging to stderr, with every known secret redacted from every line, whoever logs it.

Secrets are registered as they become known: the configured client secret, token and apprise
URL credentials at start, each access token when it is fetched. The redaction happens in the
handler, so third-party loggers (apprise, httpx) are covered too.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Final

__all__ = ["configure_logging", "redactor"]

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


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False)


def _formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    if os.environ.get("JOURNAL_STREAM"):
        # journald stamps every line itself; its priority prefix sets the level colour
        return logging.Formatter("%(levelname)s %(message)s")
    return logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S")


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Lines on stderr (``text`` or ``json``); quiet libraries; secrets redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter(log_format))
    handler.addFilter(redactor)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "apprise", "stamina"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
