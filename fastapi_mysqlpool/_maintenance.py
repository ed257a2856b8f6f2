"""Background work: retire old, idle and server-closed connections, refill ``minsize``, keep idle ones alive.

One task per pool wakes up at a fixed interval; it does no I/O and changes nothing itself, it only
decides. Its verdict on each idle connection goes to the pool's ``_sweep_idle``, and the pool (the
only owner of its free list and its counts) closes, pings or keeps the connection. Closing and
connecting run in tasks of their own, so a slow server never delays the bookkeeping or a waiter
that a released connection could serve.

The pool is seen through `Maintained`, the few operations it exposes for this, so this module does
not import the pool's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from ._config import PoolOptions
from ._entry import Entry
from ._seam import Driver

__all__ = ["CHECK", "EOF_CHECK_INTERVAL", "KEEPALIVE", "Maintained", "Verdict", "maintenance_interval",
           "run_maintenance", "stale_verdict"]  # fmt: skip

# How often, at least, the free list is checked for connections whose socket saw the server close it (a KILL, a
# restart, wait_timeout): such a connection is retired and ``minsize`` restored within about this long, without
# waiting for an acquire to stumble on it. The check reads flags only, so it is cheap at any rate.
EOF_CHECK_INTERVAL = 0.5

#: Verdicts besides a close reason (see `CLOSE_REASONS`) and None (keep it idle): ping it, then hand it to the
#: oldest waiter; or ping it as a keepalive, then put it back as the least recently used.
CHECK = "check"
KEEPALIVE = "keepalive"

#: What to do with one idle connection: None (keep it), `CHECK`, `KEEPALIVE` or a close reason.
Verdict = Callable[[Entry], str | None]


class Maintained(Protocol):
    """The pool, as its maintenance sees it."""

    _closing: bool

    @property
    def options(self) -> PoolOptions: ...

    @property
    def driver(self) -> Driver: ...

    @property
    def size(self) -> int: ...

    @property
    def minsize(self) -> int: ...

    def _now(self) -> float: ...

    def _sweep_idle(self, verdict: Verdict) -> None: ...

    def _probe_hosts(self) -> None: ...

    def _meet_demand(self) -> None: ...

    def _abandon(self) -> None: ...


def maintenance_interval(options: PoolOptions) -> float:
    """Often enough to honour the shortest configured time, and at least every `EOF_CHECK_INTERVAL`."""
    times = (options.lifetime, options.max_idle, options.keepalive_interval)
    bounds = [EOF_CHECK_INTERVAL] + [t / 4 for t in times if t > 0]
    return max(0.05, min(bounds))


async def run_maintenance(pool: Maintained) -> None:
    interval = maintenance_interval(pool.options)
    try:
        while True:
            await asyncio.sleep(interval)
            pool._sweep_idle(idle_verdict(pool))
            # Several hosts: re-probe their roles and lags; the pool then drops what no longer serves.
            pool._probe_hosts()
            pool._meet_demand()
    except asyncio.CancelledError:
        if not pool._closing:
            # Cancelled while the pool is open: the event loop is shutting down (asyncio.run
            # cancels every task) and nobody closed the pool. Close the sockets while the
            # loop can still do it, instead of "Event loop is closed" from a finalizer later.
            pool._abandon()
        raise


def idle_verdict(pool: Maintained) -> Verdict:
    """Close idle connections the server closed, those past their lifetime, and those idle longer than
    ``max_idle`` while the pool holds more than ``minsize``; ping those due for a keepalive
    (``keepalive_interval``, 0: off). Asked least recently used first, so those go first."""
    now = pool._now()
    options = pool.options
    max_idle, keepalive = options.max_idle, options.keepalive_interval
    is_clean = pool.driver.is_clean
    surplus = pool.size - pool.minsize

    def verdict(entry: Entry) -> str | None:
        nonlocal surplus
        if not is_clean(entry.conn):
            reason = "broken"  # the socket saw EOF (or stray bytes arrived): the server ended the session
        elif entry.expired(now):
            reason = "lifetime"
        elif max_idle and not entry.used_within(now, max_idle) and surplus > 0:
            reason = "idle"
        else:
            return KEEPALIVE if keepalive and entry.keepalive_due(now, keepalive) else None
        surplus -= 1
        return reason

    return verdict


def stale_verdict(now: float, window: float) -> Verdict:
    """Ping, concurrently, every idle connection outside the pre-ping window.

    Asked when a pre-ping failed: that usually means the network path died and took the other idle
    connections with it. Checking them one after another would cost one ping timeout each inside
    somebody's acquire deadline.
    """
    return lambda entry: None if entry.used_within(now, window) else CHECK
