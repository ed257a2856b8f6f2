"""Everything the pool needs to know about asyncmy connections, in one place.

asyncmy is PyMySQL's protocol compiled with Cython, on an ``asyncio.BufferedProtocol`` of its own (no
``StreamReader``). Its ``Connection`` is a Python class over a compiled base, so the methods the pool needs
to change are Python-level and overridable; the compiled parts (the packet reader, the row parsers) are
left as they are, and asyncmy itself is untouched for other code in the process. The pool opens
`Connection`, a subclass that changes what follows:

- Exact transaction status. The result of a query records the status flags of the packet that ends it, but
  only an OK packet's: in the classic protocol the EOF packet that ends a result set carries the flags and
  asyncmy drops them, and the connection then keeps the status of an earlier statement. asyncmy also copies a
  result's status to the connection only when it is not 0, so a ``COMMIT`` sent as a query (status 0 with
  autocommit off) leaves ``server_status`` saying "in a transaction". Here every result records the status
  of its closing packet, EOF or OK, and the connection takes it whatever its value, so the pool knows exactly
  when a rollback is needed and skips it when it is not.
- An error packet carries no status flags, yet the failed statement may have opened a transaction. Until an OK
  or EOF packet answers, a command counts as having opened one (`session_dirty`), so the release rolls it back;
  ``conn.get_transaction_status()`` keeps its meaning, the flag of the last status the server sent.
- An I/O error, a lost connection, a session-ending server error or a cancellation marks the connection broken
  (asyncmy itself closes a connection cancelled inside a read), so it is never reused half-read.
- A password is sent as UTF-8, as the MySQL and MariaDB command-line clients send it, where asyncmy encodes it
  as Latin-1 and fails, holding the password in the error, on any other character.
- Session tracking, ownership, the broken and wrong-host marks, parameter escaping and statement timeouts are
  the pool's, the same as on aiomysql (`_connection`). asyncmy keeps every status it reads in
  ``server_status``: the flag ``SERVER_SESSION_STATE_CHANGED`` of each answer is seen there, the last answer of
  a multi-statement query's earlier results in `_read_query_result`, and the answers asyncmy's prepared
  statements store themselves before the next command (`PoolConnection._execute_command`).
- ``_fill_buffer``, where every wait for the server's answer happens, records the waiting task, so that a
  second task's command is refused instead of reading the first one's answer.
"""

from __future__ import annotations

import asyncio
import inspect
import warnings
from collections.abc import Awaitable
from typing import Any, ClassVar

import asyncmy
from asyncmy import connection as _connection
from asyncmy import converters, errors
from asyncmy.charset import charset_by_name
from asyncmy.constants.SERVER_STATUS import SERVER_STATUS_AUTOCOMMIT, SERVER_STATUS_IN_TRANS
from asyncmy.cursors import Cursor, DictCursor

from ._connection import COM_QUERY, OpenedWith, PoolConnection, PoolDriver, error_families
from ._read_timeout import ReadWatchdog, read_timeout_reason, read_wait, watchdog
from ._seam import BROKEN, READY, RESTORE, ROLLBACK
from ._session_track import CLIENT_SESSION_TRACK, SERVER_SESSION_STATE_CHANGED

__all__ = ["DRIVER", "AsyncmyDriver", "Connection", "is_clean", "session_dirty"]

# The classic protocol's EOF packet: 0xFE, then warnings and status flags (two bytes each).
_EOF_LENGTH = 5


# asyncmy's stubs declare part of the compiled result class only: the pool reads it as untyped.
MySQLResult: Any = _connection.MySQLResult
# asyncmy's own send and wait, which `Connection.query` and `Connection._fill_buffer` call past the overrides.
_execute: Any = asyncmy.Connection._execute_command
_fill: Any = asyncmy.Connection._fill_buffer


