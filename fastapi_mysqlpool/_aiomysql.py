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
  merely passed through a block of user code.
- Parameters are escaped the same whatever the PyMySQL version: PyMySQL 1.2 removed the
  helper aiomysql escapes ``bytes`` with, and refuses tuples and lists.
- A password is sent as UTF-8, as the MySQL and MariaDB command-line clients send it, where
  aiomysql encodes it as Latin-1 and fails, showing the password, on any other character.
- Reading is faster; what it reads, and the errors it raises, are aiomysql's. aiomysql
  awaits twice per packet (header, then payload) and builds a packet object for every
  column definition and every row, even when the whole reply arrived in one segment, as
  almost every reply does. Here a packet already in the read buffer is taken
  synchronously, and one that is not yet complete costs one wait. The rows of a result
  set already in the buffer are parsed straight from it. The column definitions are parsed
  once per distinct set (a small LRU cache per connection, keyed by their exact payload
  bytes, so a changed schema is simply a new key). A ``SELECT 1`` executes a third fewer instructions.
  Anything unusual (a packet continued past 16 MiB, an error, a malformed value) is left
  to aiomysql's own code, which raises what it always raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
from collections.abc import Coroutine
from struct import unpack_from
from typing import Any, ClassVar

import aiomysql
import pymysql
from aiomysql.connection import TEXT_TYPES, MySQLResult
from pymysql.constants import CR, FIELD_TYPE
from pymysql.converters import encoders, escape_item, through
from pymysql.protocol import EOFPacketWrapper, FieldDescriptorPacket, MysqlPacket

from ._errors import PoolMisuse
from ._seam import POOL_TASK, Driver, ErrorFamily, is_disconnect, is_wrong_host
from ._session_track import CLIENT_SESSION_TRACK, SERVER_SESSION_STATE_CHANGED
from ._statement import session_sql, with_limit

__all__ = [
    "DRIVER",
    "EOF_STATUS_TRACKED",
    "AiomysqlDriver",
    "Connection",
    "changes_unreported",
    "is_clean",
    "session_changed",
    "session_dirty",
]

IN_TRANS = pymysql.constants.SERVER_STATUS.SERVER_STATUS_IN_TRANS
AUTOCOMMIT = pymysql.constants.SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
MORE_RESULTS = pymysql.constants.SERVER_STATUS.SERVER_MORE_RESULTS_EXISTS
COM_RESET_CONNECTION = 0x1F
# A payload of this length continues in the next packet; those take aiomysql's own path.
_CONTINUED = 0xFFFFFF

#: Whether result sets record the status of their closing EOF packet (aiomysql's hook exists).
EOF_STATUS_TRACKED = callable(getattr(MySQLResult, "_check_packet_is_eof", None))

# The session trackers set on every connection of a server that tracks sessions: the current database, every
# system variable, and STATE_CHANGE for user variables, temporary tables, prepared statements and the rest.
# They cost nothing on a statement that changes nothing: the server adds bytes only to an answer whose command
# changed the session. The transaction tracker stays off: it would flag every BEGIN, COMMIT and autocommit-off
# statement, so a clean transaction would look like a changed session.
_TRACKERS = (
    "SESSION session_track_schema=ON, SESSION session_track_state_change=ON, SESSION session_track_system_variables='*'"
)
# What changes a session without the server saying so (docs/pool.md has the measurements): user locks, open
# HANDLERs, LOCK TABLES (reported only by the transaction tracker), FLUSH TABLES WITH READ LOCK, and user variables
# assigned inside a statement (`:=`, `INTO @v`). A false match (the words in a string literal, say) costs one
# full reset and nothing else.
_UNREPORTED = re.compile(r"get_lock|handler|lock\s+table|read\s+lock|:=|into\s+@")


def changes_unreported(sql: str | bytes) -> bool:
    """Whether ``sql`` may change the session in a way the server does not report (see `_UNREPORTED`).

    Substring tests on the lowered text first, a few hundred nanoseconds for a typical statement; the regular
    expression, which tries every alternative at every position and costs ten times that, only runs on the rare
    statement that contains one of the words."""
    low = sql.lower() if isinstance(sql, str) else sql.decode("latin-1").lower()
    if "lock" in low or "handler" in low or ":=" in low or ("@" in low and "into" in low):
        return _UNREPORTED.search(low) is not None
    return False


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

    async def _read_rowdata_packet(self) -> None:
        conn: Connection = self.connection
        rows: list[tuple[Any, ...]] = []
        while not conn._take_rows(self, rows):
            # The rest is not in the buffer yet, or the next packet is irregular: one the slow way.
            packet = await conn._read_packet()
            if self._check_packet_is_eof(packet):
                break
            rows.append(self._read_row_from_packet(packet))
        self.connection = None
        self.affected_rows = len(rows)
        self.rows = tuple(rows)

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


