"""``create_pool``: aiomysql's signature, plus ``dsn=`` and the pool's own options."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Coroutine, Generator
from types import TracebackType
from typing import Any

from ._config import PoolOptions, closest, parse_dsn, split_options
from ._credentials import check_sources
from ._hooks import Hooks
from ._pool import Pool
from ._seam import get_driver

__all__ = ["create_pool"]

_HOOK_NAMES = frozenset(f.name for f in dataclasses.fields(Hooks))


class _PoolOpener(Coroutine[Any, Any, Pool]):
    """What `create_pool` returns: a coroutine that opens the `Pool`, and an async context manager.

    As aiomysql's is: ``await`` it, hand it to ``asyncio.create_task``, ``ensure_future`` or ``gather``,
    or use ``async with`` (which closes the pool and waits on exit). The coroutine that opens the pool is
    made on first use, so an opener used only with ``async with`` leaves no coroutine unawaited behind.
    """

    __slots__ = ("_connect_kwargs", "_coroutine", "_hooks", "_options", "_pool")

    def __init__(self, options: PoolOptions, connect_kwargs: dict[str, Any], hooks: Hooks) -> None:
        self._options = options
        self._connect_kwargs = connect_kwargs
        self._hooks = hooks
        self._pool: Pool | None = None
        self._coroutine: Coroutine[Any, Any, Pool] | None = None

    def _opening(self) -> Coroutine[Any, Any, Pool]:
        if self._coroutine is None:
            self._coroutine = self._open()
        return self._coroutine

    async def _open(self) -> Pool:
        pool = Pool(self._options, self._connect_kwargs, self._hooks)
        await pool._open()
        self._pool = pool
        return pool

    def send(self, value: Any) -> Any:
        return self._opening().send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        if val is None and tb is None:
            return self._opening().throw(typ)
        return self._opening().throw(typ, val, tb)

    def close(self) -> None:
        if self._coroutine is not None:
            self._coroutine.close()

    def __await__(self) -> Generator[Any, None, Pool]:
        return self._opening().__await__()

    async def __aenter__(self) -> Pool:
        return await self._opening()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()


def create_pool(
    minsize: int | None = None,
    maxsize: int | None = None,
    echo: bool = False,
    pool_recycle: float | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
    *,
    dsn: str | None = None,
    **kwargs: Any,
) -> _PoolOpener:
    """Create a connection pool; ``await`` the result or use it with ``async with``.

    - ``minsize`` (default 1), ``maxsize`` (default 10), ``echo``, ``pool_recycle``
      (default -1): as in ``aiomysql.create_pool``.
    - ``loop``: accepted for compatibility; the pool always uses the running loop.
    - ``dsn``: ``mysql://user:password@host:3306/db?maxsize=20``. Explicit keyword
      arguments win over the DSN's values.
    - ``configure``, ``check``, ``reset``: lifecycle hooks, async ``fn(conn)`` (see `Hooks`).
    - ``password``: a string, or a callable (plain or async) called for every new connection;
      ``connect_args``: a callable returning connect arguments, likewise (rotating credentials).
    - ``**kwargs``: the pool's own options (see `PoolOptions`: ``acquire_timeout``,
      ``max_waiting``, ``max_lifetime``, ``max_statement_time``, ...); everything else goes
      to ``aiomysql.connect``.

    Bad option values and malformed DSNs raise `ValueError` at once, naming the problem.
    """
    hooks = Hooks(**{k: kwargs.pop(k) for k in _HOOK_NAMES & kwargs.keys()})
    pool_kwargs, connect_kwargs = split_options(kwargs)
    for key, value in (("minsize", minsize), ("maxsize", maxsize), ("pool_recycle", pool_recycle)):
        if value is not None:
            pool_kwargs[key] = value
    dsn_connect: dict[str, Any] = {}
    if dsn is not None:
        parsed = parse_dsn(dsn)
        pool_kwargs = {**parsed.pool_options, **pool_kwargs}
        dsn_connect = parsed.connect_kwargs
    options = PoolOptions(**pool_kwargs)
    driver = get_driver(options.driver)
    unknown = sorted(connect_kwargs.keys() - driver.connect_arguments - {"connect_args"})
    if unknown:
        known = [f.name for f in dataclasses.fields(PoolOptions)] + sorted(driver.connect_arguments)
        raise ValueError(
            f"unknown option {unknown[0]!r}: neither a pool option nor a {driver.name} connect argument"
            f"{closest(unknown[0], known)}"
        )
    connect_kwargs = {**dsn_connect, **connect_kwargs}
    connect_kwargs.setdefault("echo", echo)
    if echo:
        connect_kwargs["echo"] = True
    check_sources(connect_kwargs)
    if options.tracing:
        from ._tracing import require_opentelemetry

        require_opentelemetry()
    connect_kwargs.setdefault("connect_timeout", options.connect_timeout)
    return _PoolOpener(options, connect_kwargs, hooks)
