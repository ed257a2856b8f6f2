"""Everything the pool needs to know about aiomysql connections, in one place.

The pool opens `Connection`, a subclass of ``aiomysql.Connection`` that changes what follows
and nothing else; aiomysql itself is left untouched for other code in the process:

- aiomysql keeps the server's status flags only from OK packets and drops those of the
  EOF packet that ends a result set. After ``SELECT ... FROM t`` with autocommit off the
  server has opened a transaction (and a read view), yet ``conn.get_transaction_status()``
  still says no. A pool that trusts it hands the next request a stale snapshot. The
  connection records the EOF status too, so the pool knows exactly when a rollback is
  needed and skips it when it is not. If aiomysql's internals ever change shape, the pool
  falls back to rolling back after every result set while autocommit is off.
- An error packet carries no status flags, yet the failed statement may have opened a
  transaction (a duplicate key keeps its lock). Until an OK or EOF packet says otherwise, the
  pool counts a command as having opened one, so the release rolls it back. This is the
  pool's own view (`session_dirty`); ``conn.get_transaction_status()`` keeps aiomysql's
  meaning: the flag of the last status the server sent.
- An I/O error, a lost connection or a session-ending server error marks the connection
  broken, so the pool judges a connection by what happened to it, never by an exception that
  merely passed through a block of user code. So does any other failure inside a result (a
  value that fails to convert): the rest of the answer is still on its way.
- Parameters are escaped the same whatever the PyMySQL version: PyMySQL 1.2 removed the
  helper aiomysql escapes ``bytes`` with, and refuses tuples and lists (`_connection`).
- Session tracking, ownership and per-acquire statement timeouts are the pool's, the same on
  both drivers (`_connection`).
- A password is sent as UTF-8, as the MySQL and MariaDB command-line clients send it, where
  aiomysql encodes it as Latin-1 and fails, showing the password, on any other character.
- Reading is faster; what it reads, and the errors it raises, are aiomysql's. aiomysql
  awaits twice per packet (header, then payload) and builds a packet object for every
  column definition and every row, even when the whole reply arrived in one segment, as
  almost every reply does. Here a packet already in the read buffer is taken
  synchronously, and one that is not yet complete costs one wait. The rows of a result
  set already in the buffer are parsed straight from it. The column definitions are parsed
  once per distinct set (a small LRU cache per connection, keyed by the exact bytes of
  their packets, so a changed schema is simply a new key). A ``SELECT 1`` executes a third fewer instructions.
  Anything unusual (a packet continued past 16 MiB, an error, a malformed value) is left
  to aiomysql's own code, which raises what it always raised.
- ``conn.cursor()`` gives subclasses of ``aiomysql.Cursor`` and ``aiomysql.DictCursor`` that take fewer calls
  per statement (`_aiomysql_cursors`); every other cursor class is aiomysql's own.
"""

from __future__ import annotations

import asyncio
import inspect
from struct import Struct, unpack_from
from typing import Any, ClassVar

import aiomysql
import pymysql
from aiomysql.connection import TEXT_TYPES, MySQLResult
from aiomysql.utils import _ContextManager
from pymysql.charset import charset_by_name
from pymysql.constants import CR, FIELD_TYPE
from pymysql.converters import encoders, escape_item, through
from pymysql.protocol import EOFPacketWrapper, FieldDescriptorPacket, MysqlPacket

from ._aiomysql_cursors import lean_cursor_class
from ._connection import COM_QUERY, OpenedWith, PoolConnection, PoolDriver, error_families
from ._read_timeout import read_timeout_reason, read_wait, watchdog
from ._seam import BROKEN, READY, RESTORE, ROLLBACK
from ._session_track import CLIENT_SESSION_TRACK, SERVER_SESSION_STATE_CHANGED

__all__ = [
    "DRIVER",
    "EOF_STATUS_TRACKED",
    "AiomysqlDriver",
    "Connection",
    "is_clean",
    "session_dirty",
]

IN_TRANS = pymysql.constants.SERVER_STATUS.SERVER_STATUS_IN_TRANS
AUTOCOMMIT = pymysql.constants.SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
MORE_RESULTS = pymysql.constants.SERVER_STATUS.SERVER_MORE_RESULTS_EXISTS
# A payload of this length continues in the next packet; those take aiomysql's own path.
_CONTINUED = 0xFFFFFF
# A command packet's header and command byte: the payload's length (command included), sequence number 0.
_COMMAND_HEADER = Struct("<iB")

