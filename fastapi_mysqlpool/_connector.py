"""The pool's I/O on its connections, through the driver: open, ping, reset and close.

The pool decides where a connection is; the `Connector` does what takes a round trip: it opens
connections (one, ``minsize`` at start, or retried with backoff while somebody needs one), pings
idle ones, resets released ones and closes those the pool lets go of (counting each close the
moment the pool decides it). It owns the host set, the opener and the pool's `Reconnect` state,
and talks to the pool through `Demand`, so this module does not import the pool's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from ._config import PoolOptions
from ._credentials import ConnectionOpener
from ._entry import Entry
from ._errors import HookError, PoolTimeout
from ._hooks import Hooks, end_what_hooks_left, ping_and_check, run_hook
from ._hosts import HostSet, parse_hosts
from ._reconnect import Reconnect, connect_error, describe
from ._seam import Conn, Driver, is_transient_connect_error
from ._stats import PoolStats
from ._tasks import PoolTasks

__all__ = ["Connector", "Demand", "discard"]

logger = logging.getLogger("fastapi_mysqlpool")


class Demand(Protocol):
    """The pool, as a retrying connect sees it."""

    def _can_serve(self) -> bool: ...

    def _needs_connection(self) -> bool: ...

    def _fail_waiters(self, exc: Exception) -> None: ...

    def _meet_demand(self) -> None: ...


class Connector:
    """Opens, pings and resets the connections of one pool (named ``name``, run with ``options``)."""

    __slots__ = (
        "_autocommit",
        "_driver",
        "_exact_reset",
        "_hooks",
        "_name",
        "_opener",
        "_options",
        "_stats",
        "_tasks",
        "hosts",
        "reconnect",
    )

    def __init__(
        self,
        name: str,
        options: PoolOptions,
        connect_kwargs: dict[str, Any],
        driver: Driver,
        hooks: Hooks,
        connection_class: type[Any],
        stats: PoolStats,
        tasks: PoolTasks,
    ) -> None:
        self._name = name
        self._options = options  # for its times, which resize() leaves alone
        self._driver = driver
        self._hooks = hooks
        self._stats = stats
        self._tasks = tasks
        self._autocommit: bool | None = connect_kwargs.get("autocommit", False)
        # A change that the reset itself finds (in result sets still to read) turns its rollback into the full reset.
        self._exact_reset = options.session_reset == "exact" and not options.reset_connection
        # Several hosts: the host set picks one per connect (its role probed); the opener gets the first as default.
        addresses = parse_hosts(connect_kwargs.get("host") or "localhost", connect_kwargs.get("port", 3306))
        if connect_kwargs.get("unix_socket"):
            addresses = addresses[:1]
        self.hosts = HostSet(name, addresses, options, driver)
        self._opener = ConnectionOpener(
            {**connect_kwargs, "host": addresses[0][0], "port": addresses[0][1]},
            driver=driver,
            configure=hooks.configure,
            connection_class=connection_class,
        )
        self.reconnect = Reconnect(name, options.backoff_max, options.fail_fast)

    def start_probe(self, done: Callable[[], None]) -> None:
        """Several hosts: re-probe their roles and lags in a task; ``done`` runs after."""
        self.hosts.start_probe(self._tasks.spawn, self._opener, done)

    async def probe_all(self, done: Callable[[], None]) -> None:
        """Several hosts: probe every one now, concurrently; ``done`` runs after."""
        await self.hosts.probe_all(self._opener, done)

    async def connect(self, deadline: float = float("inf")) -> Entry:
        """Open one connection, bounded by ``connect_timeout`` as a whole, and by ``deadline`` (`time.monotonic`,
        create_pool's ``open_timeout``) when that comes first. The pool counts it as created when it joins the
        pool."""
        opts = self._options
        started = time.monotonic()
        cut_short = deadline - started < opts.connect_timeout  # the open deadline comes first
        opened: list[Conn] = []
        try:
            # Credentials, handshake and the configure hook, bounded as one; a failed open closes its own socket.
            # The host set bounds each host's attempt by connect_timeout (and every wait by the deadline) and tries
            # the next on failure.
            conn = await self.hosts.open(self._opener, opts.max_statement_time, opts.connect_timeout, opened, deadline)
        except BaseException as exc:
            # Before Python 3.12, wait_for loses the result of an open that completes in the same tick as
            # the caller's cancellation: the connection it opened is still reachable here, and closed.
            for conn in opened:
                discard(self._driver.abort(conn))
            if not isinstance(exc, Exception):
                raise
            self._stats.connect_errors_total += 1
            error = connect_error(
                self._driver, exc, self._name, opts.connect_timeout, opts.open_timeout if cut_short else None
            )
            self.reconnect.failed(error, describe(error))
            if error is exc:
                raise
            raise error from None
        self._stats.create_time.observe(time.monotonic() - started)
        self.reconnect.succeeded()
        self._driver.settle_session(conn)  # the settings and the configure hook make the session to restore
        return Entry(conn, time.monotonic(), opts.lifetime)

    async def open_minsize(self, minsize: int, joined: Callable[[Entry], None]) -> None:
        """Open ``minsize`` connections concurrently, each handed to ``joined`` as soon as it is open, retrying
        network errors with backoff until ``open_timeout``; wrong credentials or database fail at once."""
        opts = self._options
        reconnect = self.reconnect
        deadline = time.monotonic() + opts.open_timeout
        opened = 0
        while True:
            # After a failure, one attempt at a time until the server answers again.
            count = 1 if reconnect.down else minsize - opened
            tasks = [asyncio.create_task(self.connect(deadline)) for _ in range(count)]
            try:
                await asyncio.wait(tasks)
            finally:
                # Cancelled meanwhile: no connect may outlive create_pool, and one may have opened its connection
                # all the same (in the tick of the cancel, or past a wait_for that swallowed it before Python
                # 3.12). Every one has ended here, and what it opened joins the pool, which closes it.
                await _end_all(tasks)
                for task in tasks:
                    if not task.cancelled() and task.exception() is None:
                        opened += 1
                        joined(task.result())
            errors = [e for t in tasks if not t.cancelled() and (e := t.exception()) is not None]
            if not errors:
                if opened >= minsize:
                    return
                continue  # the server answers again: open the rest together
            first = errors[0]
            if not isinstance(first, Exception) or not is_transient_connect_error(first):
                raise first
            delay = min(reconnect.delay(), deadline - time.monotonic())
            if delay > 0:
                reconnect.log_failure(delay)
                await asyncio.sleep(delay)
            if time.monotonic() >= deadline:
                # No attempt starts at the deadline: it would have no time left, and hide the last real error.
                raise PoolTimeout(
                    f"pool {self._name!r} could not open {minsize} connection(s) within "
                    f"{opts.open_timeout:g} s (open_timeout); last error: {reconnect.last_error}"
                ) from first

    async def open_for(self, demand: Demand) -> Entry | None:
        """A background connect, retried with backoff while ``demand`` needs it; None when it gave up.

        While the server is down one task retries (it holds ``reconnect.retrying``); a connect
        that fails while another task retries gives up, so a down server sees one attempt per
        backoff period however many connects were in flight when it went down.
        """
        reconnect = self.reconnect
        retrying = False
        try:
            while True:
                try:
                    return await self.connect()
                except Exception as exc:
                    if not demand._can_serve() and reconnect.hopeless(exc):
                        # Nothing alive can serve the waiters, and this error will not pass by waiting.
                        demand._fail_waiters(exc)
                    if not retrying and reconnect.retrying:
                        return None  # another task retries for us
                    if not demand._needs_connection():
                        # Nobody needs it now; the next acquire may try again once the backoff has passed.
                        asyncio.get_running_loop().call_later(reconnect.pause(), demand._meet_demand)
                        return None
                    retrying = reconnect.retrying = True
                    await asyncio.sleep(reconnect.next_delay())
        finally:
            if retrying:
                reconnect.retrying = False

    async def ping(self, entry: Entry, timeout: float) -> bool:
        """COM_PING (and the ``check`` hook) within ``timeout``. Cancellation propagates; the caller
        accounts for the entry."""
        if timeout <= 0:
            return False
        try:
            checked = ping_and_check(self._driver, entry.conn, self._hooks.check, self._autocommit)
            await asyncio.wait_for(checked, timeout)
        except HookError as exc:
            logger.warning(
                "pool %s: %s; connection discarded", self._name, exc,
                extra={"pool": self._name, "event": "discard", "reason": "check_hook"},
            )  # fmt: skip
            return False
        except Exception:
            return False
        entry.last_used = time.monotonic()
        return True

    async def reset(self, conn: Conn, full: bool) -> None:
        """Reset a released connection's session (``full``: COM_RESET_CONNECTION), within ``reset_timeout``."""
        await asyncio.wait_for(self._reset(conn, full), self._options.reset_timeout)

    async def _reset(self, conn: Conn, full: bool) -> None:
        full = await self._driver.reset(conn, full=full, autocommit=self._autocommit, exact=self._exact_reset)
        hooks = self._hooks
        if full and hooks.configure is not None:
            # The full reset cleared what the hook set up when the connection was opened.
            await run_hook("configure", hooks.configure, conn)
        if hooks.reset is not None:
            await run_hook("reset", hooks.reset, conn)
        if hooks.reset is not None or (full and hooks.configure is not None):
            await end_what_hooks_left(self._driver, conn, self._autocommit)
        # What the hooks set is part of the session every acquirer gets, not a change to reset.
        self._driver.settle_session(conn)

    def retire(self, entry: Entry, reason: str) -> asyncio.Task[None]:
        """Close politely, in a task: COM_QUIT, so the server does not count an aborted client.
        Counted now, so that stats() agree with the pool's state the moment it changes."""
        self._stats.closed_total[reason] += 1
        self.hosts.closed(entry.conn, False)
        if reason in ("lifetime", "idle"):
            age = time.monotonic() - entry.created
            logger.debug(
                "pool %s: connection retired (%s) after %.1f s", self._name, reason, age,
                extra={"pool": self._name, "event": "recycle", "reason": reason, "age_seconds": age},
            )  # fmt: skip
        return self._tasks.spawn(self._driver.quit(entry.conn), "mysqlpool-close")

    def close_now(self, entry: Entry, reason: str) -> bool:
        """Close a connection whose state is unknown: no COM_QUIT into a half-read stream. Counted now.
        True when it failed for being on the wrong server: its host's other connections would too."""
        self._stats.closed_total[reason] += 1
        self.abort(entry.conn)
        wrong_host = bool(getattr(entry.conn, "wrong_host", False))
        self.hosts.closed(entry.conn, wrong_host)
        if reason != "shutdown":
            logger.info(
                "pool %s: connection discarded (%s)", self._name, reason,
                extra={"pool": self._name, "event": "discard", "reason": reason},
            )  # fmt: skip
        return wrong_host

    def abort(self, conn: Conn) -> None:
        """Close without I/O; a task waits (briefly) for the transport to finish closing,
        so that wait_closed() does not return before the socket is really gone."""
        closing = self._driver.abort(conn)
        if closing is not None:
            self._tasks.spawn(closing, "mysqlpool-close")


async def _end_all(tasks: list[asyncio.Task[Entry]]) -> None:
    """Cancel the tasks still running and wait until every one has ended, however often the caller is cancelled
    meanwhile (each connect is bounded by ``connect_timeout``); a cancel that came while waiting is raised then."""
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    cancelled = False
    while pending:
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError:
            cancelled = True
        pending = [task for task in pending if not task.done()]
    if cancelled:
        raise asyncio.CancelledError


def discard(closing: Coroutine[Any, Any, None] | None) -> None:
    """Drop the wait for a transport to close: nobody will run it, the loop is going away."""
    if closing is not None:
        closing.close()
