"""Run an ASGI app in-process with its lifespan, the way uvicorn does, for the FastAPI integration tests.

httpx's ``ASGITransport`` sends no lifespan events and no lifespan state; `serve` runs the ASGI lifespan protocol
itself and copies the state into every request's scope, as a server does.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens: connects are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StartupFailed(Exception):
    """The app answered ``lifespan.startup.failed``."""


@asynccontextmanager
async def serve(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    """Start ``app`` (lifespan startup), yield a client for it, then shut it down."""
    state: dict[str, Any] = {}
    to_app: asyncio.Queue[Message] = asyncio.Queue()
    from_app: asyncio.Queue[Message] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": state}
    task = asyncio.ensure_future(app(scope, to_app.get, from_app.put))
    await to_app.put({"type": "lifespan.startup"})
    message = await from_app.get()
    if message["type"] == "lifespan.startup.failed":
        # Starlette re-raises the startup error after reporting it; the message is what a server shows.
        await asyncio.gather(task, return_exceptions=True)
        raise StartupFailed(message.get("message", ""))

    async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
        await app({**scope, "state": dict(state)}, receive, send)

    transport = httpx.ASGITransport(app=with_state, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            yield client
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        message = await from_app.get()
        await task
        assert message["type"] == "lifespan.shutdown.complete", message