#: Whether result sets record the status of their closing EOF packet (aiomysql's hook exists).
EOF_STATUS_TRACKED = callable(getattr(MySQLResult, "_check_packet_is_eof", None))

# The column-definition cache of a connection: at most this many sets, least recently used
# out first, and only sets of at most this many bytes (a typical one is well under 1 KiB),
# so one connection never holds more than about a megabyte for it.
_FIELD_CACHE_SETS = 128
_FIELD_CACHE_SET_BYTES = 4096


class _Result(MySQLResult):  # type: ignore[misc]
    connection: Any  # the `Connection` reading the result, None once it is read
    fields: list[FieldDescriptorPacket]
    converters: list[tuple[str | None, Any]]

    async def _get_descriptions(self) -> None:
        if not self.connection._take_descriptions(self):
            await super()._get_descriptions()

    async def read(self) -> None:
        # aiomysql's `read` and `_read_result_packet` in one coroutine, where aiomysql's take four: the column
        # definitions and the rows already in the buffer are taken in place, the rest read as aiomysql reads it.
        conn: Connection = self.connection
        try:
            first = await conn._read_packet()
            if first.is_ok_packet():
                self._read_ok_packet(first)
            elif first.is_load_local_packet():
                await self._read_load_local_packet(first)
            else:
                self.field_count = first.read_length_encoded_integer()
                if not conn._take_descriptions(self):
                    await super()._get_descriptions()
                rows: list[tuple[Any, ...]] = []
                if not conn._take_rows(self, rows):
                    await self._read_more_rows(rows)
                self.affected_rows = len(rows)
                self.rows = tuple(rows)
        except BaseException as exc:
            conn._failed(exc)  # a value that failed to convert, say: the rest of the answer is still due
            raise
        finally:
            self.connection = None

    async def _read_more_rows(self, rows: list[tuple[Any, ...]]) -> None:
        """The rows not in the buffer yet, or after an irregular packet: one packet at a time, the buffer again."""
        conn: Connection = self.connection
        while True:
            packet = await conn._read_packet()
            if self._check_packet_is_eof(packet):
                return
            rows.append(self._read_row_from_packet(packet))
            if conn._take_rows(self, rows):
                return

    def _check_packet_is_eof(self, packet: MysqlPacket) -> bool:
        if not packet.is_eof_packet():
            return False
        eof = EOFPacketWrapper(packet)
        self.warning_count = eof.warning_count
        self.has_next = eof.has_next
        self.server_status = eof.server_status
        if eof.server_status & SERVER_SESSION_STATE_CHANGED and self.connection is not None:
            # The last EOF of an unbuffered result: its status never reaches the connection's.
            self.connection._session_changed = True
        return True