class _Result(MySQLResult):  # type: ignore[misc]
    """A result that keeps the status flags of the EOF packet that ends it (see the module docstring)."""

    def __del__(self) -> None:
        # asyncmy's finalizer calls its coroutine that reads the rest of an unbuffered result without awaiting it
        # (a "never awaited" warning on asyncmy 0.2.13). Rows still due when a result dies belong to a connection the
        # pool has discarded or reset: there is nothing to read.
        pass

    def _check_packet_is_eof(self, packet: Any) -> bool:
        if not super()._check_packet_is_eof(packet):
            return False
        data: bytes = packet.get_all_data()
        if len(data) == _EOF_LENGTH:  # with DEPRECATE_EOF the closing OK packet's status is already read
            self.server_status = data[3] | data[4] << 8
        conn = self.connection
        if conn is not None:  # an unbuffered result ends here, long after the query returned
            conn.server_status = self.server_status
            conn._unconfirmed = False
            if self.server_status & SERVER_SESSION_STATE_CHANGED:  # the next result overwrites the status
                conn._session_changed = True
        return True


class _Asyncmy(asyncmy.Connection):  # type: ignore[misc]
    """asyncmy's connection, with what its older versions get wrong put right beneath the pool's layer."""

    async def _execute_command(self, command: int, sql: Any) -> None:
        result = self._result
        if result is not None and result.unbuffered_active:
            # asyncmy 0.2.13 starts the read of the rows still due without awaiting it, then sends the command:
            # every later answer is read out of sequence. They are read here, after aiomysql's warning.
            warnings.warn("Previous unbuffered result was left incomplete", stacklevel=2)
            await result._finish_unbuffered_query()
        await super()._execute_command(command, sql)

    async def set_charset(self, charset: str) -> None:
        # asyncmy's reads an attribute its compiled `Charset` does not expose (`_encoding`): AttributeError, always.
        known = charset_by_name(charset)
        if known is None:  # asyncmy's table answers None, and `.encoding` would fail with an AttributeError
            raise ValueError(f"unknown character set {charset!r}")
        encoding = known.encoding
        await self._execute_command(COM_QUERY, "SET NAMES " + self.escape(charset))
        await self._read_ok_packet()
        self._charset = charset
        self._encoding = encoding


