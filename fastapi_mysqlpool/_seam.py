"""The driver seam: everything the pool knows about a driver, and the one table of MySQL error codes.

The pool core talks to connections only through a `Driver`: connect, is the connection clean, does its
session need a reset, reset it, ping, close it politely (COM_QUIT) or abort it, and what an error of the
driver means. Nothing else in the pool imports a driver module or touches a driver's private name; each
driver lives in a module of its own (`_aiomysql`, `_asyncmy`) and is loaded on first use, so that a driver
that is not installed costs nothing.

What an error means does not depend on the driver: MySQL and MariaDB number their errors, and every driver
raises DB-API classes. A driver only says which family an exception belongs to and which code it carries
(`Driver.classify`); the table below decides.
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
import importlib
import socket
import ssl
from collections.abc import Coroutine
from typing import Any, ClassVar, Literal, TypeAlias

from ._errors import HookError

__all__ = [
    "BROKEN",
    "DRIVERS",
    "POOL_TASK",
    "READY",
    "RESTORE",
    "ROLLBACK",
    "Conn",
    "Driver",
    "ErrorFamily",
    "error_code",
    "error_family",
    "get_driver",
    "is_disconnect",
    "is_transient_connect_error",
    "is_wrong_host",
]

#: The drivers the pool supports, and the module of each.
DRIVERS = {"aiomysql": "._aiomysql", "asyncmy": "._asyncmy"}

# Where each driver's error classes live.
_ERROR_PACKAGES = {"pymysql": "aiomysql", "aiomysql": "aiomysql", "asyncmy": "asyncmy"}

ErrorFamily = Literal["interface", "internal", "operational", "statement"]
#: A driver's connection, as the pool holds it: the pool never looks inside.
Conn: TypeAlias = Any

# Server error codes that end the session (shutdown, killed, idle timeout) although the server reports
# them as ordinary errors. Client-side codes (2000-2999) always do.
SESSION_ENDING_CODES = frozenset({1053, 1152, 1927, 4031})
# Server error codes that say "this host is no longer what you think": a demoted primary refusing writes
# (1290 --read-only, 1836 read-only mode) and a Galera node out of the primary component (1047 WSREP not
# prepared, 1180 commit failed). The connection is discarded and its host re-checked. Not 1792, a write in a
# read-only transaction: the application's own START TRANSACTION READ ONLY is its usual cause.
WRONG_HOST_CODES = frozenset({1047, 1180, 1290, 1836})
# Connect errors worth a retry: the server is unreachable, starting, shutting down or full. Anything else
# (access denied, unknown database, a refused TLS certificate, an unknown host, an auth plugin the client
# lacks) fails the same way however often it is tried.
TRANSIENT_CONNECT_CODES = frozenset({1040, 1053, 1129, 1203, 1226, 2002, 2003, 2006, 2013, 2055})
# Name-resolution answers that say the name does not exist, as opposed to a resolver that did not answer
# (EAI_AGAIN), which is worth a retry.
_UNKNOWN_NAME = frozenset(
    code for code in (getattr(socket, n, None) for n in ("EAI_NONAME", "EAI_NODATA", "EAI_SERVICE")) if code is not None
)

_loaded: dict[str, Driver] = {}

#: What a connection given back needs before its next user (`Driver.released`): nothing; a rollback (a
#: transaction, result sets still to come, or another autocommit mode); the full reset (the session's state
#: changed); or nothing any more, because it cannot be reused.
READY, ROLLBACK, RESTORE, BROKEN = 0, 1, 2, 3

#: True inside the pool's own tasks (reset, check, close, open): the work a given-back connection still
#: allows (see `Driver.set_owned`). Each task runs in a copy of the context, so setting it in one of the
#: pool's tasks never leaks into the caller's.
POOL_TASK: contextvars.ContextVar[bool] = contextvars.ContextVar("fastapi_mysqlpool_task", default=False)


class Driver(abc.ABC):
    """One database driver, as the pool sees it. One instance per driver, shared by every pool."""

    #: The name users select it by: ``driver="asyncmy"``.
    name: ClassVar[str]
    #: The keyword arguments its connections accept (anything else given to `create_pool` is a typo).
    connect_arguments: ClassVar[frozenset[str]]
    #: The class of its connections; `connect` opens this class or a subclass of it (tracing's).
    connection_class: ClassVar[type[Any]]
    #: Its error classes that may mean the connection or the server is gone (``OperationalError``,
    #: ``InterfaceError``): what an application's error handlers answer with 503.
    connection_errors: ClassVar[tuple[type[Exception], ...]] = ()

    @abc.abstractmethod
    def classify(self, exc: BaseException) -> tuple[ErrorFamily, int] | None:
        """The family and the MySQL error code (0 when none) of one of this driver's errors, else None."""

    @abc.abstractmethod
    def error(self, code: int, message: str) -> Exception:
        """This driver's ``OperationalError`` with ``code``: how the pool reports what it decides itself
        (a connect that timed out), so callers catch one kind of error."""

    @abc.abstractmethod
    async def connect(
        self, kwargs: dict[str, Any], connection_class: type[Any] | None = None, statement_time: float = 0.0
    ) -> Any:
        """A connected connection (of ``connection_class``, by default `connection_class`), its session's
        statement timeout set to ``statement_time`` seconds (0: none); on failure nothing is left open.
        The caller bounds the time."""

    @abc.abstractmethod
    def is_clean(self, conn: Any) -> bool:
        """Cheap and I/O-free: the socket is open and healthy and no stray bytes or unread results wait,
        so the next command reads its own answer. False for a connection marked broken."""

    @abc.abstractmethod
    def session_dirty(self, conn: Any, autocommit: bool | None) -> bool:
        """Whether the session may hold a transaction, or result sets still to come, or an autocommit mode
        other than ``autocommit`` (None: not checked): a reset is due before reuse."""

    @abc.abstractmethod
    async def reset(self, conn: Any, *, full: bool, autocommit: bool | None, exact: bool = False) -> bool:
        """Make the session as a new one would be: read announced result sets, roll back; with ``full``,
        COM_RESET_CONNECTION and the connection's own settings again; then ``autocommit``. With ``exact``
        (``session_reset='exact'``), a session change that the announced result sets report makes it ``full``.
        Returns whether the reset was the full one (the pool then runs its ``configure`` hook again)."""

    def set_owned(self, conn: Any, owned: bool) -> None:  # noqa: B027 (optional: by default, no check)
        """Mark ``conn`` as handed out (True, at acquire) or given back (False, at release). Handed out, it reports
        no last statement (``insert_id()`` and ``affected_rows()`` answer 0), whatever the pool or the last user ran.

        A driver that checks ownership makes every command on a given-back connection raise `PoolMisuse`
        saying it was used after its release, except in the pool's own tasks (`POOL_TASK`), and makes a
        command sent while another task's command still waits for its answer raise `PoolMisuse` too. The
        check is an attribute test per command. The default checks nothing."""

    def take(self, conn: Any, autocommit: bool | None) -> bool:
        """At acquire, one call: whether idle ``conn`` is fit to hand out (`is_clean`, and not `session_dirty`: a
        release made it idle clean, so that only a defect could change it), and if so, mark it handed out
        (`set_owned`). A driver may skip the session test when no command reached ``conn`` since its release
        (the pool's connection classes mark one: only the pool's own tasks can send it)."""
        if not self.is_clean(conn) or self.session_dirty(conn, autocommit):
            return False
        self.set_owned(conn, True)
        return True

    def released(self, conn: Any, autocommit: bool | None, exact: bool) -> int:
        """At release, one call: mark ``conn`` given back (`set_owned`) and say what it needs before reuse:
        `BROKEN` when it is not `is_clean`, `RESTORE` when ``exact`` and `session_changed`, `ROLLBACK` when
        `session_dirty`, else `READY`."""
        self.set_owned(conn, False)
        if not self.is_clean(conn):
            return BROKEN
        if exact and self.session_changed(conn):
            return RESTORE
        return ROLLBACK if self.session_dirty(conn, autocommit) else READY

    def session_changed(self, conn: Any) -> bool:
        """Whether the session's state (current database, variables, character set, temporary tables,
        locks, ...) may differ from what the connection was opened with, so that release must run the full
        reset (``reset(full=True)``). The default, for a driver that cannot tell, is always True: safe, at
        the price of a COM_RESET_CONNECTION on every release."""
        return True

    def settle_session(self, conn: Any) -> None:  # noqa: B027 (optional: a driver that cannot tell has nothing to forget)
        """Take ``conn``'s session as it is now as the one every acquirer gets: forget the changes seen so far.
        Called once the connection is open and configured, and after each full reset and the hooks after it."""

    @abc.abstractmethod
    async def ping(self, conn: Any) -> None:
        """COM_PING, without reconnecting; raises when the server does not answer."""

    async def quit(self, conn: Any) -> None:
        """Close politely (COM_QUIT, so the server counts no aborted client) when the stream is clean,
        else abort; return once the socket is gone. Never raises. The same for every driver: both
        connection classes have ``ensure_closed()``, and `abort` knows what to wait for."""
        try:
            if self.is_clean(conn):
                await asyncio.wait_for(conn.ensure_closed(), 1.0)
        except Exception:
            pass
        finally:
            closing = self.abort(conn)
            if closing is not None:
                await closing

    @abc.abstractmethod
    def abort(self, conn: Any) -> Coroutine[Any, Any, None] | None:
        """Close at once, without I/O. Returns, when there is one to wait for, a coroutine that ends once
        the transport has closed its socket."""

    @abc.abstractmethod
    async def cursor(self, conn: Any, *, dict_rows: bool) -> Any:
        """A new cursor on ``conn`` (an async context manager): rows as tuples, or as dicts."""

    @abc.abstractmethod
    def server_version(self, conn: Any) -> str:
        """The version string the server sent in its handshake."""


