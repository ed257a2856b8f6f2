"""What ``pool.acquire()`` returns, and the holder of aiomysql's deprecated ``with await pool`` idiom.

They talk to the pool through `Source`, the three steps it exposes for them, so this module does not
import the pool's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from types import TracebackType
from typing import Any, Protocol

from ._seam import Conn

__all__ = ["AcquireContext", "HeldConnection", "Source"]


class Source(Protocol):
    """The pool, as the acquire context sees it."""

    @property
    def name(self) -> str: ...

    def _acquire_at_once(self) -> Conn | None: ...

    def _acquire(self, timeout: float | None, limit: float | None = None) -> Coroutine[Any, Any, Conn]: ...

    def _release(self, conn: Conn, discard: bool) -> asyncio.Future[None] | None: ...

    def release(self, conn: Conn, *, discard: bool = False) -> asyncio.Future[None]: ...


class AcquireContext(Coroutine[Any, Any, Conn]):
    """What ``pool.acquire()`` returns: awaitable, an async context manager, and (as in
    aiomysql) a coroutine that ``asyncio.create_task`` accepts."""

    __slots__ = ("_conn", "_coro", "_limit", "_pool", "_timeout")

    def __init__(self, pool: Source, timeout: float | None, limit: float | None = None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._limit = limit
        self._conn: Conn | None = None
        self._coro: Coroutine[Any, Any, Conn] | None = None

    def _coroutine(self) -> Coroutine[Any, Any, Conn]:
        # Created on first use only: ``async with`` never needs it on the fast path.
        if self._coro is None:
            self._coro = self._open()
        return self._coro

    def _open(self) -> Coroutine[Any, Any, Conn]:
        return self._pool._acquire(self._timeout, self._limit)

    def __await__(self) -> Generator[Any, None, Conn]:
        return self._coroutine().__await__()

    def send(self, value: Any) -> Any:
        return self._coroutine().send(value)

    def throw(self, *args: Any) -> Any:
        return self._coroutine().throw(*args)

    def close(self) -> None:
        if self._coro is not None:
            self._coro.close()

    async def __aenter__(self) -> Conn:
        pool = self._pool
        conn = pool._acquire_at_once() if self._timeout is None else None
        if conn is None:
            conn = await pool._acquire(self._timeout, self._limit)
        elif self._limit is not None:
            conn.statement_limit = self._limit
        self._conn = conn
        return conn

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        conn = self._conn
        self._conn = None
        if conn is not None:
            reset = self._pool._release(conn, False)
            if reset is not None:
                # Shielded: cancelling the releaser must not cancel the reset, which owns the connection.
                await asyncio.shield(reset)


class HeldConnection:
    """What the deprecated ``with await pool as conn`` gives: releases ``conn`` when the block ends."""

    __slots__ = ("_conn", "_pool")

    def __init__(self, pool: Source, conn: Conn) -> None:
        self._pool = pool
        self._conn = conn

    def __enter__(self) -> Conn:
        return self._conn

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._pool.release(self._conn)