class Connection(PoolConnection, aiomysql.Connection):  # type: ignore[misc]
    """The connection the pool opens: ``aiomysql.Connection`` with exact transaction status
    and a synchronous read of buffered packets (see the module docstring)."""

    _next_seq_id: int
    # Set once connected, when the stream reader has the buffer this relies on.
    _buffered_reads = False
    _field_cache: dict[tuple[Any, ...], tuple[tuple[FieldDescriptorPacket, ...], tuple[Any, ...]]]
    # The last status flags the server sent (see the module docstring).
    _status = 0
    _password: Any
    # The writer that close() dropped (see `closing`).
    _closed_writer: Any = None
    interface_error = pymysql.err.InterfaceError
    charset_by_name = staticmethod(charset_by_name)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._field_cache = {}
        self.client_flag |= CLIENT_SESSION_TRACK
        if isinstance(self._password, str):
            # aiomysql encodes the password as Latin-1; these characters encode to its UTF-8 bytes.
            self._password = self._password.encode("utf-8").decode("latin-1")

    @property
    def server_status(self) -> int:
        return self._status

    @server_status.setter
    def server_status(self, status: int) -> None:
        # Every status aiomysql stores comes from a packet the server sent.
        self._status = status
        self._unconfirmed = False
        if status & SERVER_SESSION_STATE_CHANGED:
            self._session_changed = True

    def cursor(self, *cursors: Any) -> Any:
        # aiomysql's two buffered cursor classes have the pool's leaner subclasses (`_aiomysql_cursors`).
        requested = cursors or (self.cursorclass,)
        lean = lean_cursor_class(requested[0]) if len(requested) == 1 else None
        if lean is None or not self._writer:
            return super().cursor(*cursors)  # any other class, or not connected: aiomysql decides (and raises)
        self._last_usage = self._loop.time()
        # What aiomysql returns: a coroutine over a completed future, and an async context manager.
        done = self._loop.create_future()
        done.set_result(lean(self, self._echo))
        return _ContextManager(done)

    def opened_with(self) -> OpenedWith:
        return OpenedWith(self.charset, self.sql_mode, self.db, self.init_command)

    def unflag_session_change(self) -> None:
        self._status &= ~SERVER_SESSION_STATE_CHANGED  # not through the setter, which would mark the change

    def close(self) -> None:
        # aiomysql drops its writer here, also at the end of ensure_closed(), its COM_QUIT; `closing` still needs
        # it: a TLS transport closes its socket only after the shutdown exchange with the server.
        if self._writer is not None:
            self._closed_writer = self._writer
        super().close()

    def closing(self) -> Any:
        # Its socket is gone once wait_closed() returns; the writer of the last transport, closed or not.
        return self._writer if self._writer is not None else self._closed_writer

    def escape_known(self, obj: Any, mapping: Any) -> str | None:
        # aiomysql passes its own encoders; PyMySQL's encoder table decides, as aiomysql < 1.2 did.
        if type(obj) not in encoders:
            return None
        escaped: str = escape_item(obj, self._charset)
        return escaped

    async def _connect(self) -> None:
        self._buffered_reads = False
        await super()._connect()
        await self.apply_session_settings()
        reader = self._reader
        self._buffered_reads = (
            isinstance(getattr(reader, "_buffer", None), bytearray)
            and hasattr(reader, "_exception")
            and hasattr(reader, "_maybe_resume_transport")
            and hasattr(reader, "_wait_for_data")
            and hasattr(reader, "_eof")
        )

    async def show_warnings(self) -> tuple[tuple[Any, ...], ...] | None:
        """``SHOW WARNINGS`` without the notes. aiomysql's cursor re-raises each row as a ``pymysql.err.Warning``,
        but a note only confirms what the statement asked for (``CREATE TABLE IF NOT EXISTS`` of an existing
        table, ``DROP TABLE IF EXISTS`` of a missing one): under warnings-as-errors it would fail a correct
        statement. Warnings and errors (a truncated value, say) are still reported.

        Read with the pool's result, which keeps the answer's status: aiomysql's drops it, and the connection would
        look unconfirmed, a rollback at release after every statement with a warning."""
        await self._execute_command(COM_QUERY, "SHOW WARNINGS")
        result = _Result(self)
        await result.read()
        if result.server_status is not None:
            self.server_status = result.server_status
        rows: tuple[tuple[Any, ...], ...] | None = result.rows
        return None if rows is None else tuple(row for row in rows if row[0] not in ("Note", b"Note"))

    async def _read_packet(self, packet_type: type[MysqlPacket] = MysqlPacket) -> MysqlPacket:
        try:
            reader = self._reader
            while self._buffered_reads and reader is not None and reader._exception is None:
                buffer: bytearray = reader._buffer
                size = len(buffer)
                if size >= 4:
                    length = buffer[0] | buffer[1] << 8 | buffer[2] << 16
                    sequence = self._next_seq_id
                    if length == _CONTINUED or buffer[3] != sequence:
                        break
                    end = length + 4
                    if size >= end:
                        payload = bytes(buffer[4:end])
                        self._consume(reader, end, (sequence + 1) % 256)
                        packet = packet_type(payload, self._encoding)
                        if packet.is_error_packet():
                            result = self._result
                            if result is not None and result.unbuffered_active is True:
                                result.unbuffered_active = False
                            packet.raise_for_error()
                        return packet
                if reader._eof:
                    break
                # One wait for the rest of the packet, where aiomysql waits for its header and then its payload.
                self._waiting = asyncio.current_task()
                if self.read_timeout:
                    self._watch()
                try:
                    await reader._wait_for_data("readexactly")
                except asyncio.CancelledError:
                    self._close_on_cancel()
                    raise
                except Exception:
                    break  # the stream failed (or the read timeout failed it): aiomysql's path reports it
                finally:
                    self._waiting = None
                    if self.read_timeout:
                        self._unwatch()
                if self._reader is not reader:
                    # Closed while we waited: what aiomysql's wait reports when its stream ends there.
                    lost = asyncio.IncompleteReadError(bytes(reader._buffer), None)
                    raise pymysql.err.OperationalError(
                        CR.CR_SERVER_LOST, "Lost connection to MySQL server during query"
                    ) from lost
            # Continued, out of sequence, cut short or failed: aiomysql reassembles or raises.
            self._waiting = asyncio.current_task()
            if self.read_timeout:
                self._watch()
            try:
                waited: MysqlPacket = await super()._read_packet(packet_type)
            finally:
                self._waiting = None
                if self.read_timeout:
                    self._unwatch()
            return waited
        except BaseException as exc:
            self._failed(exc)
            raise

    def _watch(self) -> None:
        """Give the connection up when the server sends nothing for `read_timeout` seconds (`_read_timeout`)."""
        if self._watchdog is None:
            self._watchdog = watchdog(self._loop)
        self._watchdog.watch(self, read_wait(self.read_timeout, self.statement_limit or self.max_statement_time))

    def _unwatch(self) -> None:
        if self._watchdog is not None:
            self._watchdog.unwatch(self)

    def _read_progress(self) -> object:
        # What came and what was read (aiomysql's own read of a continued packet waits more than once per watch).
        reader = self._reader
        return None if reader is None else (len(getattr(reader, "_buffer", b"")), self._next_seq_id)

    def _read_timed_out(self, timeout: float) -> None:
        # The waiting read wakes with the error; the socket closes without I/O (nothing may be sent into a
        # stream whose answer is still due), and the host is re-checked: a paused or cut-off server looks so.
        self._broken = self.wrong_host = True
        reason = read_timeout_reason(timeout, self._host, self._port)
        error = pymysql.err.OperationalError(
            CR.CR_SERVER_LOST, f"Lost connection to MySQL server during query ({reason})"
        )
        reader, writer = self._reader, self._writer
        if reader is not None and reader.exception() is None:
            reader.set_exception(error)
        if writer is not None:
            writer.transport.abort()

    def _buffered_reader(self) -> Any:
        """The stream reader, when its buffer may be read synchronously; else None."""
        reader = self._reader
        if self._buffered_reads and reader is not None and reader._exception is None:
            return reader
        return None

    def _consume(self, reader: Any, end: int, seq: int) -> None:
        """Drop the first ``end`` bytes of the buffer, read as packets; ``seq`` is the next sequence number."""
        del reader._buffer[:end]
        self._next_seq_id = seq
        reader._maybe_resume_transport()

    def _take_descriptions(self, result: _Result) -> bool:
        """Read a result set's column definitions and the EOF after them when all are in the buffer,
        parsing each distinct set of definitions only once per connection. False: not all here yet."""
        reader = self._buffered_reader()
        if reader is None:
            return False
        buf: bytearray = reader._buffer
        size = len(buf)
        seq = self._next_seq_id
        pos = 0
        spans = []
        for _ in range(result.field_count + 1):
            if size - pos < 4:
                return False
            length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
            end = pos + 4 + length
            if length == 0 or length == _CONTINUED or end > size or buf[pos + 3] != seq or buf[pos + 4] == 0xFF:
                return False
            spans.append((pos + 4, end))
            seq = (seq + 1) % 256
            pos = end
        eof_start, eof_end = spans.pop()
        if buf[eof_start] != 0xFE or eof_end - eof_start >= 9:
            return False  # aiomysql's path reports the protocol error
        # The key is the definitions' packets as they came, in one copy: the same set elsewhere in a reply (its
        # headers' sequence numbers then differ) is another key, and is parsed once more.
        key = (self._encoding, bytes(buf[: eof_start - 4]))
        cache = self._field_cache
        cached = cache.pop(key, None)
        keep = cached is not None or len(key[1]) <= _FIELD_CACHE_SET_BYTES
        if cached is None:
            try:
                fields = tuple(FieldDescriptorPacket(bytes(buf[start:end]), self._encoding) for start, end in spans)
                cached = (fields, tuple(field.description() for field in fields))
            except Exception:
                return False  # nothing taken: aiomysql's path reads them again and raises what it raises
        if keep:
            if len(cache) >= _FIELD_CACHE_SETS:
                del cache[next(iter(cache))]  # the least recently used
            cache[key] = cached  # (re)inserted last: the most recently used
        self._consume(reader, pos, seq)
        fields, result.description = cached
        result.fields = list(fields)
        use_unicode = self.use_unicode
        decoders = self.decoders
        converters = []
        for field in fields:
            field_type = field.type_code
            if not use_unicode:
                encoding = None
            elif field_type == FIELD_TYPE.JSON:
                encoding = self._encoding  # what aiomysql's `encoding` property returns
            elif field_type in TEXT_TYPES:
                encoding = None if field.charsetnr == 63 else self._encoding
            else:
                encoding = "ascii"
            converter = decoders.get(field_type)
            converters.append((encoding, None if converter is through else converter))
        result.converters = converters
        return True

    def _take_rows(self, result: _Result, rows: list[tuple[Any, ...]]) -> bool:
        """Append the rows already in the buffer; True once the EOF that ends them is read."""
        reader = self._buffered_reader()
        if reader is None:
            return False
        buf: bytearray = reader._buffer
        size = len(buf)
        seq = self._next_seq_id
        pos = 0
        done = False
        append = rows.append
        try:
            while size - pos >= 4:
                length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
                start = pos + 4
                end = start + length
                if length == 0 or length == _CONTINUED or end > size or buf[pos + 3] != seq:
                    break
                first = buf[start]
                if first == 0xFE and length < 9:
                    if length < 5:
                        break
                    warnings, status = unpack_from("<hh", buf, start + 1)  # signed, as pymysql reads them
                    result.warning_count = warnings
                    result.server_status = status
                    result.has_next = status & MORE_RESULTS
                    pos = end
                    seq = (seq + 1) % 256
                    done = True
                    break
                if first == 0xFF:
                    break  # an error: aiomysql's path raises it
                pos = end
                seq = (seq + 1) % 256
                append(_row(result, buf, start, end, self._encoding))
        finally:
            if pos:
                self._consume(reader, pos, seq)
        return done

    async def query(self, sql: str | bytes, unbuffered: bool = False) -> int:
        # A plain query (buffered, no per-acquire limit, one packet, nothing unread before it) sends itself: what
        # aiomysql's query and command and the pool's do, without the four coroutines (and their frames) between.
        last = self._result
        writer = self._writer
        if (
            unbuffered
            or self.statement_limit is not None
            or writer is None
            or (last is not None and (last.unbuffered_active or last.has_next))
        ):
            return await super().query(sql, unbuffered)
        if isinstance(sql, str):
            sql = sql.encode(self._encoding, "surrogateescape")
        if len(sql) + 1 >= _CONTINUED:  # with the command's byte, a full packet: another (empty) one follows
            return await super().query(sql, unbuffered)  # sent in more than one packet: aiomysql's way
        self._before_command(COM_QUERY, sql)
        self._result = None
        try:
            writer.write(_COMMAND_HEADER.pack(len(sql) + 1, COM_QUERY) + sql)
        except BaseException as exc:
            self._failed(exc)
            raise
        self._next_seq_id = 1
        self._unconfirmed = True
        await self._read_query_result()
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


