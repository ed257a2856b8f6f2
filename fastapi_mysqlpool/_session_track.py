"""The server's own account of what a command changed in the session: OK and EOF packets, parsed.

With the ``CLIENT_SESSION_TRACK`` capability (MariaDB 10.2+, MySQL 5.7+) an OK packet carries, after its
counters and status flags, a human-readable ``info`` string and, when the status has
``SERVER_SESSION_STATE_CHANGED``, a block of length-encoded entries saying what changed::

    OK packet:  0x00 | affected_rows <lenenc> | insert_id <lenenc> | status <2> | warnings <2>
                | info <lenenc str> | [state-info length <lenenc> | entry...]     (when status & 0x4000)
    entry:      type <1> | data length <lenenc> | data
                  SYSTEM_VARIABLES (0)            name <lenenc str> value <lenenc str>
                  SCHEMA (1)                      name <lenenc str>
                  STATE_CHANGE (2)                "1" (the bare character)
                  GTIDS (3)                       encoding <1> gtids <lenenc str>
                  TRANSACTION_CHARACTERISTICS (4) statements that recreate them <lenenc str>
                  TRANSACTION_STATE (5)           eight flag characters <lenenc str>
    EOF packet: 0xFE | warnings <2> | status <2>                             (payload under 9 bytes)

Nothing here touches a socket or a driver: these functions take a packet's payload (the bytes after the
4-byte header) and return what it says, or raise `MalformedPacket` naming what is wrong and where.
docs/pool.md ("How the pool knows a session changed") has what MariaDB actually reports for each statement.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from struct import unpack_from

__all__ = [
    "CLIENT_SESSION_TRACK",
    "SERVER_SESSION_STATE_CHANGED",
    "EofPacket",
    "MalformedPacket",
    "OkPacket",
    "SessionChange",
    "SessionTrack",
    "parse_eof",
    "parse_ok",
    "parse_session_state",
]

#: Capability flag a client sets in its handshake response to receive session-state information.
CLIENT_SESSION_TRACK = 1 << 23
#: Status flag of an OK (or EOF) packet: the command changed session state the server tracks.
SERVER_SESSION_STATE_CHANGED = 0x4000

_OK = 0x00
_EOF = 0xFE
_EOF_MAX_PAYLOAD = 9  # a 0xFE packet this long or longer is a length-encoded integer, not an EOF


class SessionTrack(enum.IntEnum):
    """The type byte of a session-state entry."""

    SYSTEM_VARIABLES = 0
    SCHEMA = 1
    STATE_CHANGE = 2
    GTIDS = 3
    TRANSACTION_CHARACTERISTICS = 4
    TRANSACTION_STATE = 5


class MalformedPacket(ValueError):
    """A payload that is not the packet it was parsed as; the message says what is wrong and at which byte."""


@dataclass(frozen=True, slots=True)
class SessionChange:
    """One session-state entry.

    - ``kind``: a `SessionTrack`, or the raw type byte for a type this module does not know.
    - ``name``: the variable's name for ``SYSTEM_VARIABLES``; empty otherwise.
    - ``value``: the variable's value, the new schema, ``"1"`` for ``STATE_CHANGE``, the GTIDs, the
      statements for ``TRANSACTION_CHARACTERISTICS``, the flag characters for ``TRANSACTION_STATE``; for an
      unknown type, its data decoded as it came.
    """

    kind: SessionTrack | int
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class OkPacket:
    """An OK packet's fields. ``changes`` is empty unless the status says the session state changed."""

    affected_rows: int
    insert_id: int
    status: int
    warnings: int
    info: str
    changes: tuple[SessionChange, ...]

    @property
    def state_changed(self) -> bool:
        """Whether the server set ``SERVER_SESSION_STATE_CHANGED``."""
        return bool(self.status & SERVER_SESSION_STATE_CHANGED)


@dataclass(frozen=True, slots=True)
class EofPacket:
    """An EOF packet's fields: it ends column definitions and result rows (without ``CLIENT_DEPRECATE_EOF``)."""

    warnings: int
    status: int

    @property
    def state_changed(self) -> bool:
        """Whether the server set ``SERVER_SESSION_STATE_CHANGED``; EOF packets carry no entries saying what."""
        return bool(self.status & SERVER_SESSION_STATE_CHANGED)


