"""Helpers for the FastAPI integration tests; `serve` is the public `fastapi_mysqlpool.testing.lifespan_client`."""

from __future__ import annotations

import socket

from fastapi_mysqlpool.testing import AppStartupFailed, lifespan_client


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens: connects are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


StartupFailed = AppStartupFailed
serve = lifespan_client