class Connection(aiomysql.Connection):  # type: ignore[misc]
    """The connection the pool opens: ``aiomysql.Connection`` with exact transaction status
    and a synchronous read of buffered packets (see the module docstring)."""

    _next_seq_id: int
    # Set once connected, when the stream reader has the buffer this relies on.
    _buffered_reads = False
    _field_cache: dict[tuple[Any, ...], tuple[tuple[FieldDescriptorPacket, ...], tuple[Any, ...]]]
    # The last status flags the server sent, and whether a command was sent since without an
    # OK or EOF packet answering it (an error, or not answered yet): see the module docstring.
    _status = 0
    _unconfirmed = False
    # A failure left the connection in a state nobody can know: it is never reused.
    _broken = False
    #: A server error said its host changed role or left the cluster (`is_wrong_host`): discarded, host re-checked.
    wrong_host = False
    # Given back to the pool (see `Driver.set_owned`); and whether a command waits for its answer, which
    # is the only time another task can run while a command is in flight.
    _released = False
    _waiting = False
    # Whether the server reports session changes (CLIENT_SESSION_TRACK), and whether the session changed since
    # it was settled (opened, or fully reset): see `session_changed`.
    _tracks_sessions = False
    _session_changed = False
    _password: Any
    #: The pool-wide server-side statement timeout in seconds, 0 for none: set on the session at connect.
    max_statement_time = 0.0
    #: A per-acquire timeout written into each statement (see _statement.py); None: the session's applies.
    statement_limit: float | None = None

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

    def escape(self, obj: Any, mapping: Any = None) -> str:
        """Escape a query parameter, as ``aiomysql.Connection.escape`` does with PyMySQL < 1.2."""
        if isinstance(obj, str):
            return f"'{self.escape_string(obj)}'"
        if isinstance(obj, (bytes, bytearray)):
            return "_binary X'" + obj.hex() + "'"
        if type(obj) in (tuple, list, set, frozenset):
            return "(" + ",".join([self.escape(item) for item in obj]) + ")"
        if type(obj) not in encoders:
            # PyMySQL would quote its str() with backslash escapes, which NO_BACKSLASH_ESCAPES does not read.
            return f"'{self.escape_string(str(obj))}'"
        escaped: str = escape_item(obj, self._charset)
        return escaped

    def literal(self, obj: Any) -> str:
        return self.escape(obj)

    @property
    def is_mariadb(self) -> bool:
        """Whether the server is MariaDB (else MySQL), from its handshake."""
        return "mariadb" in str(self.server_version or "").lower()

    async def _connect(self) -> None:
        self._buffered_reads = False
        await super()._connect()
        self._tracks_sessions = bool(self.server_capabilities & CLIENT_SESSION_TRACK)
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
        statement. Warnings and errors (a truncated value, say) are still reported."""
        rows = await super().show_warnings()
        return None if rows is None else tuple(row for row in rows if row[0] not in ("Note", b"Note"))

    async def _read_packet(self, packet_type: type[MysqlPacket] = MysqlPacket) -> MysqlPacket:
        try:
            return await self._read_one(packet_type)
        except BaseException as exc:
            if not isinstance(exc, Exception) or is_disconnect(exc):
                self._broken = True
            elif is_wrong_host(exc):
                self._broken = self.wrong_host = True
            raise

    async def _read_one(self, packet_type: type[MysqlPacket]) -> MysqlPacket:
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
            self._waiting = True
            try:
                await reader._wait_for_data("readexactly")
            except asyncio.CancelledError:
                self._close_on_cancel()
                raise
            except Exception:
                break  # the stream failed: aiomysql's path reports it
            finally:
                self._waiting = False
            if self._reader is not reader:
                # Closed while we waited: what aiomysql's wait reports when its stream ends there.
                lost = asyncio.IncompleteReadError(bytes(reader._buffer), None)
                raise pymysql.err.OperationalError(
                    CR.CR_SERVER_LOST, "Lost connection to MySQL server during query"
                ) from lost
        # Continued, out of sequence, cut short or failed: aiomysql reassembles or raises.
        self._waiting = True
        try:
            waited: MysqlPacket = await super()._read_packet(packet_type)
        finally:
            self._waiting = False
        return waited

    def _session_assignments(self) -> list[str]:
        """What the pool sets per session beyond aiomysql's arguments: the trackers and the statement timeout."""
        assignments = [_TRACKERS] if self._tracks_sessions else []
        if self.max_statement_time:
            assignments.append(session_sql(self.max_statement_time, self.is_mariadb).removeprefix("SET "))
        return assignments

    async def apply_session_settings(self) -> None:
        """Set the `_session_assignments` after the handshake, in one statement."""
        assignments = self._session_assignments()
        if assignments:
            await super().query("SET " + ", ".join(assignments))

    async def restore_session(self, autocommit: bool | None) -> None:
        """After COM_RESET_CONNECTION, which restores the server's defaults but keeps the current database: the
        character set, ``sql_mode``, trackers, statement timeout and autocommit the connection was opened with
        (one statement), the configured database, then ``init_command``."""
        assignments = [f"NAMES {self.escape(self.charset)}"]
        if self.sql_mode is not None:
            assignments.append(f"sql_mode={self.sql_mode}")  # as aiomysql sets it at connect
        assignments += self._session_assignments()
        if autocommit is not None:
            assignments.append(f"autocommit={int(autocommit)}")
            self.autocommit_mode = autocommit
        await super().query("SET " + ", ".join(assignments))
        if self.db:
            await self.select_db(self.db)
        else:
            await super().query("SELECT DATABASE()")
            result = self._result
            if result is None or result.rows != ((None,),):
                # No command returns a session to "no database": only a new connection has none.
                raise pymysql.err.InterfaceError(
                    0, "the session selected a database and the pool has none configured to return to"
                )
        if self.init_command is not None:
            await super().query(self.init_command)
            await self.commit()

    async def set_charset(self, charset: str) -> None:
        # aiomysql reads the answer without its status: the change would go unseen.
        self._session_changed = True
        await super().set_charset(charset)

    async def query(self, sql: str | bytes, unbuffered: bool = False) -> int:
        if self._tracks_sessions and not self._session_changed:
            self._session_changed = changes_unreported(sql)
        limit = self.statement_limit
        if limit is not None:
            raw = sql.encode(self.encoding, "surrogateescape") if isinstance(sql, str) else sql
            sql = with_limit(raw, limit, self.is_mariadb)
        affected: int = await super().query(sql, unbuffered)
        return affected

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
        # The key is the definitions' payloads, without the packet headers, whose sequence numbers
        # depend on where the result set sits in the reply.
        key = (self._encoding, *(bytes(buf[start:end]) for start, end in spans))
        cache = self._field_cache
        cached = cache.pop(key, None)
        keep = cached is not None or sum(map(len, key[1:])) <= _FIELD_CACHE_SET_BYTES
        if cached is None:
            try:
                fields = tuple(FieldDescriptorPacket(data, self._encoding) for data in key[1:])
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
                encoding = self.encoding
            elif field_type in TEXT_TYPES:
                encoding = None if field.charsetnr == 63 else self.encoding
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

    def _check_owner(self) -> None:
        """Refuse a command from whoever gave the connection back, or from a second task while one waits for
        its answer: both would read, or send, in the middle of someone else's conversation with the server."""
        if self._released and not POOL_TASK.get():
            raise PoolMisuse(
                "connection used after its release: it went back to the pool (release(), or the end of its "
                "'async with pool.acquire()' block or request) and may already serve someone else; acquire a "
                "connection of your own for work that outlives the block"
            )
        if self._waiting:
            raise PoolMisuse(
                "connection used by two tasks at once: another task's command on it still waits for its answer; "
                "give each task a connection of its own"
            )

    async def ensure_closed(self) -> None:
        self._check_owner()
        await super().ensure_closed()

    async def _execute_command(self, command: int, sql: Any) -> None:
        self._check_owner()
        try:
            await super()._execute_command(command, sql)
        except BaseException as exc:
            if not isinstance(exc, Exception) or is_disconnect(exc):
                self._broken = True
            raise
        self._unconfirmed = True

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


