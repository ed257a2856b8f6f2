"""``pool.run_transaction(fn, retries=3)``: rerun a transaction the server asked to be rerun.

What is retried, and why:

- 1213, deadlock: InnoDB picked this transaction as the victim and rolled *all* of it back. Running
  it again is what the error text says to do ("try restarting transaction"). A Galera cluster
  reports a certification failure (a conflicting write set committed first on another node) and a
  brute-force abort with the same code, at COMMIT or at the next statement: also rolled back whole.
- 1205, lock wait timeout: by default (``innodb_rollback_on_timeout=OFF``) the server rolls back only
  the statement that waited; the transaction stays open with its other changes and locks, and ``fn``
  saw the error. Under ``innodb_rollback_on_timeout=ON`` the server rolled back the whole
  transaction, exactly as for a deadlock. So on 1205 the connection is asked for that setting (once
  per connection) and the transaction is rerun only when it is ON. When it is OFF the error is
  raised after the rollback: the wait already lasted ``innodb_lock_wait_timeout`` (50 s by
  default), the blocker is a long transaction, and rerunning would hold the caller for that long again.
- Not retried: 1180 ("Got error N during COMMIT"), which Galera raises for a write set it cannot
  replicate (over ``wsrep_max_ws_size``, a node leaving): the same transaction fails again. Nor
  1047 (a Galera node not ready), which needs another node, not another try on this one.
- A connection lost during COMMIT (or any disconnect error from it) is never retried: the server may
  have committed before the connection went, and a rerun would apply the transaction twice. It
  raises `CommitOutcomeUnknown`, with the driver's error as its cause.

``fn`` must be safe to run more than once: it should only talk to the database through ``conn``, and
compute its result from what it reads there. Between attempts it sleeps a jittered, growing pause
(about 20 ms, 40 ms, 80 ms..., at most 1 s), so two transactions that deadlocked do not collide again
in lockstep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import aiomysql

from ._errors import CommitOutcomeUnknown
from ._seam import error_code, is_disconnect

if TYPE_CHECKING:
    from ._pool import Pool

__all__ = ["DEADLOCK", "LOCK_WAIT_TIMEOUT", "Transaction", "run_transaction"]

DEADLOCK = 1213
LOCK_WAIT_TIMEOUT = 1205
_BACKOFF_FIRST = 0.02
_BACKOFF_MAX = 1.0

T = TypeVar("T")
Transaction = Callable[[aiomysql.Connection], Awaitable[T]]

logger = logging.getLogger("fastapi_mysqlpool")


def _code(exc: BaseException) -> int | None:
    return error_code(exc) or None


async def _rolled_back_whole(conn: aiomysql.Connection, exc: BaseException) -> bool:
    """Whether the server rolled back the whole transaction that raised ``exc``."""
    code = _code(exc)
    if code == DEADLOCK:
        return True
    if code != LOCK_WAIT_TIMEOUT:
        return False
    known: bool | None = getattr(conn, "_rollback_on_timeout", None)
    if known is None:
        try:
            async with conn.cursor() as cur:
                await cur.execute("SELECT @@innodb_rollback_on_timeout")
                row = await cur.fetchone()
        except Exception:
            return False  # cannot tell: do not retry
        known = bool(row and int(row[0]))
        conn._rollback_on_timeout = known  # a server startup option: it cannot change while the session lives
    return known


def _pause(attempt: int) -> float:
    """Jittered exponential backoff: uniformly from half to all of 20 ms * 2**attempt, at most 1 s."""
    ceiling = min(_BACKOFF_MAX, _BACKOFF_FIRST * 2**attempt)
    return float(ceiling * (0.5 + random.random() / 2))


async def run_transaction(pool: Pool, fn: Transaction[T], *, retries: int, acquire_timeout: float | None) -> T:
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"invalid retries: {retries!r} (expected an integer >= 0)")
    if not callable(fn):
        raise ValueError(f"invalid transaction: {fn!r} (expected an async callable taking the connection)")
    attempt = 0
    while True:
        retry: BaseException | None = None
        async with pool.acquire(acquire_timeout) as conn:
            await conn.begin()
            try:
                result = await fn(conn)
            except Exception as exc:
                # A failed rollback means a broken connection: the release (given exc) discards it.
                with contextlib.suppress(Exception):
                    await conn.rollback()
                if attempt >= retries or not await _rolled_back_whole(conn, exc):
                    raise
                retry = exc
            if retry is None:
                try:
                    await conn.commit()
                except Exception as exc:
                    if is_disconnect(exc):
                        raise CommitOutcomeUnknown(
                            f"pool {pool.name!r}: connection lost during COMMIT; the transaction may or may not "
                            f"have been committed, so it is not rerun ({type(exc).__name__}: {exc})"
                        ) from exc
                    # The server answered: it did not commit. A deadlock or certification failure here
                    # rolled the whole transaction back.
                    with contextlib.suppress(Exception):
                        await conn.rollback()
                    if attempt >= retries or _code(exc) != DEADLOCK:
                        raise
                    retry = exc
                else:
                    return result
        attempt += 1
        pause = _pause(attempt - 1)
        logger.info(
            "pool %s: transaction %s rolled back by the server (%s); retry %d of %d in %.3f s",
            pool.name, _name(fn), retry, attempt, retries, pause,
            extra={"pool": pool.name, "event": "transaction_retry", "error_code": _code(retry), "attempt": attempt},
        )  # fmt: skip
        await asyncio.sleep(pause)


def _name(fn: Any) -> str:
    return str(getattr(fn, "__qualname__", None) or type(fn).__qualname__)