class Connection(PoolConnection, _Asyncmy):
    """The connection the pool opens: ``asyncmy.Connection`` with exact transaction and session status, an owner
    and a broken flag (see the module docstring)."""

    interface_error = errors.InterfaceError
    charset_by_name = staticmethod(charset_by_name)
    _client_flag: int
    _stmt_cache: dict[Any, Any]

    def __init__(self, *, password: Any = "", **kwargs: Any) -> None:
        if isinstance(password, str):
            password = password.encode("utf-8")  # asyncmy would encode it as Latin-1
        super().__init__(password=password, **kwargs)
        self._client_flag |= CLIENT_SESSION_TRACK

    def opened_with(self) -> OpenedWith:
        return OpenedWith(self._charset, self._sql_mode, self._db, self._init_command)

    async def show_warnings(self) -> Any:
        # The cursor's SHOW WARNINGS after a statement with warnings: asyncmy reads it with a result that keeps
        # no status, so the connection would look unconfirmed and cost a rollback at release.
        await self._execute_command(COM_QUERY, "SHOW WARNINGS")
        result = (MySQLResult if self._deprecate_eof else _Result)(self)
        await result.read()
        status = self.server_status = result.server_status  # not `_took`: the statement's result stays the last
        self._unconfirmed = False
        if status & SERVER_SESSION_STATE_CHANGED:
            self._session_changed = True
        return result.rows

    def forget_server_state(self) -> None:
        self._stmt_cache.clear()  # the server dropped its prepared statements

    def closing(self) -> Any:
        return self._proto  # it learns that the socket is gone in connection_lost, on a later loop iteration

    def escape_known(self, obj: Any, mapping: Any) -> str | None:
        encoders = self._encoders if mapping is None else mapping
        if type(obj) not in encoders:
            return None
        escaped: str = converters.escape_item(obj, self._charset, mapping=encoders)
        return escaped

    async def connect(self) -> None:
        await super().connect()
        await self.apply_session_settings()

    def close(self) -> None:
        super().close()
        self._connected = False  # close() leaves it set before asyncmy 0.2.18: `conn.connected` would say open

    def _fill_buffer(self, need: int) -> Awaitable[None]:
        # Every wait for the server's bytes goes through here. A plain query (`query`) has recorded its task and
        # watches its whole answer: asyncmy's own wait, with no coroutine of ours around it.
        if self._waiting is not None:
            wait: Awaitable[None] = _fill(self, need)
            return wait
        return self._watched_fill(need)

    async def _watched_fill(self, need: int) -> None:
        # The owner's record, and the read timeout's watch, for one wait.
        self._waiting = asyncio.current_task()
        dog = self._watch_answer()
        try:
            await super()._fill_buffer(need)
        finally:
            self._waiting = None
            if dog is not None:
                dog.unwatch(self)

    def _watch_answer(self) -> ReadWatchdog | None:
        # The read timeout's watch of the answer now due; the watchdog to unwatch with, None with no read timeout.
        if not self.read_timeout:
            return None
        dog = self._watchdog
        if dog is None:
            dog = self._watchdog = watchdog(self._loop)
        dog.watch(self, read_wait(self.read_timeout, self.statement_limit or self.max_statement_time))
        return dog

    def _read_progress(self) -> object:
        proto = self._proto
        return None if proto is None else (proto.length, proto.pos, self._next_seq_id)

    def _read_timed_out(self, timeout: float) -> None:
        # asyncmy's wait sees the stream's error and raises 2013 with its text; the socket closes without I/O
        # (nothing may be sent into a stream whose answer is still due), and the host is re-checked.
        self._broken = self.wrong_host = True
        proto = self._proto
        if proto is not None and proto.exc is None:
            proto.exc = TimeoutError(read_timeout_reason(timeout, self._host, self._port))
            waiter = proto._read_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        transport = self._transport
        if transport is not None:
            transport.abort()

    async def _read_ok_packet(self) -> Any:
        try:
            ok = await super()._read_ok_packet()
        except BaseException as exc:
            self._failed(exc)
            raise
        self._unconfirmed = False
        return ok

    async def query(self, sql: str | bytes, unbuffered: bool = False) -> int:
        # A plain query (buffered, no per-acquire limit, nothing unread before it) on one coroutine: asyncmy's
        # send and read, called directly, where its own query would go through three coroutines of ours (the
        # command, the result, each wait), each a frame to create and resume. The answer's silence is watched
        # as a whole (`_read_timeout`); everything else is what those three do.
        last = self._result
        if unbuffered or self.statement_limit is not None or (last is not None and last.unbuffered_active):
            return await super().query(sql, unbuffered)
        if isinstance(sql, str):
            sql = sql.encode(self._encoding, "surrogateescape")
        self._before_command(COM_QUERY, sql)
        self._waiting = asyncio.current_task()
        dog = self._watch_answer()
        try:
            self._unconfirmed = True
            await _execute(self, COM_QUERY, sql)
            result = (MySQLResult if self._deprecate_eof else _Result)(self)
            await result.read()
        except BaseException as exc:
            self._failed(exc)
            raise
        finally:
            self._waiting = None
            if dog is not None:
                dog.unwatch(self)
        self._took(result)
        affected: int = self._affected_rows
        return affected

    async def _read_query_result(self, unbuffered: bool = False) -> None:
        if self._released or self._waiting is not None:  # as for a command: after the release, or a second task
            self._check_owner()
        # The next result of a multi-statement query or a procedure (`next_result`) is an answer like a command's:
        # until its OK or EOF is read, an error in it may have left a transaction open.
        self._unconfirmed = True
        self._result = None
        result = _Result(self)
        try:
            if unbuffered:
                try:
                    await result.init_unbuffered_query()
                except BaseException:
                    result.unbuffered_active = False
                    result.connection = None
                    raise
            else:
                await result.read()
        except BaseException as exc:
            self._failed(exc)
            raise
        self._took(result)

    def _took(self, result: Any) -> None:
        """Keep a result that was read: its status is the connection's, whatever its value."""
        self._result = result
        self._affected_rows = result.affected_rows
        if not result.unbuffered_active:  # else its EOF, still to come, says (`_Result`)
            status = self.server_status = result.server_status
            self._unconfirmed = False
            if status & SERVER_SESSION_STATE_CHANGED:
                # An earlier result of a multi-statement query: the next one overwrites the status.
                self._session_changed = True


