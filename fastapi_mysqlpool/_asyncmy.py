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
- The pool-wide server-side statement timeout is set on the session at connect, and after
  COM_RESET_CONNECTION, which restores the server's defaults (see `_statement`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Coroutine
from typing import Any, ClassVar

import asyncmy
from asyncmy import connection as _connection
from asyncmy import converters, errors
from asyncmy.constants.SERVER_STATUS import SERVER_STATUS_AUTOCOMMIT, SERVER_STATUS_IN_TRANS
from asyncmy.cursors import Cursor, DictCursor

from ._seam import Driver, ErrorFamily, is_disconnect
from ._statement import session_sql, with_limit

__all__ = ["DRIVER", "AsyncmyDriver", "Connection", "is_clean", "session_dirty"]

COM_RESET_CONNECTION = 0x1F
# The classic protocol's EOF packet: 0xFE, then warnings and status flags (two bytes each).
_EOF_LENGTH = 5


# asyncmy's stubs declare part of the compiled result class only: the pool reads it as untyped.
MySQLResult: Any = _connection.MySQLResult


class _Result(MySQLResult):  # type: ignore[misc]
    """A result that keeps the status flags of the EOF packet that ends it (see the module docstring)."""

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
        return True


class Connection(asyncmy.Connection):  # type: ignore[misc]
    """The connection the pool opens: ``asyncmy.Connection`` with exact transaction status and a broken
    flag (see the module docstring)."""

    # Whether a command was sent since the last OK or EOF packet (an error, or not answered yet).
    _unconfirmed = False
    # A failure left the connection in a state nobody can know: it is never reused.
    _broken = False
    #: The pool-wide server-side statement timeout in seconds, 0 for none: set on the session at connect.
    max_statement_time = 0.0
    #: A per-acquire timeout written into each statement (see _statement.py); None: the session's applies.
    statement_limit: float | None = None

    def __init__(self, *, password: Any = "", **kwargs: Any) -> None:
        if isinstance(password, str):
            password = password.encode("utf-8")  # asyncmy would encode it as Latin-1
        super().__init__(password=password, **kwargs)

    @property
    def is_mariadb(self) -> bool:
        """Whether the server is MariaDB (else MySQL), from its handshake."""
        return "mariadb" in str(getattr(self, "server_version", "") or "").lower()

    async def connect(self) -> None:
        await super().connect()
        await self.apply_session_settings()

    async def apply_session_settings(self) -> None:
        """Set what the pool configures per session beyond asyncmy's arguments: the statement timeout.
        Run after the handshake and again after COM_RESET_CONNECTION, which restores server defaults."""
        if self.max_statement_time:
            await super().query(session_sql(self.max_statement_time, self.is_mariadb))

    async def query(self, sql: str | bytes, unbuffered: bool = False) -> int:
        limit = self.statement_limit
        if limit is not None:
            raw = sql.encode(self._encoding, "surrogateescape") if isinstance(sql, str) else sql
            sql = with_limit(raw, limit, self.is_mariadb)
        affected: int = await super().query(sql, unbuffered)
        return affected

    def escape(self, obj: Any, mapping: Any = None) -> str:
        """Escape a query parameter as the aiomysql driver does: ``bytes`` and ``bytearray`` as hex literals
        (right whatever ``NO_BACKSLASH_ESCAPES`` says, where asyncmy backslash-escapes them), and any sequence
        or set as a parenthesised list (asyncmy accepts tuples only)."""
        if isinstance(obj, str):
            return f"'{self.escape_string(obj)}'"
        if isinstance(obj, (bytes, bytearray)):
            return "_binary X'" + obj.hex() + "'"
        if type(obj) in (tuple, list, set, frozenset):
            return "(" + ",".join([self.escape(item) for item in obj]) + ")"
        escaped: str = converters.escape_item(obj, self._charset, mapping=mapping)
        return escaped

    def literal(self, obj: Any) -> str:
        return self.escape(obj)

    def _failed(self, exc: BaseException) -> None:
        if not isinstance(exc, Exception) or is_disconnect(exc):
            self._broken = True

    async def _execute_command(self, command: int, sql: Any) -> None:
        try:
            await super()._execute_command(command, sql)
        except BaseException as exc:
            self._failed(exc)
            raise
        self._unconfirmed = True

    async def _read_ok_packet(self) -> Any:
        try:
            ok = await super()._read_ok_packet()
        except BaseException as exc:
            self._failed(exc)
            raise
        self._unconfirmed = False
        return ok

    async def _read_query_result(self, unbuffered: bool = False) -> None:
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
        self._result = result
        self._affected_rows = result.affected_rows
        if not result.unbuffered_active:  # else its EOF, still to come, says (`_Result`)
            self.server_status = result.server_status
            self._unconfirmed = False


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
    if proto.eof or proto.exc is not None or transport.is_closing():
        return False
    result = conn._result
    if result is not None and result.unbuffered_active:
        return False
    return proto.length == proto.pos or (result is not None and bool(result.has_next))


