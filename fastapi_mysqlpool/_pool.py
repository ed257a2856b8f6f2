"""The connection pool: acquire and release, growth, close and terminate.

The pool owns where each connection is; each mechanism around it has a module of its own:
`Entry` (``_entry``) a connection's times, predicates and leak watch; `Waiters` (``_waiters``) the
FIFO queue and its deadline timer; `Reconnect` (``_reconnect``) the outage, backoff and retry token;
`PoolStats` (``_stats``) counters and histograms; ``_maintenance`` the background verdicts on idle
connections; ``_resize`` the validation of new sizes; ``_acquire`` what ``acquire()`` returns;
`Connector` (``_connector``) the I/O of opening, checking, resetting and closing one connection, through
the driver seam; `PoolSurface` (``_surface``) what the pool shows (properties, ``stats()``, aiomysql's idioms).

Invariants, kept by every method below and checked by the stress tests:

- ``size == len(_free) + len(_in_use) + _opening + _checking`` and ``size <= maxsize``.
  A connection is always in exactly one of: the free list, the in-use map, an opening
  task or a check task. Only this class moves it between them, and no path drops one
  without accounting for it: ``created_total - sum(closed_total) == size - _opening``
  whenever no code of the pool runs.
- Whoever changes capacity (release, discard, a finished connect or check, close) hands a
  connection to the oldest live waiter or starts a connect for it (`_meet_demand`). Nobody
  waits on a condition that may never be signalled.
- No lock is ever held across I/O: this is one event loop, and every state change is a
  synchronous block between awaits. Connects, pings and resets run in their own tasks or
  in the caller's task *after* the bookkeeping is done.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ._acquire import AcquireContext
from ._config import PoolOptions
from ._connector import Connector, discard
from ._entry import Entry
from ._errors import PoolClosed, PoolError, PoolMisuse, PoolTimeout, TooManyWaiters
from ._hooks import Hooks
from ._hosts import parse_hosts
from ._maintenance import CHECK, KEEPALIVE, Verdict, run_maintenance, stale_verdict
from ._reconnect import describe
from ._resize import resized, retire_first
from ._seam import BROKEN, READY, RESTORE, Conn, get_driver
from ._statement import check_statement_time
from ._stats import FOLD_AT, PoolStats, SlowAcquireLog
from ._surface import PoolSurface
from ._tasks import PoolTasks
from ._waiters import Waiter, Waiters

__all__ = ["Pool"]

logger = logging.getLogger("fastapi_mysqlpool")


class Pool(PoolSurface):
    """An asyncio pool of aiomysql or asyncmy connections, API-compatible with ``aiomysql.Pool``.

    Create it with `create_pool`. Beyond aiomysql it adds an acquire timeout, a bounded
    FIFO queue, reset and discard on release, pre-ping, lifetime and idle retirement,
    reconnect with backoff, a bounded shutdown and `stats()`.
    """

    def __init__(self, options: PoolOptions, connect_kwargs: dict[str, Any], hooks: Hooks | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        # time.monotonic rather than loop.time: one C call instead of a Python frame on the
        # hot path. Timers are scheduled with relative delays, so the two clocks never mix.
        self._now: Callable[[], float] = time.monotonic
        self._options = options
        self._connect_kwargs = connect_kwargs
        self._autocommit: bool | None = connect_kwargs.get("autocommit", False)
        self._name = name = options.name or _default_name(connect_kwargs)
        self._ping_window = options.pre_ping_window if options.pre_ping else float("inf")
        self._hooks = hooks = hooks or Hooks()
        # Decided once: a pool without a reset hook still skips the reset task for a clean connection.
        mode = "always" if options.reset_connection else options.session_reset
        # The full reset on every release, or only when the driver saw the session change (see docs/pool.md).
        self._full_reset = mode == "always"
        self._exact_reset = mode == "exact"
        self._always_reset = self._full_reset or hooks.reset is not None
        self._driver = driver = get_driver(options.driver)
        connection_class: type[Any] = driver.connection_class
        self._acquire_context: type[AcquireContext] = AcquireContext
        if options.tracing:
            from ._tracing import traced_classes

            connection_class, self._acquire_context = traced_classes(options, AcquireContext, connection_class)
        self._stats = stats = PoolStats()
        # What the hot path records into directly (see `Histogram`): acquires that did not wait, and hold times.
        self._wait_time = stats.wait_time
        self._uses = stats.use_time.pending
        self._tasks = tasks = PoolTasks(self._loop, name)
        self._spawn = tasks.spawn
        self._connector = Connector(name, options, connect_kwargs, driver, hooks, connection_class, stats, tasks)
        self._hosts = self._connector.hosts
        self._reconnect = self._connector.reconnect

        self._free: deque[Entry] = deque()
        self._in_use: dict[Conn, Entry] = {}
        self._terminated: set[Conn] = set()
        self._waiters = Waiters(self._loop, name, self._in_use, self._timeout_error)
        self._queue = self._waiters.queue  # read on the hot path: is anybody waiting?
        self._opening = 0
        self._checking = 0
        # Connections to close as they come back, after resize() lowered maxsize below the size.
        self._excess = 0
        self._closing = False
        self._closed = False
        self._drained: asyncio.Future[None] | None = None
        self._cleared_at = float("-inf")
        self._slow_log = SlowAcquireLog(name)
        # Awaited by a release that had nothing to wait for: `release()` must return an awaitable.
        self._released: asyncio.Future[None] = self._loop.create_future()
        self._released.set_result(None)
        self._plain = False
        self._update_plain()

    def acquire(self, timeout: float | None = None, *, max_statement_time: float | None = None) -> AcquireContext:
        """Get a connection: ``async with pool.acquire() as conn`` or ``conn = await pool.acquire()``.

        Waits at most ``timeout`` seconds (default: the ``acquire_timeout`` option), then
        raises `PoolTimeout`. Raises `TooManyWaiters` when ``max_waiting`` tasks already
        queue and `PoolClosed` when the pool is closing. ``max_statement_time`` (seconds,
        0 for none) overrides the pool's server-side statement timeout for every statement
        run on this connection until it is released.
        """
        if timeout is not None and not timeout > 0:
            raise ValueError(f"acquire timeout must be > 0, not {timeout!r}")
        if max_statement_time is not None:
            max_statement_time = check_statement_time(max_statement_time, "max_statement_time")
        return self._acquire_context(self, timeout, max_statement_time)

    def release(self, conn: Conn, *, discard: bool = False) -> asyncio.Future[None]:
        """Give a connection back, at once, as aiomysql's ``release()`` does (it is not a coroutine).

        ``discard=True`` closes it instead of reusing it. The returned future completes when the
        connection is ready for the next user (after its reset, when one runs); awaiting it is
        optional. Raises `PoolMisuse` for a connection released twice or not from this pool.
        """
        reset = self._release(conn, discard)
        if reset is None:
            return self._released
        # Shielded: cancelling the awaiting releaser must not cancel the reset, which owns the connection.
        return asyncio.shield(reset)

    def resize(self, minsize: int | None = None, maxsize: int | None = None) -> None:
        """Change ``minsize`` and ``maxsize`` at runtime. Growing serves waiting tasks at once;
        shrinking closes idle connections now and in-use ones when they come back."""
        if self._closing:
            raise PoolClosed(f"pool {self._name!r} is closed; it cannot be resized")
        self._options = resized(self._options, self._name, minsize, maxsize)
        self._sweep_idle(retire_first(self.size - self.maxsize))  # least recently used first
        self._excess = max(0, self.size - self.maxsize)
        self._update_plain()
        self._meet_demand()

    async def clear(self) -> None:
        """Replace every connection opened before this call: idle ones close now, the others
        (in use, being checked or reset) when they come back."""
        self._cleared_at = self._now()
        for entry in self._in_use.values():
            entry.expires = float("-inf")  # so that its release retires it ("cleared"), whatever path it takes
        closing = [self._connector.retire(self._free.pop(), "cleared") for _ in range(len(self._free))]
        await asyncio.gather(*closing)
        self._meet_demand()

    def close(self) -> None:
        """Stop handing out connections. Waiters get `PoolClosed`; idle connections close
        now (with COM_QUIT), in-use ones when they come back. Then await `wait_closed()`."""
        if self._closing:
            return
        self._closing = True
        self._plain = False
        logger.info(
            "pool %s closing", self._name, extra={"pool": self._name, "event": "close", "in_use": len(self._in_use)}
        )
        self._waiters.fail_all(lambda: PoolClosed(f"pool {self._name!r} was closed while waiting"))
        self._tasks.cancel(("mysqlpool-open", "mysqlpool-probe", "mysqlpool-maintenance"))
        while self._free:
            self._connector.retire(self._free.pop(), "shutdown")

    def terminate(self) -> None:
        """Close the pool and every connection at once, in use or not."""
        self.close()
        for conn, entry in list(self._in_use.items()):
            self._forget(entry)
            self._terminated.add(conn)
            self._stats.closed_total["terminated"] += 1
            self._connector.abort(conn)
        self._check_drained()

    async def wait_closed(self) -> None:
        """Wait until every connection is closed: a graceful drain of at most
        ``close_timeout`` seconds, then `terminate()` for what is still in use."""
        if not self._closing:
            raise PoolMisuse("wait_closed() must be called after close()")
        if self._in_use:
            if self._drained is None:
                self._drained = self._loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._drained), self._options.close_timeout)
            except asyncio.TimeoutError:
                logger.warning(
                    "pool %s: %d connection(s) still in use after %.1f s; terminating them",
                    self._name, len(self._in_use), self._options.close_timeout,
                    extra={"pool": self._name, "event": "terminate", "in_use": len(self._in_use)},
                )  # fmt: skip
                self.terminate()
        await self._tasks.wait_all()
        # Let transports finish closing their sockets before the loop may be closed.
        await asyncio.sleep(0)
        self._closed = True

    # ------------------------------------------------------------ opening

    async def _open(self) -> None:
        """Wait for ``minsize`` connections (with ``wait_open``), then start background work."""
        if self._options.wait_open and self.minsize:
            try:
                await self._connector.open_minsize(self.minsize, self._joined_at_open)
            except asyncio.CancelledError:
                self._abandon()
                raise
            except BaseException:
                self.close()
                await self.wait_closed()
                raise
            logger.info(
                "pool %s open with %d connection(s)", self._name, self.size,
                extra={"pool": self._name, "event": "open", "size": self.size},
            )  # fmt: skip
        self._spawn(run_maintenance(self), "mysqlpool-maintenance")
        self._meet_demand()

    def _joined_at_open(self, entry: Entry) -> None:
        self._stats.created_total += 1
        if self._left_clean(entry, "open"):
            self._free.append(entry)

    def _abandon(self) -> None:
        """Close every socket now, without I/O: for a pool nobody can close properly any more
        (cancelled while opening, or still open when its event loop shuts down)."""
        self._closing = self._closed = True
        self._plain = False
        self._stats.closed_total["terminated"] += len(self._free) + len(self._in_use)
        while self._free:
            discard(self._driver.abort(self._free.pop().conn))
        for conn in self._in_use:
            discard(self._driver.abort(conn))
        self._terminated.update(self._in_use)
        self._in_use.clear()
        self._waiters.fail_all(None)

    def _meet_demand(self) -> None:
        """Serve the waiters that no connect or check in flight will serve, with idle connections first
        (handed over, or sent to a check when stale), then with new connects; and keep ``minsize``.

        While the server is unreachable only one connect runs at a time, so a down server
        sees one attempt per backoff period rather than one per waiter.
        """
        if self._closing:
            return
        # Idle connections first: after a quiet spell they are all past the pre-ping window,
        # and a burst must not queue behind a single check while they sit unused.
        uncovered = len(self._queue) - self._opening - self._checking
        now = self._now()
        while uncovered > 0 and (popped := self._pop_usable_idle(now)) is not None:
            entry, fresh = popped
            if fresh:
                self._put(entry)
            else:
                self._check_idle(entry)
            uncovered -= 1
        size = self.size
        wanted = min(max(uncovered, self.minsize - size), self.maxsize - size)
        # The backoff timer set by Reconnect.pause() calls this again.
        for _ in range(self._reconnect.allowed(wanted, self._opening, now)):
            self._opening += 1
            self._spawn(self._connector.open_for(self), "mysqlpool-open").add_done_callback(self._opened)

    def _needs_connection(self) -> bool:
        """Whether a failed background connect should retry: somebody waits, or the pool is below ``minsize``."""
        return bool(self._queue) or self.size - 1 < self.minsize

    def _fail_waiters(self, exc: Exception) -> None:
        self._waiters.fail_all(functools.partial(_copy_error, exc))

    def _can_serve(self) -> bool:
        """Whether a live connection exists that will serve a waiter once it is released or checked."""
        return bool(self._free or self._in_use or self._checking)

    def _opened(self, task: asyncio.Task[Entry | None]) -> None:
        # A done callback, not a ``finally`` in the task: a task cancelled by close()
        # before its first step never runs its body, and the count must drop all the same.
        self._opening -= 1
        entry = None if task.cancelled() or task.exception() is not None else task.result()
        if entry is not None:
            self._stats.created_total += 1  # in the same step that takes it out of _opening
            self._put_checked(entry, "open")
            # The server answers again: open connections for whoever else waits.
            self._meet_demand()
        self._check_drained()

    # ------------------------------------------------------------ acquire

    def _acquire_at_once(self) -> Conn | None:
        """The hot path, all of an acquire when nothing waits: the most recently used idle
        connection, if it needs no check. None, having changed nothing, otherwise."""
        free = self._free
        if self._queue or not free or self._closing:
            return None
        entry = free[-1]
        now = self._now()
        # entry.used_within(now, window) and not entry.expired(now), inlined: two calls fewer per acquire.
        if now - entry.last_used > self._ping_window or now >= entry.expires:
            return None
        conn = entry.conn
        if not self._driver.take(conn, self._autocommit):
            return None  # _pop_usable_idle retires it
        free.pop()
        self._in_use[conn] = entry
        entry.acquired_at = now
        self._wait_time.zeros += 1  # a wait of 0 s
        if self._options.leak_timeout:
            entry.watch_leak(self._loop, self._options.leak_timeout, self._name)
        return conn

    async def _acquire(self, timeout: float | None, limit: float | None = None) -> Conn:
        if self._closing:
            raise PoolClosed(f"pool {self._name!r} is closed")
        started = self._now()
        deadline = started + (self._options.acquire_timeout if timeout is None else timeout)
        # The most recently used idle connection, if it needs no check. One idle past the pre-ping window goes to a
        # check task, and the caller queues for the oldest waiter's turn: the caller's deadline never cuts a ping
        # short (discarding a healthy connection), and a caller cancelled meanwhile cannot take it down with it.
        popped = self._pop_usable_idle(started) if not self._queue else None
        if popped is not None and popped[1]:
            entry = popped[0]
            self._in_use[entry.conn] = entry
        else:
            if popped is not None:
                self._check_idle(popped[0])
            entry = await self._wait(started, deadline)
            if self._in_use.get(entry.conn) is not entry:
                # terminate() closed it between its hand-over and this task's turn.
                self._terminated.discard(entry.conn)
                raise PoolClosed(f"pool {self._name!r} was terminated while handing over a connection")
        now = self._now()
        waited = now - started
        self._stats.wait_time.observe(waited)
        entry.acquired_at = now
        self._driver.set_owned(entry.conn, True)
        if self._options.slow_acquire and waited >= self._options.slow_acquire:
            self._slow_log.report(waited, now)
        if self._options.leak_timeout:
            entry.watch_leak(self._loop, self._options.leak_timeout, self._name)
        if limit is not None:
            entry.conn.statement_limit = limit
        return entry.conn

    def _pop_usable_idle(self, now: float) -> tuple[Entry, bool] | None:
        """Pop the most recently used idle connection, retiring expired and broken ones on
        the way; with it, whether it was used within the pre-ping window."""
        while self._free:
            entry = self._free.pop()
            if entry.expired(now):
                self._connector.retire(entry, "lifetime")
            elif not self._driver.is_clean(entry.conn):
                self._close_entry_now(entry, "broken")
            elif self._driver.session_dirty(entry.conn, self._autocommit):
                # Only a release with a clean session puts a connection here: something used it since.
                logger.error(
                    "pool %s: an idle connection is inside a transaction or has unread results (used after "
                    "its release?); connection discarded", self._name,
                    extra={"pool": self._name, "event": "discard", "reason": "dirty_idle"},
                )  # fmt: skip
                self._close_entry_now(entry, "broken")
            else:
                return entry, entry.used_within(now, self._ping_window)
        return None

    async def _wait(self, started: float, deadline: float) -> Entry:
        """Queue (FIFO) until a released or new connection is handed over, or the deadline."""
        if self._closing:
            raise PoolClosed(f"pool {self._name!r} is closed")
        max_waiting = self._options.max_waiting
        if max_waiting and len(self._queue) >= max_waiting:
            self._stats.rejected_total += 1
            raise TooManyWaiters(
                f"pool {self._name!r}: {len(self._queue)} tasks already wait for a connection (max_waiting)"
            )
        refusal = self._reconnect.refusal(started, bool(self._opening))
        if refusal is not None and not self._can_serve():
            # The server is known to be unreachable (or to refuse us for good): say so now, not at the deadline.
            raise _copy_error(refusal)
        fut = self._waiters.add(started, deadline)
        if self._free or self.size < self.maxsize:  # else only a release can serve it
            self._meet_demand()
        try:
            return await fut
        except BaseException:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                entry = fut.result()
                if self._in_use.get(entry.conn) is entry:
                    # Handed a connection in the same tick we were cancelled: give it back.
                    self._give_back(entry)
                else:
                    # terminate() closed (and counted) it meanwhile: closing it again would count it twice.
                    self._terminated.discard(entry.conn)
            elif self._waiters.remove(fut):
                self._meet_demand()
            raise

    def _timeout_error(self, fut: Waiter) -> PoolTimeout:
        """What a waiter whose deadline passed fails with (the deadline timer asks)."""
        waited = fut.deadline - fut.started
        self._stats.timeouts_total += 1
        # A timed-out acquire waited too: left out, the wait latency would look best when the pool is exhausted.
        self._stats.wait_time.observe(waited)
        error = f"; last connect error: {self.last_error}" if self._reconnect.down and self.last_error else ""
        return PoolTimeout(
            f"pool {self._name!r}: no connection within {waited:g} s (size {self.size}/{self.maxsize}, "
            f"{len(self._in_use)} in use, {len(self._queue) - 1} other tasks waiting){error}"
        )

    # ------------------------------------------------------------ checks of idle connections

    def _sweep_idle(self, verdict: Verdict) -> None:
        """Ask ``verdict`` about every idle connection, least recently used first: None keeps it,
        `CHECK` or `KEEPALIVE` pings it in a task, a close reason closes it ("broken" at once)."""
        kept: deque[Entry] = deque()
        acted: list[tuple[Entry, str]] = []
        for entry in self._free:  # oldest use first: the free list is a LIFO stack
            action = verdict(entry)
            if action is None:
                kept.append(entry)
            else:
                acted.append((entry, action))
        self._free = kept
        for entry, action in acted:
            if action in (CHECK, KEEPALIVE):
                self._check_idle(entry, keepalive=action == KEEPALIVE)
            elif action == "broken":
                self._close_entry_now(entry, action)  # no COM_QUIT into a session the server ended
            else:
                self._connector.retire(entry, action)

    def _probe_hosts(self) -> None:
        """Several hosts: re-probe their roles and lags in a task when due; what no longer serves is dropped."""
        if self._hosts.due(self._now()):
            self._connector.start_probe(self._reroute)

    def _check_idle(self, entry: Entry, *, keepalive: bool = False) -> None:
        """Pre-ping ``entry`` in a task of its own; it then goes to the oldest waiter."""
        self._checking += 1
        if keepalive:
            entry.keepalive_at = self._now()
        self._spawn(self._check(entry, keepalive), "mysqlpool-keepalive" if keepalive else "mysqlpool-check")

    async def _check(self, entry: Entry, keepalive: bool) -> None:
        alive = False
        used = entry.last_used
        try:
            alive = await self._connector.ping(entry, self._options.ping_timeout)
        finally:
            self._checking -= 1
            if not alive:
                self._close_entry_now(entry, "broken")
                if not self._closing:
                    self._sweep_idle(stale_verdict(self._now(), self._ping_window))
                self._meet_demand()
            elif keepalive:
                # A keepalive is not a use: max_idle and the free list's least-recently-used order still count
                # from the last acquire, so the hot path keeps taking the connection used last.
                entry.last_used = used
                self._put_checked(entry, "keepalive")
                free = self._free
                if free and free[-1] is entry:
                    free.pop()
                    free.appendleft(entry)
            else:
                self._put_checked(entry, "check")

    # ------------------------------------------------------------ release

    def _release(self, conn: Conn, discard: bool) -> asyncio.Future[None] | None:
        """Return ``conn``. Synchronous unless the connection needs a reset; then the
        reset runs in its own task (so cancelling the releaser cannot abandon it) and
        the returned future completes with it.

        The connection is judged by its own state, never by an exception that passed through the
        caller's block: an error of the connection itself has already marked it broken."""
        entry = self._in_use.get(conn)
        if entry is None or entry.resetting:
            if conn in self._terminated:
                self._terminated.discard(conn)
                return None
            raise PoolMisuse(f"pool {self._name!r}: connection released twice or not acquired from this pool")
        # From here on only the pool's own tasks may use it: a reference kept past the release gets an error.
        state = self._driver.released(conn, self._autocommit, self._exact_reset)
        now = self._now()
        uses = self._uses  # self._stats.use_time.observe(), inlined: the release path
        uses.append(now - entry.acquired_at)
        if len(uses) >= FOLD_AT:
            self._stats.use_time.fold()
        conn.statement_limit = None  # an acquire's own statement timeout ends with it
        if entry.leak_handle is not None:
            entry.end_leak_watch(now, self._name)
        if not state and self._plain and not discard and now < entry.expires:  # `not state`: READY is 0
            # READY, within its lifetime, and nothing for the pool to decide (see `_update_plain`): the release
            # of a clean connection, the hot path.
            entry.last_used = now
            del self._in_use[conn]
            if self._queue:
                self._put(entry)
            else:
                self._free.append(entry)  # what _put does when nobody waits: inlined
            return None
        if self._closing:
            self._forget(entry)
            if state != BROKEN:  # the server rolls back an open transaction at COM_QUIT
                return self._connector.retire(entry, "shutdown")
            self._close_entry_now(entry, "shutdown")
            return None
        if discard or state == BROKEN:
            self._forget(entry)
            self._close_entry_now(entry, "broken")
            self._meet_demand()
            return None
        if now >= entry.expires:  # entry.expired(now), inlined; clear() expired those it found in use
            self._forget(entry)
            self._meet_demand()
            if entry.created <= self._cleared_at:
                self._connector.retire(entry, "cleared")  # in the background: the releaser does not wait for it
                return None
            return self._connector.retire(entry, "lifetime")
        if self._hosts.routing and not self._hosts.keep(conn):
            # Its host no longer serves the pool's role, or it is a fallback and a better host qualifies again.
            self._forget(entry)
            self._meet_demand()
            return self._connector.retire(entry, "rerouted")
        entry.last_used = now
        if state != READY or self._always_reset:
            full = self._full_reset or state == RESTORE
            entry.resetting = True
            return self._spawn(self._reset(entry, full), "mysqlpool-reset")
        del self._in_use[conn]
        self._put(entry)  # the plain path above takes the releases that need nothing of _put
        return None

    async def _reset(self, entry: Entry, full: bool) -> None:
        conn = entry.conn
        try:
            await self._connector.reset(conn, full)
        except BaseException as exc:
            entry.resetting = False
            if self._in_use.get(conn) is entry:  # not already terminated
                logger.info(
                    "pool %s: reset on release failed (%s); connection discarded", self._name, describe(exc),
                    extra={"pool": self._name, "event": "discard", "reason": "reset_failed"},
                )  # fmt: skip
                self._forget(entry)
                self._close_entry_now(entry, "reset_failed")
                self._meet_demand()
            if not isinstance(exc, Exception):
                raise
            return
        entry.resetting = False
        if self._in_use.get(conn) is entry:
            del self._in_use[conn]
            self._put_checked(entry, "reset")

    def _update_plain(self) -> None:
        """Whether the release of a clean connection may skip every decision but the hand-over: the pool is
        not closing, resize() left it no connection to close, its hosts need no routing and no hook asks for a
        reset on every release. clear() expires the connections in use instead (see `_release`)."""
        self._plain = not (self._closing or self._excess or self._hosts.routing or self._always_reset)

    def _give_back(self, entry: Entry) -> None:
        self._in_use.pop(entry.conn, None)
        self._put(entry)

    def _put_checked(self, entry: Entry, step: str) -> None:
        """`_put` for a connection back from the pool's own I/O (``step``: its open, check or reset)."""
        if self._left_clean(entry, step):
            self._put(entry)
        else:
            self._meet_demand()

    def _left_clean(self, entry: Entry, step: str) -> bool:
        """Whether ``entry`` (in no collection) is clean after the pool's own ``step``; if not, it is closed.

        The free list and the hand-over to a waiter hold clean connections only: a release puts one there
        when the driver found it `READY`, the pool's own I/O when this says so. The acquire path relies on it
        and tests only what can change while a connection sits idle, its socket (see `Driver.take`)."""
        conn = entry.conn
        if self._driver.is_clean(conn) and not self._driver.session_dirty(conn, self._autocommit):
            # Given back from here on, a new connection too: only the pool's own tasks may use it until an acquire.
            self._driver.set_owned(conn, False)
            return True
        logger.error(
            "pool %s: a connection left unclean by the pool's own %s (a transaction, unread results or another "
            "autocommit mode); connection discarded", self._name, step,
            extra={"pool": self._name, "event": "discard", "reason": "unclean"},
        )  # fmt: skip
        self._close_entry_now(entry, "broken")
        return False

    def _put(self, entry: Entry) -> None:
        """Hand ``entry`` (in no collection) to the oldest live waiter, or make it idle; or retire it when the
        pool closes, it predates clear(), or resize() left the pool too big."""
        if self._closing:
            self._connector.retire(entry, "shutdown")
            self._check_drained()  # it may have been the last one in use
            return
        if entry.created <= self._cleared_at:  # opened before clear(): in use, checked or reset meanwhile
            self._connector.retire(entry, "cleared")
            self._meet_demand()
            return
        if self._excess:
            # resize() lowered maxsize below the size: this one closes instead of being reused.
            if self.size >= self.maxsize:
                self._excess -= 1
                self._update_plain()
                self._connector.retire(entry, "resized")
                return
            self._excess = 0
            self._update_plain()
        if self._queue and self._waiters.hand_over(entry):
            self._in_use[entry.conn] = entry
            return
        self._free.append(entry)

    # ------------------------------------------------------------ closing connections

    def _forget(self, entry: Entry) -> None:
        entry.drop_leak_watch()
        self._in_use.pop(entry.conn, None)
        self._check_drained()

    def _close_entry_now(self, entry: Entry, reason: str) -> None:
        if self._connector.close_now(entry, reason) and not self._closing:
            self._reroute()  # its host's other idle connections would fail the same way

    async def _probe_all_hosts(self) -> None:
        """Learn every host's role now (the health check, when the hosts known to serve refused)."""
        await self._connector.probe_all(self._reroute)

    def _reroute(self) -> None:
        """Retire the idle connections the host set no longer wants (after a probe or a wrong-host error)."""
        if self._closing:
            return
        keep = self._hosts.keep
        self._sweep_idle(lambda entry: None if keep(entry.conn) else "rerouted")
        self._meet_demand()

    def _check_drained(self) -> None:
        drained = self._drained
        if drained is not None and not self._in_use and not drained.done():
            drained.set_result(None)


def _default_name(kwargs: dict[str, Any]) -> str:
    db = kwargs.get("db") or ""
    if kwargs.get("unix_socket"):
        return f"{kwargs['unix_socket']}/{db}"
    host = kwargs.get("host", "localhost")
    if not isinstance(host, str) or "," in host:
        hosts = ",".join(f"{h}:{p}" for h, p in parse_hosts(host, kwargs.get("port", 3306)))
        return f"{hosts}/{db}"
    return f"{host}:{kwargs.get('port', 3306)}/{db}"


def _copy_error(exc: Exception) -> Exception:
    # Each waiter gets its own instance: one exception raised in many tasks would share
    # and grow a single traceback.
    try:
        return type(exc)(*exc.args)
    except Exception:
        return PoolError(describe(exc))
