"""What a pool shows: its properties, `stats()` and repr, and the idioms of aiomysql's pool it accepts.

`PoolSurface` is the base of `Pool`. It reads the pool's state and never changes it: where each connection
is, and every step that moves one, belong to `Pool` (``_pool``).
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ._acquire import HeldConnection
from ._config import PoolOptions
from ._entry import Entry
from ._errors import PoolMisuse
from ._hosts import HostSet
from ._reconnect import Reconnect
from ._retry import Transaction, run_transaction
from ._seam import Conn, Driver
from ._stats import PoolStats
from ._waiters import Waiter

__all__ = ["PoolSurface"]

_T = TypeVar("_T")
_P = TypeVar("_P", bound="PoolSurface")


class PoolSurface:
    """The read-only side of a pool, and aiomysql's idioms (see the module docstring)."""

    _name: str
    _options: PoolOptions
    _connect_kwargs: dict[str, Any]
    _driver: Driver
    _free: deque[Entry]
    _in_use: dict[Conn, Entry]
    _queue: deque[Waiter]
    _opening: int
    _checking: int
    _closing: bool
    _closed: bool
    _stats: PoolStats
    _hosts: HostSet
    _reconnect: Reconnect

    if TYPE_CHECKING:

        def close(self) -> None: ...

        async def wait_closed(self) -> None: ...

        async def _acquire(self, timeout: float | None, limit: float | None = None) -> Conn: ...

    @property
    def name(self) -> str:
        """The pool's name: ``name=`` or host:port/db. Used in logs, errors, stats and metrics."""
        return self._name

    @property
    def options(self) -> PoolOptions:
        """The validated `PoolOptions` the pool runs with."""
        return self._options

    @property
    def minsize(self) -> int:
        """Connections kept open even when idle."""
        return self._options.minsize

    @property
    def maxsize(self) -> int:
        """Upper bound on open connections."""
        return self._options.maxsize

    @property
    def size(self) -> int:
        """Open connections, plus those being opened or checked."""
        return len(self._free) + len(self._in_use) + self._opening + self._checking

    @property
    def freesize(self) -> int:
        """Idle connections ready to be handed out."""
        return len(self._free)

    @property
    def closed(self) -> bool:
        """True once `wait_closed()` has finished, as in aiomysql."""
        return self._closed

    @property
    def driver(self) -> Driver:
        """The driver the pool's connections belong to (``driver=`` option): aiomysql or asyncmy."""
        return self._driver

    @property
    def last_error(self) -> str | None:
        """The last connect error, masked; None before the first one."""
        return self._reconnect.last_error

    @property
    def _used(self) -> set[Conn]:
        # The connections callers hold, under the name aiomysql's pool gives them (not those being reset).
        return {conn for conn, entry in self._in_use.items() if not entry.resetting}

    @property
    def echo(self) -> bool:
        """Whether connections log their SQL, as aiomysql's ``echo=True``."""
        return bool(self._connect_kwargs.get("echo", False))

    def __repr__(self) -> str:
        return (
            f"<Pool {self._name!r} {self._state()} size={self.size}/{self.maxsize} "
            f"free={len(self._free)} in_use={len(self._in_use)} waiting={len(self._queue)}>"
        )

    def _state(self) -> str:
        return "closed" if self._closed else "closing" if self._closing else "open"

    def stats(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot of the pool's state and counters."""
        return {
            "name": self._name,
            "state": self._state(),
            "minsize": self.minsize,
            "maxsize": self.maxsize,
            "size": self.size,
            "free": len(self._free),
            "in_use": len(self._in_use),
            "waiting": len(self._queue),
            "opening": self._opening,
            "checking": self._checking,
            **self._stats.snapshot(),
            "last_error": self.last_error,
            # Several hosts: each one's role and state (host:port, never credentials); the server's limits.
            "hosts": self._hosts.snapshot(),
            "limits": self._hosts.limits,
        }

    async def run_transaction(
        self, fn: Transaction[_T], *, retries: int = 3, acquire_timeout: float | None = None
    ) -> _T:
        """Run ``await fn(conn)`` in a transaction and commit it; rerun it, up to ``retries`` more
        times with jittered backoff, when the server rolled it back for a deadlock (1213, also a
        Galera certification failure) or a lock wait timeout under ``innodb_rollback_on_timeout``.
        A connection lost during COMMIT raises `CommitOutcomeUnknown` and is never rerun."""
        return await run_transaction(self, fn, retries=retries, acquire_timeout=acquire_timeout)  # type: ignore[arg-type]

    def __enter__(self) -> None:
        raise PoolMisuse('a pool is not a context manager: use "async with pool.acquire() as conn"')

    def __exit__(self, *args: object) -> None:
        pass  # never reached: __enter__ raises

    def __await__(self) -> Generator[Any, None, HeldConnection]:
        # aiomysql's deprecated ``with await pool as conn`` idiom, kept for code migrating from it.
        warnings.warn(
            'with await pool as conn is deprecated, use "async with pool.acquire() as conn" instead',
            DeprecationWarning,
            stacklevel=2,
        )
        conn = yield from self._acquire(None).__await__()
        return HeldConnection(self, conn)  # type: ignore[arg-type]

    async def __aenter__(self: _P) -> _P:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
        await self.wait_closed()