_FAMILIES: tuple[tuple[type[BaseException], ErrorFamily], ...] = (
    (errors.InterfaceError, "interface"),
    (errors.InternalError, "internal"),
    (errors.OperationalError, "operational"),
    (errors.MySQLError, "statement"),
)


async def _until_closed(proto: Any) -> None:
    # The protocol learns that the socket is gone in connection_lost, on a later loop iteration (after a
    # TLS shutdown exchange). The socket must be gone before the event loop may close.
    if proto is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proto.wait_closed(), 1.0)


class AsyncmyDriver(Driver):
    """asyncmy (PyMySQL's protocol compiled with Cython), with the pool's `Connection` class."""

    name = "asyncmy"
    connect_arguments: ClassVar[frozenset[str]] = frozenset(inspect.signature(asyncmy.Connection).parameters)
    connection_class = Connection
    connection_errors = (errors.OperationalError, errors.InterfaceError)

    def session_changed(self, conn: Any) -> bool:
        # Session tracking is not read on asyncmy yet, and its full reset does not restore the current
        # database: on asyncmy, "exact" behaves as "rollback" (documented), "always" still resets fully.
        return False

    def classify(self, exc: BaseException) -> tuple[ErrorFamily, int] | None:
        for cls, family in _FAMILIES:
            if isinstance(exc, cls):
                code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
                return family, code
        return None

    def error(self, code: int, message: str) -> Exception:
        error: Exception = errors.OperationalError(code, message)
        return error

    async def connect(
        self, kwargs: dict[str, Any], connection_class: type[Any] | None = None, statement_time: float = 0.0
    ) -> Connection:
        conn: Connection = (connection_class or Connection)(**kwargs)
        conn.max_statement_time = statement_time
        try:
            await conn.connect()
        except BaseException:
            conn.close()  # asyncmy closes on failure too; a cancel in the last step must not leak the socket
            raise
        return conn

    def is_clean(self, conn: Connection) -> bool:
        return is_clean(conn)

    def session_dirty(self, conn: Connection, autocommit: bool | None) -> bool:
        return session_dirty(conn, autocommit)

    async def reset(self, conn: Connection, *, full: bool, autocommit: bool | None) -> None:
        # A stored procedure whose later result sets were not read is still running: read them (it
        # finishes), then roll back whatever it left uncommitted.
        while conn._result is not None and conn._result.has_next:
            await conn.next_result()
        if full:
            await conn._execute_command(COM_RESET_CONNECTION, b"")
            await conn._read_ok_packet()
            # The reset drops the server's prepared statements and restores server defaults; re-apply what
            # the connection was opened with.
            conn._stmt_cache.clear()
            if conn._sql_mode is not None:
                await conn.query(f"SET sql_mode={conn._sql_mode}")
            if conn._init_command is not None:
                await conn.query(conn._init_command)
                await conn.commit()
            await conn.apply_session_settings()
            if autocommit is not None:
                conn.autocommit_mode = autocommit
                await conn._send_autocommit_mode()
        elif session_dirty(conn, None):
            await conn.rollback()
        if autocommit is not None:
            conn.autocommit_mode = autocommit
            if conn.get_autocommit() != autocommit:
                await conn._send_autocommit_mode()

    async def ping(self, conn: Connection) -> None:
        await conn.ping(reconnect=False)

    def abort(self, conn: Connection) -> Coroutine[Any, Any, None] | None:
        proto = conn._proto
        conn.close()
        conn._connected = False  # close() leaves it set before asyncmy 0.2.18: `conn.connected` would say open
        return None if proto is None else _until_closed(proto)

    async def cursor(self, conn: Connection, *, dict_rows: bool) -> Any:
        return conn.cursor(DictCursor if dict_rows else Cursor)

    def server_version(self, conn: Connection) -> str:
        version: str = conn.get_server_info()
        return version


DRIVER = AsyncmyDriver()
