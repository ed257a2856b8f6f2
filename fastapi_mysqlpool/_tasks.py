"""The background tasks of one pool: opens, checks, resets, closes, probes and the maintenance loop.

Each runs in a context of its own where ``POOL_TASK`` is set, so that it may use connections that
were given back (their owner may not). The pool remembers each until it ends, so that
``wait_closed()`` can wait for all of them, and a failure is logged rather than lost.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Coroutine
from typing import Any

from ._seam import POOL_TASK

__all__ = ["PoolTasks"]

logger = logging.getLogger("fastapi_mysqlpool")


class PoolTasks:
    """The running background tasks of the pool named ``name``."""

    __slots__ = ("_loop", "_name", "_running")

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self._loop = loop
        self._name = name
        self._running: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        # A task copies the context it is created in: create it in a copy where POOL_TASK is set.
        context = contextvars.copy_context()
        context.run(POOL_TASK.set, True)
        task: asyncio.Task[Any] = context.run(self._loop.create_task, coro, name=name)
        self._running.add(task)
        task.add_done_callback(self._done)
        return task

    def cancel(self, prefixes: tuple[str, ...]) -> None:
        """Cancel the tasks whose name starts with one of ``prefixes``."""
        for task in list(self._running):
            if task.get_name().startswith(prefixes):
                task.cancel()

    async def wait_all(self) -> None:
        """Wait until every task has ended, including those started meanwhile."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("pool %s: background task %s failed", self._name, task.get_name(), exc_info=task.exception())
