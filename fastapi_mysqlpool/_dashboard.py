"""``/pool/dashboard``: one self-contained HTML page that charts the pools live.

The page polls ``./stats``, ``./history`` and ``./health`` (relative to its own URL, so it follows
whatever prefix the router is mounted under) every two seconds. The five minutes it charts come from
the process (``/pool/history``), not from the browser, so a page opened during an incident shows what
led to it. It loads nothing else: no CDN, no fonts, so it works offline and behind strict proxies, and
its Content-Security-Policy lets it reach nothing but its own origin.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from starlette.responses import HTMLResponse

__all__ = ["dashboard_response"]

_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors 'self'"
    ),
    "Cache-Control": "no-cache",
}


@cache
def _page() -> str:
    return files(__package__).joinpath("_dashboard.html").read_text(encoding="utf-8")


def dashboard_response() -> HTMLResponse:
    """The dashboard page."""
    return HTMLResponse(_page(), headers=_HEADERS)