def _row(result: _Result, buf: bytearray, start: int, end: int, encoding: str) -> tuple[Any, ...]:
    """One text-protocol row from ``buf[start:end]``, as aiomysql's ``_read_row_from_packet`` reads it.

    The values' bounds are found first and converted only once the row is known to be well formed, so that a
    malformed one goes to aiomysql's parser before any converter has run."""
    bounds: list[tuple[int, int] | None] = []
    pos = start
    for _ in range(len(result.converters)):
        if pos >= end:
            break  # fewer values than columns: aiomysql stops there too
        c = buf[pos]
        if c < 251:
            pos += 1
            length = c
        elif c == 251:
            pos += 1
            bounds.append(None)
            continue
        elif c == 252 and pos + 3 <= end:
            length = buf[pos + 1] | buf[pos + 2] << 8
            pos += 3
        elif c == 253 and pos + 4 <= end:
            length = buf[pos + 1] | buf[pos + 2] << 8 | buf[pos + 3] << 16
            pos += 4
        elif c == 254 and pos + 9 <= end:
            length = int.from_bytes(buf[pos + 1 : pos + 9], "little")
            pos += 9
        else:
            length = -1
        stop = pos + length
        if length < 0 or stop > end:
            # Malformed: aiomysql's parser decides what it means (and raises what it raises).
            slow: tuple[Any, ...] = result._read_row_from_packet(MysqlPacket(bytes(buf[start:end]), encoding))
            return slow
        bounds.append((pos, stop))
        pos = stop
    row: list[Any] = []
    for bound, (value_encoding, converter) in zip(bounds, result.converters, strict=False):  # a short row ends early
        if bound is None:
            row.append(None)
            continue
        value_start, value_stop = bound
        data: Any = (
            buf[value_start:value_stop].decode(value_encoding)
            if value_encoding is not None
            else bytes(buf[value_start:value_stop])
        )
        if converter is not None:
            data = converter(data)
        row.append(data)
    return tuple(row)


