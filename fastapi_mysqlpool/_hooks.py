"""Lifecycle hooks: ``configure`` on every new connection, ``check`` with the pre-ping, ``reset`` on return.

Each hook is an async callable taking the connection. A hook runs inside the bound the pool already
puts on that step, so a hook that hangs costs no more than a server that hangs would:

- ``configure``: after the handshake, before the connection is first handed out, within
  ``connect_timeout``. A failure discards the connection and counts as a connect error.
- ``check``: after the COM_PING of a pre-ping (a connection idle past ``pre_ping_window``), within
  ``ping_timeout``. A failure, or a result of ``False``, discards the connection; the acquirer gets
  another one.
- ``reset``: on release, after the pool's own rollback and reset, within ``reset_timeout``. A
  failure discards the connection.

A hook that is not set costs nothing: the pool tests for ``None`` where it would call it, and a
pool without a ``reset`` hook still skips the reset step for a clean connection.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from typing import Any

from ._errors import HookError
from ._seam import Conn, Driver

__all__ = ["Hook", "Hooks", "end_what_hooks_left", "ping_and_check", "run_hook"]

Hook = Callable[[Conn], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Hooks:
    """The pool's lifecycle hooks, given to `create_pool` as keyword arguments (code only: not in a DSN)."""

    configure: Hook | None = field(
        default=None,
        metadata={
            "doc": "Async `fn(conn)` run on every new connection before it is handed out (session settings, "
            "time zone); "
            "within `connect_timeout`. Raising discards the connection and counts as a connect error (`HookError`)."
        },
    )
    check: Hook | None = field(
        default=None,
        metadata={
            "doc": "Async `fn(conn)` run with the pre-ping, after COM_PING, within `ping_timeout`. Raising or "
            "returning "
            "`False` discards the connection; the acquirer gets another."
        },
    )
    reset: Hook | None = field(
        default=None,
        metadata={
            "doc": "Async `fn(conn)` run on every release, after the pool's own rollback, within `reset_timeout`. "
            "Raising discards the connection."
        },
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and not callable(value):
                raise ValueError(
                    f"invalid value for hook {f.name!r}: {value!r} (expected an async callable taking the connection)"
                )


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__qualname__


async def run_hook(kind: str, fn: Hook, conn: Conn) -> Any:
    """Await ``fn(conn)``; any failure becomes a `HookError` naming the hook and the function."""
    try:
        pending = fn(conn)
        if not inspect.isawaitable(pending):
            raise TypeError(f"it returned {type(pending).__name__}, not an awaitable: make it `async def`")
        result = await pending
    except Exception as exc:
        raise HookError(f"{kind} hook {_name(fn)} failed: {type(exc).__name__}: {exc}") from exc
    return result


async def end_what_hooks_left(driver: Driver, conn: Conn, autocommit: bool | None) -> None:
    """What a hook leaves reaches the next acquirer, and no release looks at it: end it as a release would. A
    transaction the hook opened (with autocommit off, a plain read opens one) is rolled back, results it left
    unread are read, the pool's autocommit mode is set again. Free when the hook left nothing."""
    if driver.session_dirty(conn, autocommit):
        await driver.reset(conn, full=False, autocommit=autocommit)


async def ping_and_check(driver: Driver, conn: Conn, check: Hook | None, autocommit: bool | None) -> None:
    """The pre-ping: COM_PING, then the ``check`` hook when one is set."""
    await driver.ping(conn)
    if check is not None:
        if await run_hook("check", check, conn) is False:
            raise HookError(f"check hook {_name(check)} rejected the connection")
        await end_what_hooks_left(driver, conn, autocommit)
