"""Everything the pool needs to know about aiomysql connections, in one place.

aiomysql keeps the server's status flags only from OK packets and drops those of the
EOF packet that ends a result set. After ``SELECT ... FROM t`` with autocommit off the
server has opened a transaction (and a read view), yet ``conn.get_transaction_status()``
still says no. A pool that trusts it hands the next request a stale snapshot. We record
the EOF status too (`track_eof_status`), so the pool knows exactly when a rollback is
needed and skips it when it is not. If aiomysql's internals ever change shape, the pool
falls back to rolling back after every result set while autocommit is off.
"""

from __future__ import annotations

import struct
from typing import Any

import aiomysql
import pymysql

__all__ = ["COM_RESET_CONNECTION", "EOF_STATUS_TRACKED", "is_clean", "is_disconnect", "session_dirty"]

IN_TRANS = pymysql.constants.SERVER_STATUS.SERVER_STATUS_IN_TRANS
AUTOCOMMIT = pymysql.constants.SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
COM_RESET_CONNECTION = 0x1F
# Server error codes that end the session (shutdown, killed, idle timeout) although the
# server reports them as ordinary errors. Client-side codes (2000-2999) always do.
_SESSION_ENDING_CODES = frozenset({1053, 1152, 1927, 4031})
_EOF_STATUS = struct.Struct("<xhH")


def _track_eof_status() -> bool:
    result_class: Any = getattr(aiomysql.connection, "MySQLResult", None)
    original = getattr(result_class, "_check_packet_is_eof", None)
    if original is None:
        return False
    if getattr(original, "_mysqlpool_tracks_status", False):
        return True

    def _check_packet_is_eof(self: Any, packet: Any) -> bool:
        if not original(self, packet):
            return False
        self.server_status = _EOF_STATUS.unpack_from(packet.get_all_data())[1]
        return True

    _check_packet_is_eof._mysqlpool_tracks_status = True  # type: ignore[attr-defined]
    result_class._check_packet_is_eof = _check_packet_is_eof
    return True


EOF_STATUS_TRACKED = _track_eof_status()


def _assume_transaction_until_answered() -> None:
    # An error packet carries no status flags, yet the failed statement may have opened a
    # transaction (a duplicate key keeps its lock). Until an OK or EOF packet says otherwise,
    # a command counts as having opened one, so the release rolls it back.
    original = aiomysql.Connection._execute_command
    if getattr(original, "_mysqlpool_assumes_transaction", False):
        return

    async def _execute_command(self: Any, command: int, sql: Any) -> None:
        await original(self, command, sql)
        self.server_status |= IN_TRANS

    _execute_command._mysqlpool_assumes_transaction = True  # type: ignore[attr-defined]
    aiomysql.Connection._execute_command = _execute_command


_assume_transaction_until_answered()


def session_dirty(conn: aiomysql.Connection, autocommit: bool | None) -> bool:
    """Whether the session needs a reset before reuse: the server may hold an open
    transaction, or autocommit differs from the pool's setting (``None``: not checked).
    Result sets still to come (a stored procedure not read to its end) make it dirty too."""
    result = conn._result
    if result is not None and result.has_next:
        return True
    status = conn.server_status
    if result is not None and result.server_status is not None:
        status = result.server_status
    elif result is not None and not EOF_STATUS_TRACKED and not status & AUTOCOMMIT:
        return True
    return bool(status & IN_TRANS) or (autocommit is not None and bool(status & AUTOCOMMIT) != autocommit)


def is_clean(conn: aiomysql.Connection) -> bool:
    """Cheap, I/O-free check: socket open, no EOF, no unread result, and no stray bytes
    other than the result sets still announced (which the reset on release reads)."""
    reader = conn._reader
    if reader is None or reader.eof_received:
        return False
    result = conn._result
    if result is not None and result.unbuffered_active:
        return False
    return not reader._buffer or (result is not None and bool(result.has_next))


def is_disconnect(exc: BaseException) -> bool:
    """Whether ``exc`` leaves the connection unusable, so that it must be replaced.

    Connection-level: ``InterfaceError``, ``InternalError`` (e.g. a wrong packet
    sequence), ``OperationalError`` with a client-side code such as 2006 or 2013 or a
    session-ending server code, and socket errors. Statement-level errors such as
    ``ProgrammingError``, ``IntegrityError``, ``DataError``, a deadlock (1213) or a lock
    wait timeout (1205) keep the connection, after a rollback.
    """
    if isinstance(exc, (pymysql.err.InterfaceError, pymysql.err.InternalError, OSError, EOFError)):
        return True
    if isinstance(exc, pymysql.err.OperationalError):
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        return code == 0 or code >= 2000 or code in _SESSION_ENDING_CODES
    return False
