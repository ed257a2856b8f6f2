"""The last minutes of every lifespan pool, sampled once a second in the process, for ``/pool/history``.

What an operator asks during an incident is what changed, and when: a page polling a snapshot every few
seconds sees neither what happened before it was opened nor a load whose connections come and go between two
polls ("0 / 10 in use" at 150 requests a second). So each pool opened by `mysql_lifespan` gets a sampler that
keeps `WINDOW` seconds of one-second samples, read from the pool's own counters (nothing is added to the
acquire and release path):

- ``in_use``, ``free``, ``waiting``, ``maxsize``: the state at the sample;
- ``busy``: connections in use *on average* over the second before it, from the increase of the seconds
  connections were held (Little's law): it sees the short-held connections the instant count misses;
- ``acquires``, ``timeouts``, ``errors``: how many in that second.

`window` adds up the last minute: acquires per second, timeouts, errors by kind, and the acquire wait p50/p99
from the increase of the wait histogram's buckets, which counts timed-out acquires at the time they waited.
These are the figures Prometheus gives for the same minute: ``rate(db_client_connection_wait_time_seconds_bucket
[1m])`` is the same increase of the same buckets.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._stats import quantile

if TYPE_CHECKING:
    from ._pool import Pool

__all__ = ["INTERVAL", "RECENT", "WINDOW", "History", "attach", "detach", "history_of"]

#: Seconds between two samples.
INTERVAL = 1.0
#: Seconds of samples kept per pool.
WINDOW = 300
#: Seconds of the "recent" figures (the last minute).
RECENT = 60


@dataclass(frozen=True, slots=True)
class _Counters:
    """The pool's cumulative counters at one moment."""

    at: float
    acquired: int
    timeouts: int
    connect_errors: int
    rejected: int
    broken: int
    held: float
    wait_counts: tuple[int, ...]

    @classmethod
    def read(cls, pool: Pool, at: float) -> _Counters:
        stats = pool._stats
        closed = stats.closed_total
        return cls(
            at=at,
            acquired=stats.acquired_total,
            timeouts=stats.timeouts_total,
            connect_errors=stats.connect_errors_total,
            rejected=stats.rejected_total,
            broken=closed["broken"] + closed["reset_failed"],
            held=_held_seconds(pool),
            wait_counts=tuple(stats.wait_time.counts),
        )

    def errors(self) -> int:
        return self.connect_errors + self.rejected + self.broken


def _held_seconds(pool: Pool) -> float:
    """Seconds connections were held since the pool opened, up to now: the finished holds (the use-time sum) and
    the part of the current ones so far. Its increase over an interval is exactly the connection-seconds in use in
    that interval, however long each hold is; the sum alone would book a long hold at its release, all at once."""
    now = pool._now()
    return pool._stats.use_time.sum + sum(now - entry.acquired_at for entry in pool._in_use.values())


class History:
    """One pool's samples: see the module docstring."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.samples: deque[dict[str, Any]] = deque(maxlen=int(WINDOW / INTERVAL))
        # The counters at each sample, for the sums over the last minute.
        self.counters: deque[_Counters] = deque(maxlen=int(RECENT / INTERVAL) + 1)
        self.counters.append(_Counters.read(pool, time.time()))
        # A call_later handle, not a task: a loop that ends before the pool is detached leaves nothing pending.
        self.timer: asyncio.TimerHandle | None = None

    def sample(self, now: float) -> None:
        pool, before = self.pool, self.counters[-1]
        after = _Counters.read(pool, now)
        elapsed = max(after.at - before.at, 1e-9)
        self.counters.append(after)
        self.samples.append(
            {
                "t": round(now, 3),
                "in_use": len(pool._in_use),
                "free": pool.freesize,
                "waiting": len(pool._waiters),
                "maxsize": pool.maxsize,
                "busy": round((after.held - before.held) / elapsed, 3),
                "acquires": after.acquired - before.acquired,
                "timeouts": after.timeouts - before.timeouts,
                "errors": after.errors() - before.errors(),
            }
        )

    def window(self) -> dict[str, Any]:
        """The last minute (or as much of it as was sampled), summed from the counters."""
        first, last = self.counters[0], _Counters.read(self.pool, time.time())
        seconds = max(last.at - first.at, 1e-9)
        waits = [b - a for a, b in zip(first.wait_counts, last.wait_counts, strict=True)]
        largest = self.pool._stats.wait_time.max
        return {
            "seconds": round(seconds, 3),
            "acquires_per_second": round((last.acquired - first.acquired) / seconds, 3),
            "busy": round((last.held - first.held) / seconds, 3),
            "timeouts": last.timeouts - first.timeouts,
            "errors": {
                "connect": last.connect_errors - first.connect_errors,
                "rejected": last.rejected - first.rejected,
                "broken": last.broken - first.broken,
            },
            "acquire_wait_seconds": {
                "count": sum(waits),
                "p50": round(quantile(waits, 0.50, largest), 6),
                "p99": round(quantile(waits, 0.99, largest), 6),
            },
        }

    def snapshot(self) -> dict[str, Any]:
        return {"interval": INTERVAL, "last_minute": self.window(), "samples": list(self.samples)}

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.timer = loop.call_later(INTERVAL, self._tick, loop)

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.pool.closed:
            self.timer = None
            return
        # Rescheduled first: a sample that fails is logged by the loop and the next one still runs.
        self.start(loop)
        self.sample(time.time())


_HISTORIES: dict[Pool, History] = {}


def attach(pool: Pool) -> None:
    """Start sampling ``pool``; call it from the running loop once the pool is open."""
    # Forget the pools that were closed, or whose loop ended, without detach: their timers have stopped.
    for gone in [other for other in list(_HISTORIES) if other.closed or other._loop.is_closed()]:
        _HISTORIES.pop(gone, None)
    history = _HISTORIES.pop(pool, None)
    if history is not None:
        history.stop()
    history = _HISTORIES[pool] = History(pool)
    history.start(asyncio.get_running_loop())


def detach(pool: Pool) -> None:
    """Stop sampling ``pool`` and forget its samples."""
    history = _HISTORIES.pop(pool, None)
    if history is not None:
        history.stop()


def history_of(pool: Pool) -> dict[str, Any]:
    """``pool``'s samples and last minute; an empty history for a pool that no lifespan samples."""
    history = _HISTORIES.get(pool)
    return (history or History(pool)).snapshot()