def get_driver(name: str) -> Driver:
    """The driver called ``name``, imported on first use. A clear error when it is unknown or not installed."""
    driver = _loaded.get(name)
    if driver is not None:
        return driver
    module = DRIVERS.get(name)
    if module is None:
        raise ValueError(f"unknown driver {name!r}: choose one of {', '.join(map(repr, DRIVERS))}")
    try:
        loaded: Driver = importlib.import_module(module, __package__).DRIVER
    except ImportError as exc:
        raise ValueError(f"driver {name!r} is not installed ({exc}): pip install 'fastapi-mysqlpool[{name}]'") from None
    _loaded[name] = loaded
    return loaded


def _classify(exc: BaseException) -> tuple[ErrorFamily, int] | None:
    # The error of a driver no pool of this process has loaded yet (raised by code of its own).
    owner = _ERROR_PACKAGES.get(type(exc).__module__.partition(".")[0])
    if owner is not None and owner not in _loaded:
        get_driver(owner)
    for driver in _loaded.values():
        kind = driver.classify(exc)
        if kind is not None:
            return kind
    return None


def error_family(exc: BaseException) -> ErrorFamily | None:
    """The family of a driver error (see `Driver.classify`), None for anything else."""
    kind = _classify(exc)
    return None if kind is None else kind[0]