class _Reader:
    """A cursor over a payload; every read checks the bounds and names the field it was reading."""

    __slots__ = ("data", "end", "packet", "pos")

    def __init__(self, data: bytes | bytearray | memoryview, packet: str, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.packet = packet
        self.pos = pos
        self.end = len(data) if end is None else end

    def fail(self, field: str, problem: str) -> MalformedPacket:
        return MalformedPacket(f"{self.packet}: {field} at byte {self.pos}: {problem}")

    def need(self, size: int, field: str) -> None:
        if self.pos + size > self.end:
            raise self.fail(field, f"needs {size} bytes, {self.end - self.pos} left")

    def at_end(self) -> bool:
        return self.pos >= self.end

    def byte(self, field: str) -> int:
        self.need(1, field)
        value = self.data[self.pos]
        self.pos += 1
        return value

    def uint16(self, field: str) -> int:
        self.need(2, field)
        (value,) = unpack_from("<H", self.data, self.pos)
        self.pos += 2
        return int(value)

    def lenenc_int(self, field: str) -> int:
        first = self.byte(field)
        if first < 0xFB:
            return first
        if first == 0xFB:
            raise self.fail(field, "NULL (0xFB) where a length or count must be")
        if first == 0xFF:
            raise self.fail(field, "0xFF is not a length-encoded integer")
        size = {0xFC: 2, 0xFD: 3, 0xFE: 8}[first]
        self.need(size, field)
        value = int.from_bytes(self.data[self.pos : self.pos + size], "little")
        self.pos += size
        return value

    def lenenc_bytes(self, field: str) -> bytes:
        size = self.lenenc_int(field)
        self.need(size, field)
        value = bytes(self.data[self.pos : self.pos + size])
        self.pos += size
        return value


def _entry(reader: _Reader, kind: int, encoding: str) -> SessionChange:
    """One entry's data, ``reader`` bounded to exactly its length."""
    try:
        known = SessionTrack(kind)
    except ValueError:
        # A type added after this module: keep what it said, structure and all.
        data = bytes(reader.data[reader.pos : reader.end])
        reader.pos = reader.end
        return SessionChange(kind, "", data.decode(encoding, "replace"))
    if known is SessionTrack.SYSTEM_VARIABLES:
        name = reader.lenenc_bytes("variable name").decode(encoding)
        return SessionChange(known, name, reader.lenenc_bytes("variable value").decode(encoding))
    if known is SessionTrack.STATE_CHANGE:
        # The one entry whose data is not length-encoded inside: the character itself (MariaDB and MySQL alike).
        data = bytes(reader.data[reader.pos : reader.end])
        reader.pos = reader.end
        return SessionChange(known, "", data.decode(encoding))
    if known is SessionTrack.GTIDS:
        reader.byte("GTID encoding")
    return SessionChange(known, "", reader.lenenc_bytes(known.name.lower()).decode(encoding))


def parse_session_state(block: bytes | bytearray | memoryview, encoding: str = "utf-8") -> tuple[SessionChange, ...]:
    """The entries of a session-state block (its length prefix already taken off), in the server's order."""
    reader = _Reader(block, "session state")
    changes: list[SessionChange] = []
    while not reader.at_end():
        kind = reader.byte("entry type")
        size = reader.lenenc_int(f"length of entry {kind}")
        reader.need(size, f"data of entry {kind}")
        entry = _Reader(block, f"session state entry {kind}", reader.pos, reader.pos + size)
        changes.append(_entry(entry, kind, encoding))
        if not entry.at_end():
            raise entry.fail("end of entry", f"{entry.end - entry.pos} bytes left over")
        reader.pos = entry.end
    return tuple(changes)


def parse_ok(
    payload: bytes | bytearray | memoryview, *, session_track: bool = True, encoding: str = "utf-8"
) -> OkPacket:
    """An OK packet (header 0x00, or 0xFE when it ends a result set under ``CLIENT_DEPRECATE_EOF``).

    ``session_track``: whether the connection negotiated ``CLIENT_SESSION_TRACK``. Without it the info string
    is the rest of the packet and there are no session-state entries.
    """
    reader = _Reader(payload, "OK packet")
    header = reader.byte("header")
    if header not in (_OK, _EOF):
        raise reader.fail("header", f"0x{header:02X} is neither 0x00 nor 0xFE")
    affected_rows = reader.lenenc_int("affected rows")
    insert_id = reader.lenenc_int("insert id")
    status = reader.uint16("status flags")
    warnings = reader.uint16("warnings")
    changes: tuple[SessionChange, ...] = ()
    if not session_track:
        info = bytes(payload[reader.pos :])
    # The server may end the packet right after the warnings when there is no info and nothing changed.
    elif reader.at_end():
        info = b""
    else:
        info = reader.lenenc_bytes("info")
        if status & SERVER_SESSION_STATE_CHANGED and not reader.at_end():
            block = reader.lenenc_bytes("session state")
            changes = parse_session_state(block, encoding)
        if not reader.at_end():
            raise reader.fail("end of packet", f"{reader.end - reader.pos} bytes left over")
    return OkPacket(affected_rows, insert_id, status, warnings, info.decode(encoding, "replace"), changes)


def parse_eof(payload: bytes | bytearray | memoryview) -> EofPacket:
    """An EOF packet, as it ends column definitions and rows when ``CLIENT_DEPRECATE_EOF`` is off."""
    reader = _Reader(payload, "EOF packet")
    header = reader.byte("header")
    if header != _EOF or len(payload) >= _EOF_MAX_PAYLOAD:
        raise reader.fail("header", f"0x{header:02X} with {len(payload)} bytes is not an EOF packet")
    return EofPacket(warnings=reader.uint16("warnings"), status=reader.uint16("status flags"))
