"""apprise, confined: its URLs checked, masked and sent to. A leaf: it imports no orderwatch module.

``console://`` is orderwatch's own apprise service: it prints the message to standard output
(the demo uses it). It is registered when this module is imported, so that validating a
configuration already knows it.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import anyio
import apprise
from apprise.decorators import notify as apprise_service
from apprise.manager_plugins import NotificationManager

__all__ = ["apprise_problem", "mask_url", "send"]

CONSOLE_SCHEME: Final = "console"
_SCHEMES: Final = NotificationManager()


@apprise_service(on=CONSOLE_SCHEME, name="orderwatch console")
def _console(body: str, title: str, notify_type: str, *_: Any, **__: Any) -> bool:  # noqa: ANN401
    del notify_type
    print(f"\n📣 {title}\n" + "".join(f"   {line}\n" for line in body.splitlines()), flush=True)  # noqa: T201
    return True


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def apprise_problem(url: str) -> str | None:
    """Why apprise cannot use ``url``, in a line that shows no credential; None if it can."""
    scheme = _scheme(url)
    if not scheme or scheme not in _SCHEMES.schemas():
        shown = f"{scheme}://…" if scheme else "…"
        return f'no apprise service understands "{shown}"'
    if apprise.Apprise.instantiate(url) is None:
        return f'"{scheme}://…" is not a valid {scheme} URL (see the apprise docs for its form)'
    return None


def mask_url(url: str) -> str:
    """``url`` in apprise's privacy form (credentials masked), without the query string."""
    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        return f"{_scheme(url)}://…"
    return str(plugin.url(privacy=True)).split("?", 1)[0]


def _send_blocking(url: str, title: str, body: str, fmt: str) -> str | None:
    target = apprise.Apprise()
    if not target.add(url):
        return "apprise could not load this URL"
    with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
        ok = bool(target.notify(title=title, body=body, body_format=fmt))
    if ok:
        return None
    reason = " ".join(str(captured.getvalue()).split())
    return reason or "the service did not accept the message"


async def send(url: str, title: str, body: str, fmt: str) -> str | None:
    """Send one message to ``url`` in ``fmt`` (text, markdown, html). None when apprise reports
    success, else why not (one line)."""
    # apprise is synchronous (requests); a thread keeps the event loop free meanwhile.
    return await anyio.to_thread.run_sync(_send_blocking, url, title, body, fmt)