def error_code(exc: BaseException) -> int | None:
    """The MySQL error code of a driver error (0 when it carries none), None for anything else."""
    kind = _classify(exc)
    return None if kind is None else kind[1]


def is_disconnect(exc: BaseException) -> bool:
    """Whether ``exc`` leaves the connection unusable, so that it must be replaced.

    Connection-level: ``InterfaceError``, ``InternalError`` (e.g. a wrong packet sequence), an
    ``OperationalError`` with a client-side code such as 2006 or 2013 or a session-ending server code, and
    socket errors. Statement-level errors such as ``ProgrammingError``, ``IntegrityError``, ``DataError``, a
    deadlock (1213) or a lock wait timeout (1205) keep the connection, after a rollback. The same for every
    driver the pool supports.
    """
    if isinstance(exc, (OSError, EOFError)):
        return True
    kind = _classify(exc)
    if kind is None:
        return False
    family, code = kind
    if family in ("interface", "internal"):
        return True
    return family == "operational" and (code == 0 or code >= 2000 or code in SESSION_ENDING_CODES)


def is_wrong_host(exc: BaseException) -> bool:
    """Whether ``exc`` is a server error meaning the host no longer serves as the pool thinks
    (`WRONG_HOST_CODES`): a demoted primary refusing a write, a Galera node without quorum."""
    kind = _classify(exc)
    return kind is not None and kind[1] in WRONG_HOST_CODES


def is_transient_connect_error(exc: BaseException) -> bool:
    """Whether a failed connect is worth retrying: the network or a busy server, not wrong credentials, an
    unknown database or host, or a certificate that does not verify. A `HookError` is judged by what the hook
    ran into: a ``configure`` hook that lost its connection (the server went away) is worth a retry, a hook
    that failed by its own logic is not."""
    if isinstance(exc, HookError):
        return exc.__cause__ is not None and is_transient_connect_error(exc.__cause__)
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return False
        if isinstance(cause, socket.gaierror) and cause.errno in _UNKNOWN_NAME:
            return False
        cause = cause.__cause__
    kind = _classify(exc)
    if kind is not None:
        return kind[1] in TRANSIENT_CONNECT_CODES
    return isinstance(exc, OSError)
