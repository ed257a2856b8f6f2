"""The bound for any database app: the endpoint's ``SELECT 1`` with no driver, no pool and no dependency.

Ten connections are opened by aiomysql, for the handshake only. Each request takes one from a FIFO of futures a
few lines long, writes the query's packet to its socket and reads the reply until it is whole, as the pool
benchmark's no-driver client does. No app on this HTTP stack and event loop can do less for a request with a
query: what this app serves, against the ceiling, is what the server's round trip alone leaves to the others.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiomysql
from fastapi import FastAPI

import fastapi_mysqlpool as mp
from bench.wire import SELECT1_PACKET, reply_complete

CONNECTIONS = 10
_free: deque[Any] = deque()
_waiting: deque[asyncio.Future[Any]] = deque()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    kwargs = mp.parse_dsn(os.environ["DATABASE_URL"]).connect_kwargs
    conns = [await aiomysql.connect(**kwargs, autocommit=True) for _ in range(CONNECTIONS)]
    _free.extend(conns)
    yield
    for conn in conns:
        conn.close()


app = FastAPI(lifespan=lifespan)


@app.get("/")
async def one() -> dict[str, int]:
    if _free:
        conn = _free.pop()
    else:
        waiter = asyncio.get_running_loop().create_future()
        _waiting.append(waiter)
        conn = await waiter
    try:
        reader = conn._reader
        conn._writer.write(SELECT1_PACKET)
        reply = await reader.read(65536)
        while not reply_complete(reply):
            reply += await reader.read(65536)
    finally:
        if _waiting:
            _waiting.popleft().set_result(conn)
        else:
            _free.append(conn)
    return {"value": 1}