def session_changed(conn: Connection) -> bool:
    """Whether the session may differ from the one the connection was opened with: the server flagged a change
    (``SERVER_SESSION_STATE_CHANGED`` on an OK or EOF packet, an unbuffered result's last one included), a
    statement did what the server does not report, or the server does not track sessions at all."""
    return conn._session_changed or not conn._tracks_sessions


def is_clean(conn: aiomysql.Connection) -> bool:
    """Cheap, I/O-free check: socket open, no EOF, no unread result, and no stray bytes
    other than the result sets still announced (which the reset on release reads)."""
    reader = conn._reader
    if reader is None or reader.eof_received or reader.exception() is not None or conn._broken:
        return False
    result = conn._result
    if result is not None and result.unbuffered_active:
        return False
    return not reader._buffer or (result is not None and bool(result.has_next))


_FAMILIES: tuple[tuple[type[BaseException], ErrorFamily], ...] = (
    (pymysql.err.InterfaceError, "interface"),
    (pymysql.err.InternalError, "internal"),
    (pymysql.err.OperationalError, "operational"),
    (pymysql.err.MySQLError, "statement"),
)


async def _until_closed(writer: asyncio.StreamWriter | None) -> None:
    # A TLS transport closes only after its shutdown exchange; a plain one on the next loop iteration.
    # Either way its socket must be gone before the event loop may close.
    if writer is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


