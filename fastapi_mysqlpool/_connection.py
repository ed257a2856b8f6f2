"""What the pool's connections do the same way on every driver, written once.

Each driver module (`_aiomysql`, `_asyncmy`) defines its ``Connection`` as `PoolConnection` put before the
driver's own class, and its driver as a `PoolDriver`. Both drivers speak the same protocol with the same
names (PyMySQL's, compiled with Cython in asyncmy's case), so what the pool adds is the same code:

- **Session tracking.** The handshake asks for ``CLIENT_SESSION_TRACK`` and, where the server grants it, the
  connection switches the trackers on (`TRACKERS`). A command whose answer carries
  ``SERVER_SESSION_STATE_CHANGED`` marks the session changed; so does a statement that changes it in a way
  the server never reports (`changes_unreported`), and ``set_charset``, whose answer the drivers read without
  its status. The full reset (`restore_session`) brings back what the connection was opened with.
- **Ownership.** A connection given back to the pool refuses every command (`PoolMisuse`) outside the pool's
  own tasks, and so does one whose answer another task still waits for: an attribute test per command.
- **Broken connections.** A failed command that leaves the connection unusable marks it broken; a server error
  saying its host changed role marks it for a re-check of the host (`wrong_host`).
- **Parameters** are escaped the same on both: ``bytes`` as hex literals and anything without an encoder as a
  quoted string, both right whatever ``NO_BACKSLASH_ESCAPES`` says; any sequence or set as a list.
- **Per-acquire statement timeouts** are written into each statement (see `_statement`).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import re
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, NamedTuple, cast, final

from ._errors import PoolMisuse
from ._read_timeout import ReadWatchdog
from ._seam import POOL_TASK, Driver, ErrorFamily, error_family, is_disconnect, is_wrong_host
from ._session_track import CLIENT_SESSION_TRACK, SERVER_SESSION_STATE_CHANGED
from ._statement import limit_leaves_session, session_sql, with_limit

__all__ = [
    "COM_QUERY",
    "COM_RESET_CONNECTION",
    "TRACKERS",
    "OpenedWith",
    "PoolConnection",
    "PoolDriver",
    "changes_unreported",
    "error_families",
    "session_changed",
]

COM_QUERY = 0x03
COM_STMT_PREPARE = 0x16
COM_RESET_CONNECTION = 0x1F

# The session trackers set on every connection of a server that tracks sessions: the current database, every
# system variable, and STATE_CHANGE for user variables, temporary tables, prepared statements and the rest.
# They cost nothing on a statement that changes nothing: the server adds bytes only to an answer whose command
# changed the session. The transaction tracker stays off: it would flag every BEGIN, COMMIT and autocommit-off
# statement, so a clean transaction would look like a changed session.
TRACKERS = (
    "SESSION session_track_schema=ON, SESSION session_track_state_change=ON, SESSION session_track_system_variables='*'"
)
# What changes a session without the server saying so (docs/pool.md has the measurements): user locks, open
# HANDLERs, LOCK TABLES and the next transaction's access mode or isolation level (`SET TRANSACTION ...`, and
# `SET @@tx_isolation=...` and the like without a scope; both reported only by the transaction tracker), FLUSH
# TABLES WITH READ LOCK, and user variables assigned inside a statement (`:=`, `INTO @v`). A false match (the
# words in a string literal, say) costs one full reset and nothing else; a column named `transaction_id` is none.
_UNREPORTED = re.compile(
    r"get_lock|handler|lock\s+table|read\s+lock|:=|into\s+@"
    r"|set(?:\s|/\*.*?\*/)+transaction(?:\s|/\*.*?\*/)+(?:isolation|read)\b"
    r"|@@(?:tx|transaction)_(?:isolation|read_only)\s*=",
    re.DOTALL,
)


def changes_unreported(sql: str | bytes) -> bool:
    """Whether ``sql`` may change the session in a way the server does not report (see `_UNREPORTED`).

    Substring tests on the lowered text first, a few hundred nanoseconds for a typical statement; the regular
    expression, which tries every alternative at every position and costs ten times that, only runs on the rare
    statement that contains one of the words."""
    low = sql.lower() if isinstance(sql, str) else sql.decode("latin-1").lower()
    if "lock" in low or "handler" in low or ":=" in low or "transaction" in low or "@@" in low:
        return _UNREPORTED.search(low) is not None
    if "@" in low and "into" in low:
        return _UNREPORTED.search(low) is not None
    return False


def session_changed(conn: PoolConnection) -> bool:
    """The server flagged a change (on any answer since the session was settled, the last one included), a
    statement did what the server does not report, or the server does not track sessions at all."""
    return conn._session_changed or not conn._tracks_sessions or bool(conn.server_status & SERVER_SESSION_STATE_CHANGED)


class OpenedWith(NamedTuple):
    """The connect arguments the full reset restores, as the driver keeps them."""

    charset: str
    sql_mode: str | None
    db: str | None
    init_command: str | None


class PoolConnection:
    """The pool's additions to a driver's connection class (see the module docstring); put it first among the
    bases, so that its methods wrap the driver's."""

    # The driver's own attributes this relies on: aiomysql and asyncmy both have them.
    server_version: Any
    server_status: int
    server_capabilities: int
    autocommit_mode: bool | None
    _encoding: str
    _result: Any
    escape_string: Callable[[str], str]  # follows NO_BACKSLASH_ESCAPES

    #: The pool-wide server-side statement timeout in seconds, 0 for none: set on the session at connect.
    max_statement_time = 0.0
    #: A per-acquire timeout written into each statement (see _statement.py); None: the session's applies.
    statement_limit: float | None = None
    #: Seconds one wait for the server's bytes may last before the connection is given up (2013); 0: no bound.
    read_timeout = 0.0
    _watchdog: ReadWatchdog | None = None
    #: A server error said its host changed role or left the cluster (`is_wrong_host`): discarded, host re-checked.
    wrong_host = False
    #: Galera causal reads (``wsrep_sync_wait = 1``) were set on the session at connect: the full reset sets them
    #: again, as it does the statement timeout.
    causal_reads = False
    # Whether a command was sent since the last OK or EOF packet (an error, or not answered yet).
    _unconfirmed = False
    # A failure left the connection in a state nobody can know: it is never reused.
    _broken = False
    # Given back to the pool (see `Driver.set_owned`); and the task whose command waits for its answer, the only
    # time another task can run while a command is in flight.
    _released = False
    _waiting: asyncio.Task[Any] | None = None
    # A command was sent while the connection was given back: only the pool's own tasks can (its check, reset or
    # keepalive, or a defect of its own), and `Driver.take` then tests the session as well as the socket.
    _touched = False
    # Whether the server reports session changes (CLIENT_SESSION_TRACK), and whether the session changed since
    # it was settled (opened, or fully reset): see `session_changed`.
    _tracks_sessions = False
    _session_changed = False
    #: The driver's ``InterfaceError``: a session the full reset cannot bring back.
    interface_error: ClassVar[type[Exception]]

    #: What the connection was opened with, taken right after the handshake (`apply_session_settings`): the
    #: driver's attributes change with the session (``set_charset`` rewrites its character set).
    _opened: OpenedWith | None = None

    def opened_with(self) -> OpenedWith:
        """What the connection is set to now, from the driver's attributes."""
        raise NotImplementedError

    @staticmethod
    def charset_by_name(name: str) -> Any:
        """The driver's entry for ``name`` in its table of character sets: name, collation, Python encoding."""
        raise NotImplementedError

    def restore_charset(self, charset: str) -> None:
        """Take ``charset`` (which the session was just set to) as the one the driver encodes and decodes with."""
        self._charset = charset
        self._encoding = self.charset_by_name(charset).encoding

    def handshake_names(self, charset: str) -> tuple[str, str]:
        """The character set and collation the handshake set for ``charset``: the driver sends a collation id,
        which is not always ``charset``'s name on the server (PyMySQL sends utf8mb4's for ``'utf8'``)."""
        known = self.charset_by_name(charset)
        return known.name, known.collation

    def forget_server_state(self) -> None:
        """Drop what the driver keeps of server-side state that COM_RESET_CONNECTION ended (prepared statements)."""

    def unflag_session_change(self) -> None:
        """Clear the "session changed" flag of the last status the server sent (a change known not to last)."""
        self.server_status &= ~SERVER_SESSION_STATE_CHANGED

    def closing(self) -> Any:
        """What closes the socket and has ``wait_closed()`` (see `until_closed`), None when never connected."""
        raise NotImplementedError

    @property
    def is_mariadb(self) -> bool:
        """Whether the server is MariaDB (else MySQL), from its handshake."""
        return "mariadb" in str(getattr(self, "server_version", "") or "").lower()

    def escape_known(self, obj: Any, mapping: Any) -> str | None:
        """``obj`` escaped by the driver's encoder for its type; None when it has none."""
        raise NotImplementedError

    def escape(self, obj: Any, mapping: Any = None) -> str:
        """Escape a query parameter (see the module docstring)."""
        if isinstance(obj, str):
            return f"'{self.escape_string(obj)}'"
        if isinstance(obj, (bytes, bytearray)):
            return "_binary X'" + obj.hex() + "'"
        if type(obj) in (tuple, list, set, frozenset):
            return "(" + ",".join([self.escape(item) for item in obj]) + ")"
        escaped = self.escape_known(obj, mapping)
        if escaped is None:
            # The driver would quote its str() with backslash escapes, which NO_BACKSLASH_ESCAPES does not read.
            return f"'{self.escape_string(str(obj))}'"
        return escaped

    def literal(self, obj: Any) -> str:
        return self.escape(obj)

    def _failed(self, exc: BaseException) -> None:
        """Judge the connection by a failure of its own I/O or answer. Anything but the driver's error for what
        the server answered (a value that failed to convert, text that did not decode) stopped the driver
        inside the answer, whose rest is still due: the connection is broken then too."""
        if not isinstance(exc, Exception) or is_disconnect(exc) or error_family(exc) is None:
            self._broken = True
        elif is_wrong_host(exc):
            self._broken = self.wrong_host = True

    def _check_owner(self) -> None:
        """Refuse a command from whoever gave the connection back, or from a second task while one waits for
        its answer: both would read, or send, in the middle of someone else's conversation with the server."""
        if self._released:
            if not POOL_TASK.get():
                raise PoolMisuse(
                    "connection used after its release: it went back to the pool (release(), or the end of its "
                    "'async with pool.acquire()' block or request) and may already serve someone else; acquire a "
                    "connection of your own for work that outlives the block"
                )
            self._touched = True
        waiting = self._waiting
        if waiting is not None and waiting is not asyncio.current_task():
            raise PoolMisuse(
                "connection used by two tasks at once: another task's command on it still waits for its answer; "
                "give each task a connection of its own"
            )

    async def ensure_closed(self) -> None:
        self._check_owner()
        await cast(Any, super()).ensure_closed()

    def _before_command(self, command: int, sql: Any) -> None:
        """What every command passes before it is sent: the owner's test, and what the session may become."""
        if self._released or self._waiting is not None:  # two attribute tests for the owner's own command
            self._check_owner()
        if self._tracks_sessions and not self._session_changed:
            # The last answer's status, where the driver stored it without a packet of ours seeing it (asyncmy's
            # prepared statements), and what the server will not report of this statement.
            self._session_changed = bool(self.server_status & SERVER_SESSION_STATE_CHANGED) or (
                command in (COM_QUERY, COM_STMT_PREPARE) and changes_unreported(sql)
            )

    async def _execute_command(self, command: int, sql: Any) -> None:
        self._before_command(command, sql)
        try:
            await super()._execute_command(command, sql)  # type: ignore[misc]  # the driver's; no cast() call per command
        except BaseException as exc:
            self._failed(exc)
            raise
        self._unconfirmed = True

    async def query(self, sql: str | bytes, unbuffered: bool = False) -> int:
        limit = self.statement_limit
        if limit is None:
            affected: int = await super().query(sql, unbuffered)  # type: ignore[misc]  # the driver's
            return affected
        raw = sql.encode(self._encoding, "surrogateescape") if isinstance(sql, str) else sql
        if self._tracks_sessions and not self._session_changed:
            # What `_execute_command` would conclude, decided before the limit's own flag is discounted below.
            self._session_changed = bool(self.server_status & SERVER_SESSION_STATE_CHANGED) or changes_unreported(raw)
        changed = self._session_changed
        try:
            affected = await super().query(with_limit(raw, limit, self.is_mariadb), unbuffered)  # type: ignore[misc]
        finally:
            if not changed and limit_leaves_session(raw):
                # The server flags the limit itself, then restores it: neither the mark nor the flag counts.
                self._session_changed = False
                self.unflag_session_change()
        return affected

    async def _own_query(self, sql: str) -> None:
        """One of the pool's own statements: no per-acquire timeout, no check for unreported changes."""
        await cast(Any, super()).query(sql)

    async def set_charset(self, charset: str) -> None:
        # The drivers read the answer without its status: the change would go unseen.
        self._session_changed = True
        await cast(Any, super()).set_charset(charset)

    def forget_last_statement(self) -> None:
        """Report no last statement, as a new aiomysql connection does: ``insert_id()`` and ``affected_rows()``
        are 0. The pool calls it as it hands the connection out (`Driver.take`, `Driver.set_owned`), so that no
        acquirer reads the figures of the pool's own statements (settings, reset, hooks) or of the last user's,
        and the last user can still read its own after the release, as with aiomysql."""
        result = self._result
        if result is not None and (result.has_next or result.unbuffered_active):
            return  # a result still being read is no last statement: the pool's checks read what it announces
        self._result = None
        self._affected_rows = 0

    def settle_session(self) -> None:
        """Take the session as it is now as the one every acquirer gets (see `Driver.settle_session`)."""
        self._session_changed = False
        # The flag of the pool's own last statement, which `_execute_command` would otherwise take for the next
        # user's change. Storing a status counts as an answer on aiomysql: keep what was known.
        unconfirmed = self._unconfirmed
        self.server_status &= ~SERVER_SESSION_STATE_CHANGED
        self._unconfirmed = unconfirmed

    def _session_assignments(self) -> list[str]:
        """What the pool sets per session beyond the driver's arguments: the trackers, the statement timeout and
        Galera's causal reads."""
        assignments = [TRACKERS] if self._tracks_sessions else []
        if self.max_statement_time:
            assignments.append(session_sql(self.max_statement_time, self.is_mariadb).removeprefix("SET "))
        if self.causal_reads:
            assignments.append("SESSION wsrep_sync_wait=1")
        return assignments

    async def apply_session_settings(self) -> None:
        """After the handshake: note whether the server tracks sessions, and set the `_session_assignments` in
        one statement."""
        self._tracks_sessions = bool(self.server_capabilities & CLIENT_SESSION_TRACK)
        self._opened = self.opened_with()
        assignments = self._session_assignments()
        if assignments:
            await self._own_query("SET " + ", ".join(assignments))

    async def restore_session(self, autocommit: bool | None) -> None:
        """COM_RESET_CONNECTION, which restores the server's defaults but keeps the current database; then the
        character set, ``sql_mode``, trackers, statement timeout and autocommit the connection was opened with
        (one statement), the configured database, then ``init_command``."""
        await self._execute_command(COM_RESET_CONNECTION, b"")
        await cast(Any, self)._read_ok_packet()
        self.forget_server_state()
        opened = self._opened or self.opened_with()
        names, collation = self.handshake_names(opened.charset)
        assignments = [f"NAMES {self.escape(names)} COLLATE {self.escape(collation)}"]
        if opened.sql_mode is not None:
            assignments.append(f"sql_mode={opened.sql_mode}")  # as the drivers set it at connect
        assignments += self._session_assignments()
        if autocommit is not None:
            assignments.append(f"autocommit={int(autocommit)}")
            self.autocommit_mode = autocommit
        await self._own_query("SET " + ", ".join(assignments))
        self.restore_charset(opened.charset)
        if opened.db:
            await cast(Any, self).select_db(opened.db)
        else:
            await self._own_query("SELECT DATABASE()")
            result = self._result
            if result is None or result.rows != ((None,),):
                # No command returns a session to "no database": only a new connection has none.
                raise self.interface_error(
                    0, "the session selected a database and the pool has none configured to return to"
                )
        if opened.init_command is not None:
            await self._own_query(opened.init_command)
            await cast(Any, self).commit()