def session_dirty(conn: aiomysql.Connection, autocommit: bool | None) -> bool:
    """Whether the session needs a reset before reuse: the server may hold an open
    transaction, or autocommit differs from the pool's setting (``None``: not checked).
    Result sets still to come (a stored procedure not read to its end) make it dirty too."""
    result = conn._result
    if result is None:
        status = conn.server_status
    elif result.has_next:
        return True
    else:
        # The result's own status when it has one: the connection's is a property, read only when needed.
        status = result.server_status
        if status is None:
            status = conn.server_status
            if not EOF_STATUS_TRACKED and not status & AUTOCOMMIT:
                return True
    if conn._unconfirmed:
        return True
    return bool(status & IN_TRANS) or (autocommit is not None and bool(status & AUTOCOMMIT) != autocommit)


def is_clean(conn: aiomysql.Connection) -> bool:
    """Cheap, I/O-free check: socket open, no EOF, no unread result, and no stray bytes
    other than the result sets still announced (which the reset on release reads)."""
    reader = conn._reader
    # ``_eof_received`` is what aiomysql's ``eof_received`` property returns, without the property's call.
    if reader is None or reader._eof_received or reader.exception() is not None or conn._broken:
        return False
    if conn._waiting is not None:  # another task waits for an answer on it
        return False
    result = conn._result
    if result is not None and result.unbuffered_active:
        return False
    return not reader._buffer or (result is not None and bool(result.has_next))


