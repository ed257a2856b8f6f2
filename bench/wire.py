"""A ``SELECT 1`` on the wire, for the benchmarks' clients that have no driver: the query's packet written to a
connection's socket and the reply read until it is whole, on connections aiomysql opened (for the handshake
only), shared through a FIFO of futures a few lines long."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import Any

__all__ = ["SELECT1_PACKET", "SharedConnections", "reply_complete", "select1"]

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


async def select1(conn: Any) -> None:
    """``SELECT 1`` on ``conn`` (an aiomysql connection, used for its socket only)."""
    reader = conn._reader
    conn._writer.write(SELECT1_PACKET)
    reply = await reader.read(65536)
    while not reply_complete(reply):
        reply += await reader.read(65536)


class SharedConnections:
    """Connections that tasks take turns on: the last one given back first, the oldest waiter served first."""

    def __init__(self, conns: Iterable[Any]) -> None:
        self.free: deque[Any] = deque(conns)
        self.waiting: deque[asyncio.Future[Any]] = deque()

    async def select1(self) -> None:
        free, waiting = self.free, self.waiting
        if free:
            conn = free.pop()
        else:
            fut = asyncio.get_running_loop().create_future()
            waiting.append(fut)
            conn = await fut
        try:
            await select1(conn)
        finally:
            if waiting:
                waiting.popleft().set_result(conn)
            else:
                free.append(conn)