async def until_closed(closing: Any) -> None:
    """Wait, for a second at most, until ``closing`` (a stream writer or protocol with ``wait_closed()``) has
    closed its socket. A TLS transport closes only after its shutdown exchange, a plain one on a later loop
    iteration; either way the socket must be gone before the event loop may close."""
    if closing is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(closing.wait_closed(), 1.0)


def error_families(module: Any) -> tuple[tuple[type[BaseException], ErrorFamily], ...]:
    """A driver's DB-API error classes (PyMySQL's names, in ``module``), most specific first, with their family."""
    return (
        (module.InterfaceError, "interface"),
        (module.InternalError, "internal"),
        (module.OperationalError, "operational"),
        (module.MySQLError, "statement"),
    )


class PoolDriver(Driver):
    """A driver whose connections are `PoolConnection`: what the seam asks, answered the same on each."""

    #: The driver's error classes, most specific first, and the family of each.
    families: ClassVar[tuple[tuple[type[BaseException], ErrorFamily], ...]]
    #: The driver's ``OperationalError``.
    operational_error: ClassVar[type[Exception]]

    def classify(self, exc: BaseException) -> tuple[ErrorFamily, int] | None:
        for cls, family in self.families:
            if isinstance(exc, cls):
                code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
                return family, code
        return None

    def error(self, code: int, message: str) -> Exception:
        return self.operational_error(code, message)

    async def open(self, conn: Any) -> None:
        """Connect ``conn``: the handshake, the driver's own settings, then `apply_session_settings`."""
        raise NotImplementedError

    async def connect(
        self, kwargs: dict[str, Any], connection_class: type[Any] | None = None, statement_time: float = 0.0
    ) -> Any:
        conn = (connection_class or self.connection_class)(**kwargs)
        conn.max_statement_time = statement_time
        try:
            await self.open(conn)
        except BaseException:
            conn.close()  # a cancel in the last step must not leak the socket
            raise
        return conn

    # Final: each driver's `take` and `released` set the mark in place, the hot path.
    @final
    def set_owned(self, conn: PoolConnection, owned: bool) -> None:
        conn._released = not owned
        if owned:
            # Handed out: the pool tested its session after the last command that reached it while given back
            # (`take`, the idle path's test, the release, or the test after the pool's own I/O).
            conn._touched = False
            conn.forget_last_statement()

    @abc.abstractmethod
    def take(self, conn: Any, autocommit: bool | None) -> bool:
        """The seam's `Driver.take`: a connection became idle clean (the pool puts only clean ones in its free
        list) and refuses every command once given back, so what its socket received (the server closed it, or
        sent bytes nobody asked for) is what usually changed; each driver tests that in place, then the session
        when a command reached it since the release (``_touched``: the pool's own check, reset or keepalive, or
        a defect of the pool), and marks the connection handed out."""

    @abc.abstractmethod
    def released(self, conn: Any, autocommit: bool | None, exact: bool) -> int:
        """The seam's `Driver.released`; each driver answers it in one pass over the connection's attributes."""

    @final
    def session_changed(self, conn: PoolConnection) -> bool:
        return session_changed(conn)

    def settle_session(self, conn: PoolConnection) -> None:
        conn.settle_session()

    async def reset(self, conn: Any, *, full: bool, autocommit: bool | None, exact: bool = False) -> bool:
        # A stored procedure whose later result sets were not read is still running: read them (it
        # finishes), then roll back whatever it left uncommitted.
        while conn._result is not None and conn._result.has_next:
            await conn.next_result()
            # What those result sets changed was not known when the release chose the rollback.
            full = full or (exact and session_changed(conn))
        if full:
            await conn.restore_session(autocommit)
            conn.settle_session()
        elif self.session_dirty(conn, None):
            await conn.rollback()
        if autocommit is not None and conn.get_autocommit() != autocommit:
            await conn.autocommit(autocommit)
        if autocommit is not None:
            conn.autocommit_mode = autocommit
        return full

    def abort(self, conn: PoolConnection) -> Coroutine[Any, Any, None] | None:
        closing = conn.closing()
        cast(Any, conn).close()
        return None if closing is None else until_closed(closing)

    async def ping(self, conn: Any) -> None:
        await conn.ping(reconnect=False)

    def server_version(self, conn: Any) -> str:
        version: str = conn.get_server_info()
        return version
