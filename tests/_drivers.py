"""The drivers the suites run over, and their DB-API errors under one name.

The pool, reliability and FastAPI suites take the ``driver`` fixture (tests/conftest.py): each test runs once
per driver. ``db_errors.OperationalError`` is the error class of the driver the current test runs on, so a test
is written once: aiomysql raises PyMySQL's ``pymysql.err`` classes, asyncmy its own ``asyncmy.errors``, with
the same names and the same hierarchy.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

__all__ = ["DRIVER_NAMES", "current", "db_errors"]

DRIVER_NAMES = ("aiomysql", "asyncmy")
_ERROR_MODULES = {"aiomysql": "pymysql.err", "asyncmy": "asyncmy.errors"}
# The driver of the test that runs now (set by the ``driver`` fixture); aiomysql, the default, otherwise.
_current = ["aiomysql"]


def current() -> str:
    """The driver the running test uses."""
    return _current[0]


def select(name: str) -> None:
    _current[0] = name


class _Errors:
    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module(_ERROR_MODULES[_current[0]]), name)


db_errors: Any = _Errors()


def error_classes(name: str) -> tuple[type[Exception], ...]:
    """The error class called ``name`` of every driver that is installed: for code that runs outside a test (an app
    served by uvicorn) or that sees errors of either driver."""
    classes = []
    for module in _ERROR_MODULES.values():
        try:
            classes.append(getattr(importlib.import_module(module), name))
        except ImportError:
            continue
    return tuple(classes)


def connection_class() -> type[Any]:
    """The driver's own connection class, which the pool's connections subclass."""
    if current() == "aiomysql":
        import aiomysql

        return aiomysql.Connection  # type: ignore[no-any-return]
    import asyncmy

    return asyncmy.Connection  # type: ignore[no-any-return]


def unbuffered_cursor() -> type[Any]:
    """The driver's unbuffered (server-side) cursor class."""
    if current() == "aiomysql":
        import aiomysql

        return aiomysql.SSCursor  # type: ignore[no-any-return]
    from asyncmy.cursors import SSCursor

    return SSCursor  # type: ignore[no-any-return]


async def open_cursor(conn: Any, cursor_class: type[Any] | None = None) -> Any:
    """A cursor left open (no ``async with``, whose exit would read what the test leaves unread): aiomysql's
    ``conn.cursor()`` is a coroutine, asyncmy's a plain call."""
    cursor = conn.cursor(cursor_class) if cursor_class is not None else conn.cursor()
    return await cursor if inspect.isawaitable(cursor) else cursor


def closed(conn: Any) -> bool:
    """Whether the connection is closed: aiomysql's ``conn.closed``, asyncmy's ``not conn.connected``."""
    return bool(conn.closed) if current() == "aiomysql" else not conn.connected


def socket_of(conn: Any) -> Any:
    """The socket under the connection's transport (the TLS one's, once TLS is up), as asyncio exposes it."""
    transport = conn._writer.transport if current() == "aiomysql" else conn._transport
    return transport.get_extra_info("socket")


def reset_socket(conn: Any) -> None:
    """Tell the connection's protocol what asyncio tells it on a TCP reset."""
    protocol = conn._writer._protocol if current() == "aiomysql" else conn._proto
    protocol.connection_lost(ConnectionResetError())
