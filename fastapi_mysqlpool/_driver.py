"""Everything the pool needs to know about aiomysql connections, in one place.

The pool opens `Connection`, a subclass of ``aiomysql.Connection`` that changes three
things and nothing else; aiomysql itself is left untouched for other code in the process:

- aiomysql keeps the server's status flags only from OK packets and drops those of the
  EOF packet that ends a result set. After ``SELECT ... FROM t`` with autocommit off the
  server has opened a transaction (and a read view), yet ``conn.get_transaction_status()``
  still says no. A pool that trusts it hands the next request a stale snapshot. The
  connection records the EOF status too, so the pool knows exactly when a rollback is
  needed and skips it when it is not. If aiomysql's internals ever change shape, the pool
  falls back to rolling back after every result set while autocommit is off.
- An error packet carries no status flags, yet the failed statement may have opened a
  transaction (a duplicate key keeps its lock). Until an OK or EOF packet says otherwise, a
  command counts as having opened one, so the release rolls it back.
- A packet already in the read buffer is taken synchronously. aiomysql awaits twice per
  packet (header, then payload) even when the whole response arrived in one segment, as
  it does for almost every reply; a ``SELECT`` answers with five packets or more.
"""

from __future__ import annotations

from typing import Any

import aiomysql
import pymysql
from aiomysql.connection import MySQLResult
from pymysql.protocol import EOFPacketWrapper, MysqlPacket

__all__ = ["COM_RESET_CONNECTION", "EOF_STATUS_TRACKED", "Connection", "is_clean", "is_disconnect", "session_dirty"]

IN_TRANS = pymysql.constants.SERVER_STATUS.SERVER_STATUS_IN_TRANS
AUTOCOMMIT = pymysql.constants.SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
COM_RESET_CONNECTION = 0x1F
# Server error codes that end the session (shutdown, killed, idle timeout) although the
# server reports them as ordinary errors. Client-side codes (2000-2999) always do.
_SESSION_ENDING_CODES = frozenset({1053, 1152, 1927, 4031})
# A payload of this length continues in the next packet; those take aiomysql's own path.
_CONTINUED = 0xFFFFFF

#: Whether result sets record the status of their closing EOF packet (aiomysql's hook exists).
EOF_STATUS_TRACKED = callable(getattr(MySQLResult, "_check_packet_is_eof", None))


class _Result(MySQLResult):  # type: ignore[misc]
    def _check_packet_is_eof(self, packet: MysqlPacket) -> bool:
        if not packet.is_eof_packet():
            return False
        eof = EOFPacketWrapper(packet)
        self.warning_count = eof.warning_count
        self.has_next = eof.has_next
        self.server_status = eof.server_status
        return True


class Connection(aiomysql.Connection):  # type: ignore[misc]
    """The connection the pool opens: ``aiomysql.Connection`` with exact transaction status
    and a synchronous read of buffered packets (see the module docstring)."""

    _next_seq_id: int
    # Set once connected, when the stream reader has the buffer this relies on.
    _buffered_reads = False

    async def _connect(self) -> None:
        self._buffered_reads = False
        await super()._connect()
        reader = self._reader
        self._buffered_reads = (
            isinstance(getattr(reader, "_buffer", None), bytearray)
            and hasattr(reader, "_exception")
            and hasattr(reader, "_maybe_resume_transport")
        )

    async def _read_packet(self, packet_type: type[MysqlPacket] = MysqlPacket) -> MysqlPacket:
        reader = self._reader
        if self._buffered_reads and reader is not None and reader._exception is None:
            buffer: bytearray = reader._buffer
            if len(buffer) >= 4:
                length = buffer[0] | buffer[1] << 8 | buffer[2] << 16
                end = length + 4
                sequence = self._next_seq_id
                if length != _CONTINUED and len(buffer) >= end and buffer[3] == sequence:
                    payload = bytes(buffer[4:end])
                    del buffer[:end]
                    reader._maybe_resume_transport()
                    self._next_seq_id = (sequence + 1) % 256
                    packet = packet_type(payload, self._encoding)
                    if packet.is_error_packet():
                        result = self._result
                        if result is not None and result.unbuffered_active is True:
                            result.unbuffered_active = False
                        packet.raise_for_error()
                    return packet
        # Not all here yet, continued, or out of sequence: aiomysql waits, reassembles or raises.
        waited: MysqlPacket = await super()._read_packet(packet_type)
        return waited

    async def _execute_command(self, command: int, sql: Any) -> None:
        await super()._execute_command(command, sql)
        self.server_status |= IN_TRANS

    async def _read_query_result(self, unbuffered: bool = False) -> None:
        self._result = None
        result = _Result(self)
        if unbuffered:
            try:
                await result.init_unbuffered_query()
            except BaseException:
                result.unbuffered_active = False
                result.connection = None
                raise
        else:
            await result.read()
        self._result = result
        self._affected_rows = result.affected_rows
        if result.server_status is not None:
            self.server_status = result.server_status


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
