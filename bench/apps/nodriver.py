"""The bound for any database app: the endpoint's ``SELECT 1`` with no driver, no pool and no dependency.

Ten connections are opened by aiomysql, for the handshake only. Each request takes one from a FIFO of futures a
few lines long, writes the query's packet to its socket and reads the reply until it is whole, as the pool
benchmark's no-driver client does. No app on this HTTP stack and event loop can do less for a request with a
query: what this app serves, against the ceiling, is what the server's round trip alone leaves to the others.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiomysql
from fastapi import FastAPI

import fastapi_mysqlpool as mp
from bench.wire import SharedConnections

CONNECTIONS = 10
# Filled by the lifespan; a module global rather than app.state, so that the endpoint takes no parameter.
_conns = SharedConnections(())


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    kwargs = mp.parse_dsn(os.environ["DATABASE_URL"]).connect_kwargs
    conns = [await aiomysql.connect(**kwargs, autocommit=True) for _ in range(CONNECTIONS)]
    _conns.free.extend(conns)
    yield
    for conn in conns:
        conn.close()


app = FastAPI(lifespan=lifespan)


@app.get("/")
async def one() -> dict[str, int]:
    await _conns.select1()
    return {"value": 1}