class AiomysqlDriver(PoolDriver):
    """aiomysql (PyMySQL's protocol code on asyncio streams), with the pool's `Connection` class."""

    name = "aiomysql"
    connect_arguments: ClassVar[frozenset[str]] = frozenset(inspect.signature(aiomysql.Connection).parameters) - {
        "loop"
    }
    connection_class = Connection
    connection_errors = (pymysql.err.OperationalError, pymysql.err.InterfaceError)
    families = error_families(pymysql.err)
    operational_error = pymysql.err.OperationalError

    async def open(self, conn: Connection) -> None:
        await conn._connect()

    is_clean = staticmethod(is_clean)
    session_dirty = staticmethod(session_dirty)

    def take(self, conn: Connection, autocommit: bool | None) -> bool:
        # The socket, tested in place; then the session, if a command reached it since the release.
        reader = conn._reader
        if reader is None or reader._eof_received or reader._exception is not None or reader._buffer:
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
        reader = conn._reader
        if reader is None or reader._eof_received or reader._exception is not None or conn._broken:
            return BROKEN
        if conn._waiting is not None:
            return BROKEN  # another task still waits for an answer on it: its state is unknown
        result = conn._result
        if result is None:
            if reader._buffer:
                return BROKEN
            status = conn._status
        elif result.unbuffered_active:
            return BROKEN
        elif result.has_next:
            status = IN_TRANS  # result sets still to come: the reset must read them
        elif reader._buffer:
            return BROKEN
        else:
            status = result.server_status
            if status is None:
                status = conn._status
                if not EOF_STATUS_TRACKED and not status & AUTOCOMMIT:
                    status |= IN_TRANS  # the EOF's status was dropped: a transaction may be open
        if exact and (
            conn._session_changed or not conn._tracks_sessions or conn._status & SERVER_SESSION_STATE_CHANGED
        ):
            return RESTORE
        if (
            conn._unconfirmed
            or status & IN_TRANS
            or (autocommit is not None and bool(status & AUTOCOMMIT) != autocommit)
        ):
            return ROLLBACK
        return READY

    async def cursor(self, conn: Connection, *, dict_rows: bool) -> Any:
        return await conn.cursor(aiomysql.DictCursor if dict_rows else aiomysql.Cursor)


DRIVER = AiomysqlDriver()