class AiomysqlDriver(Driver):
    """aiomysql (PyMySQL's protocol code on asyncio streams), with the pool's `Connection` class."""

    name = "aiomysql"
    connect_arguments: ClassVar[frozenset[str]] = frozenset(inspect.signature(aiomysql.Connection).parameters) - {
        "loop"
    }
    connection_class = Connection
    connection_errors = (pymysql.err.OperationalError, pymysql.err.InterfaceError)

    def classify(self, exc: BaseException) -> tuple[ErrorFamily, int] | None:
        for cls, family in _FAMILIES:
            if isinstance(exc, cls):
                code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
                return family, code
        return None

    def error(self, code: int, message: str) -> Exception:
        error: Exception = pymysql.err.OperationalError(code, message)
        return error

    async def connect(
        self, kwargs: dict[str, Any], connection_class: type[Any] | None = None, statement_time: float = 0.0
    ) -> Connection:
        conn: Connection = (connection_class or Connection)(**kwargs)
        conn.max_statement_time = statement_time
        try:
            await conn._connect()
        except BaseException:
            conn.close()
            raise
        return conn

    # The module's functions themselves, not methods that call them: each runs twice per acquire and release,
    # and a second Python frame would cost as much as the check (0.1-0.2 µs a call).
    is_clean = staticmethod(is_clean)
    session_dirty = staticmethod(session_dirty)

    def set_owned(self, conn: Connection, owned: bool) -> None:
        conn._released = not owned

    def session_changed(self, conn: Connection) -> bool:
        return session_changed(conn)

    def settle_session(self, conn: Connection) -> None:
        conn._session_changed = False

    async def reset(self, conn: Connection, *, full: bool, autocommit: bool | None) -> None:
        # A stored procedure whose later result sets were not read is still running: read them (it
        # finishes), then roll back whatever it left uncommitted.
        while conn._result is not None and conn._result.has_next:
            await conn.next_result()
        if full:
            await conn._execute_command(COM_RESET_CONNECTION, b"")
            await conn._read_ok_packet()
            await conn.restore_session(autocommit)
            self.settle_session(conn)
        elif session_dirty(conn, None):
            await conn.rollback()
        if autocommit is not None and conn.get_autocommit() != autocommit:
            await conn.autocommit(autocommit)
        if autocommit is not None:
            conn.autocommit_mode = autocommit

    async def ping(self, conn: Connection) -> None:
        await conn.ping(reconnect=False)

    def abort(self, conn: Connection) -> Coroutine[Any, Any, None] | None:
        writer = conn._writer
        conn.close()
        return None if writer is None else _until_closed(writer)

    async def cursor(self, conn: Connection, *, dict_rows: bool) -> Any:
        return await conn.cursor(aiomysql.DictCursor if dict_rows else aiomysql.Cursor)

    def server_version(self, conn: Connection) -> str:
        version: str = conn.get_server_info()
        return version


DRIVER = AiomysqlDriver()