def session_dirty(conn: Connection, autocommit: bool | None) -> bool:
    """Whether the session needs a reset before reuse: the server may hold an open transaction, result sets
    are still to come, or autocommit differs from the pool's setting (``None``: not checked)."""
    result = conn._result
    if conn._unconfirmed or (result is not None and result.has_next):
        return True
    status: int = conn.server_status
    return bool(status & SERVER_STATUS_IN_TRANS) or (
        autocommit is not None and bool(status & SERVER_STATUS_AUTOCOMMIT) != autocommit
    )


def is_clean(conn: Connection) -> bool:
    """Cheap, I/O-free check: connected, the stream open and without error, no unread result, and no stray
    bytes other than the result sets still announced (which the reset on release reads)."""
    proto = conn._proto
    transport = conn._transport
    if conn._broken or not conn._connected or proto is None or transport is None:
        return False
    if proto.eof or proto.exc is not None or transport.is_closing() or conn._waiting is not None:
        return False  # closed, failed, or another task waits for an answer on it
    result = conn._result
    if result is not None and result.unbuffered_active:
        return False
    return proto.length == proto.pos or (result is not None and bool(result.has_next))


class AsyncmyDriver(PoolDriver):
    """asyncmy (PyMySQL's protocol compiled with Cython), with the pool's `Connection` class."""

    name = "asyncmy"
    connect_arguments: ClassVar[frozenset[str]] = frozenset(inspect.signature(asyncmy.Connection).parameters)
    connection_class = Connection
    connection_errors = (errors.OperationalError, errors.InterfaceError)
    families = error_families(errors)
    operational_error = errors.OperationalError

    async def open(self, conn: Connection) -> None:
        await conn.connect()

    is_clean = staticmethod(is_clean)
    session_dirty = staticmethod(session_dirty)

    def take(self, conn: Connection, autocommit: bool | None) -> bool:
        # The socket, tested in place; then the session, if a command reached it since the release.
        proto = conn._proto
        transport = conn._transport
        if transport is None or proto.eof or proto.exc is not None or proto.length != proto.pos:
            return False
        if transport.is_closing():
            return False
        if conn._touched:
            if session_dirty(conn, autocommit):
                return False
            conn._touched = False
        conn._released = False
        conn._result = None  # conn.forget_last_statement(), inlined: the acquirer reads no figure of the last user's
        conn._affected_rows = 0
        return True

    def released(self, conn: Connection, autocommit: bool | None, exact: bool) -> int:
        # `is_clean`, `session_changed` and `session_dirty` in one pass, each attribute read once: the release path.
        conn._released = True
        proto = conn._proto
        transport = conn._transport
        if conn._broken or not conn._connected or proto is None or transport is None:
            return BROKEN
        if proto.eof or proto.exc is not None or transport.is_closing() or conn._waiting is not None:
            return BROKEN  # closed, failed, or another task still waits for an answer on it: its state is unknown
        result = conn._result
        dirty = False
        if result is None:
            if proto.length != proto.pos:
                return BROKEN
        elif result.unbuffered_active:
            return BROKEN
        elif result.has_next:
            dirty = True  # result sets still to come: the reset must read them
        elif proto.length != proto.pos:
            return BROKEN
        status: int = conn.server_status
        if exact and (conn._session_changed or not conn._tracks_sessions or status & SERVER_SESSION_STATE_CHANGED):
            return RESTORE
        if dirty or conn._unconfirmed or status & SERVER_STATUS_IN_TRANS:
            return ROLLBACK
        return READY if autocommit is None or bool(status & SERVER_STATUS_AUTOCOMMIT) == autocommit else ROLLBACK

    async def cursor(self, conn: Connection, *, dict_rows: bool) -> Any:
        return conn.cursor(DictCursor if dict_rows else Cursor)


DRIVER = AsyncmyDriver()
