"""The bytes of a ``SELECT 1`` on the wire, for the benchmarks' clients that have no driver."""

from __future__ import annotations

__all__ = ["SELECT1_PACKET", "reply_complete"]

#: ``SELECT 1`` as a COM_QUERY packet (length 9, sequence 0).
SELECT1_PACKET = b"\x09\x00\x00\x00\x03SELECT 1"


def reply_complete(buf: bytes) -> bool:
    """Whether ``buf`` holds a whole reply: an OK or error packet, or a result set up to its closing EOF
    (column count, definitions, EOF, rows, EOF: the second EOF packet)."""
    pos, eofs, size = 0, 0, len(buf)
    while size - pos >= 4:
        end = pos + 4 + (buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16)
        if end > size:
            return False
        first = buf[pos + 4]
        if pos == 0 and first in (0x00, 0xFF):
            if first == 0xFF:
                raise RuntimeError(f"the server refused the query: {buf[7:end].decode(errors='replace')}")
            return True
        if first == 0xFE and end - pos < 13:
            eofs += 1
            if eofs == 2:
                return True
        pos = end
    return False
