"""The client-side read timeout: how long one wait for the server's bytes may last.

Neither aiomysql nor asyncmy bounds a read by default, so a statement sent to a server that stopped answering
(a paused process, a cut network path whose TCP never resets, a host that vanished) waits forever: the
caller's deadline does not hold, and the connection is never given back. ``read_timeout`` bounds each wait
for the server's next bytes, as PyMySQL's ``read_timeout`` and MySQL Connector/J's ``socketTimeout`` do (both
per socket read, both off by default). When it passes, the waiting read fails with 2013 (lost connection, the
text names the timeout and the server), the socket is closed without I/O, so nothing half-read can reach
another user, and the host is re-checked before it gets new work.

- It is a bound on silence, not on a statement's whole time: a long result that keeps streaming is never cut,
  and a statement that runs long before its first row is cut once it has been silent that long. The server's
  own limit is the right tool for slow statements (``max_statement_time``): where one applies, the wait is at
  least twice that limit, so the server's error, which keeps the connection, always comes first.
- The default, 30 s, is HikariCP's advice for the driver socket timeout it relies on ("2-3x the longest
  running SQL transaction, or 30 seconds, whichever is longer"): long enough for any statement an HTTP request
  waits for, short enough that a stuck server frees its callers. 0 turns the bound off.
- Cost: a read served from the buffer costs an attribute test. A read that must wait for the network enters
  its connection and deadline in the event loop's `ReadWatchdog` and takes it out when the bytes come: a dict
  store and a dict pop, about 0.2 us, where arming and cancelling an asyncio timer per wait costs several
  microseconds (a handle object, a heap push, and cancelled handles to sweep). The watchdog runs every quarter
  of the shortest bound it watches (at most every second, at least every 50 ms) while any read waits, and
  not at all otherwise; a read is failed at most that much after its bound.
- A connection may also be watched for a whole answer instead of each wait (asyncmy's plain queries, where a
  watch per wait costs a coroutine of its own on every read): then silence is what counts, not the answer's
  time. At each round the watchdog asks the connection for a mark of its progress (`Watched._read_progress`:
  bytes received, bytes read, packets read); a mark that changed since the last round moves the deadline to a
  full bound from that round. So an answer that keeps streaming is never cut, and one silent for the bound is
  failed at most two rounds after its bound.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Protocol

__all__ = ["ReadWatchdog", "read_timeout_reason", "read_wait", "watchdog"]

_MAX_TICK = 1.0
_MIN_TICK = 0.05


class Watched(Protocol):
    def _read_timed_out(self, timeout: float) -> None: ...

    def _read_progress(self) -> object:
        """Something that changes whenever the connection receives or reads bytes of its answer."""


class ReadWatchdog:
    """The reads of one event loop that wait for their server, each with its deadline; past it, the watchdog
    calls the connection's ``_read_timed_out(timeout)``, which fails the waiting read."""

    __slots__ = ("_handle", "_loop", "_tick", "waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # Each watched connection's deadline, bound, and mark of progress at the last round.
        self.waiting: dict[Watched, tuple[float, float, object]] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._tick = _MAX_TICK

    def watch(self, conn: Watched, timeout: float) -> None:
        """``conn`` waits for its server from now, for at most ``timeout`` seconds."""
        self.waiting[conn] = (self._loop.time() + timeout, timeout, conn._read_progress())
        if self._handle is None or timeout < 4 * self._tick:
            tick = _tick_for(timeout)
            if self._handle is not None:
                if tick >= self._tick:
                    return
                self._handle.cancel()
            self._tick = tick
            self._handle = self._loop.call_later(tick, self._check)

    def unwatch(self, conn: Watched) -> None:
        """``conn`` got its bytes (or gave up): no longer watched."""
        self.waiting.pop(conn, None)

    def _check(self) -> None:
        self._handle = None
        now = self._loop.time()
        waiting = self.waiting
        expired = []
        for conn, (deadline, timeout, mark) in waiting.items():
            progress = conn._read_progress()
            if progress != mark:  # bytes came or were read since the last round: silence starts again
                waiting[conn] = (now + timeout, timeout, progress)
            elif deadline <= now:
                expired.append((conn, timeout))
        for conn, timeout in expired:
            del waiting[conn]
            conn._read_timed_out(timeout)
        if waiting:
            self._tick = _tick_for(min(timeout for _, timeout, _ in waiting.values()))
            self._handle = self._loop.call_later(self._tick, self._check)


def _tick_for(timeout: float) -> float:
    return max(_MIN_TICK, min(_MAX_TICK, timeout / 4))


_watchdogs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ReadWatchdog] = weakref.WeakKeyDictionary()


def watchdog(loop: asyncio.AbstractEventLoop) -> ReadWatchdog:
    """The watchdog of ``loop`` (a connection keeps it: one lookup per connection, not per read)."""
    found = _watchdogs.get(loop)
    if found is None:
        found = _watchdogs[loop] = ReadWatchdog(loop)
    return found


def read_wait(read_timeout: float, statement_limit: float | None) -> float:
    """Seconds one read may wait: ``read_timeout``, but at least twice a server-side statement limit."""
    if statement_limit:
        return max(read_timeout, 2 * statement_limit)
    return read_timeout


def read_timeout_reason(timeout: float, host: object, port: object) -> str:
    """Why the read failed, for the text of its 2013 error ("Lost connection to MySQL server during query (...)")."""
    return f"no answer from {host}:{port} within read_timeout={timeout:g} s; the connection was closed"
