"""Background work: retire old, idle and server-closed connections, refill ``minsize``, keep idle ones alive.

One task per pool wakes up at a fixed interval; it does no I/O itself, it only decides.
Closing and connecting run in tasks of their own, so a slow server never delays the
bookkeeping or a waiter that a released connection could serve.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._pool import Pool, _Entry

__all__ = ["check_idle", "keep_alive", "retire_idle", "run_maintenance", "validate_idle"]

# How often, at least, the free list is checked for connections whose socket saw the server close it (a KILL, a
# restart, wait_timeout): such a connection is retired and ``minsize`` restored within about this long, without
# waiting for an acquire to stumble on it. The check reads flags only, so it is cheap at any rate.
EOF_CHECK_INTERVAL = 0.5


def maintenance_interval(pool: Pool) -> float:
    """Often enough to honour the shortest configured time, and at least every `EOF_CHECK_INTERVAL`."""
    options = pool.options
    times = (options.lifetime, options.max_idle, options.keepalive_interval)
    bounds = [EOF_CHECK_INTERVAL] + [t / 4 for t in times if t > 0]
    return max(0.05, min(bounds))


async def run_maintenance(pool: Pool) -> None:
    interval = maintenance_interval(pool)
    try:
        while True:
            await asyncio.sleep(interval)
            retire_idle(pool)
            keep_alive(pool)
            hosts = pool._hosts
            if hosts.due(pool._now()):
                # Several hosts: re-probe their roles and lags in a task; the pool then drops what no longer serves.
                hosts.start_probe(pool._spawn, pool._opener, pool._reroute)
            pool._grow()
    except asyncio.CancelledError:
        if not pool._closing:
            # Cancelled while the pool is open: the event loop is shutting down (asyncio.run
            # cancels every task) and nobody closed the pool. Close the sockets while the
            # loop can still do it, instead of "Event loop is closed" from a finalizer later.
            pool._abandon()
        raise


def retire_idle(pool: Pool) -> None:
    """Close idle connections the server closed, those past their lifetime, and those idle longer than
    ``max_idle`` while the pool holds more than ``minsize``. The least recently used go first."""
    now = pool._now()
    max_idle = pool.options.max_idle
    size = pool.size
    kept: deque[_Entry] = deque()
    for entry in pool._free:  # oldest use first: the free list is a LIFO stack
        if not pool.driver.is_clean(entry.conn):
            # The socket saw EOF (or stray bytes arrived): the server ended the session. No COM_QUIT into it.
            size -= 1
            pool._close_entry_now(entry, "broken")
            continue
        if entry.expires and now >= entry.expires:
            reason = "lifetime"
        elif max_idle and now - entry.last_used > max_idle and size > pool.minsize:
            reason = "idle"
        else:
            kept.append(entry)
            continue
        size -= 1
        pool._retire(entry, reason)
    pool._free = kept


def check_idle(pool: Pool, entry: _Entry, *, keepalive: bool = False) -> None:
    """Pre-ping ``entry`` in a task of its own; it then goes to the oldest waiter."""
    pool._checking += 1
    pool._spawn(_check(pool, entry, keepalive), "mysqlpool-keepalive" if keepalive else "mysqlpool-check")


def keep_alive(pool: Pool) -> None:
    """Ping the idle connections that had no traffic for ``keepalive_interval`` seconds (0: off)."""
    interval = pool.options.keepalive_interval
    if not interval:
        return
    now = pool._now()
    due = [entry for entry in pool._free if now - max(entry.last_used, entry.keepalive_at) >= interval]
    if not due:
        return
    pinged = {id(entry) for entry in due}
    pool._free = deque(entry for entry in pool._free if id(entry) not in pinged)
    for entry in due:
        entry.keepalive_at = now
        check_idle(pool, entry, keepalive=True)


def validate_idle(pool: Pool) -> None:
    """Ping, concurrently, every idle connection outside the pre-ping window.

    Called when a pre-ping failed: that usually means the network path died and took
    the other idle connections with it. Checking them one after another would cost one
    ping timeout each inside somebody's acquire deadline.
    """
    now = pool._now()
    window = pool._ping_window
    stale = [entry for entry in pool._free if now - entry.last_used > window]
    pool._free = deque(entry for entry in pool._free if now - entry.last_used <= window)
    for entry in stale:
        check_idle(pool, entry)


async def _check(pool: Pool, entry: _Entry, keepalive: bool) -> None:
    alive = False
    used = entry.last_used
    try:
        alive = await pool._ping(entry, pool.options.ping_timeout)
    finally:
        pool._checking -= 1
        if alive and keepalive:
            # A keepalive is not a use: max_idle and the free list's least-recently-used order still count
            # from the last acquire, so the hot path keeps taking the connection used last.
            entry.last_used = used
            pool._put(entry)
            free = pool._free
            if free and free[-1] is entry:
                free.pop()
                free.appendleft(entry)
        elif alive:
            pool._put(entry)
        else:
            pool._close_entry_now(entry, "broken")
            if not pool._closing:
                validate_idle(pool)
            pool._grow()
