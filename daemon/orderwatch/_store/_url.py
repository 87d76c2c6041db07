"""State URLs (``postgresql://user:password@host:5432/database``): what is a valid one, and how
one is shown (never with its password)."""

from __future__ import annotations

import importlib.util
import re
from typing import Final
from urllib.parse import urlsplit

__all__ = ["masked_url", "url_problem", "url_secrets"]

SCHEMES: Final = ("postgresql", "postgres")


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot name a state database (one line, without the URL), or ``None``."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return "is not a valid URL (postgresql://user@host:5432/database)"
    if not parts.scheme or "://" not in url:
        return "is not a URL: it must start with postgresql:// (or use state.path for a file)"
    if parts.scheme not in SCHEMES:
        return (
            f"unsupported scheme {parts.scheme}:// (supported: postgresql://; "
            "a SQLite file is state.path)"
        )
    if not parts.path.strip("/") and "dbname=" not in parts.query:
        return "names no database (postgresql://user@host:5432/database)"
    if importlib.util.find_spec("psycopg") is None:
        return "PostgreSQL needs the psycopg driver: pip install 'orderwatch[postgres]'"
    return None


_PASSWORD_IN_QUERY: Final = re.compile(r"(password=)[^&]*", re.IGNORECASE)


def masked_url(url: str) -> str:
    """``url`` with its password (in the user part or the query) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid state.url>"
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
    query = _PASSWORD_IN_QUERY.sub(r"\1***", parts.query)
    return parts._replace(netloc=netloc, query=query).geturl()


def url_secrets(url: str) -> list[str]:
    """What of ``url`` must never be shown: the URL itself and its password (for the
    redactor of log lines)."""
    found = [url]
    try:
        parts = urlsplit(url)
    except ValueError:
        return found
    if parts.password:
        found.append(parts.password)
    found += [
        match.group(0).partition("=")[2] for match in _PASSWORD_IN_QUERY.finditer(parts.query)
    ]
    return found
