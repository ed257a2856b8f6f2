"""The app the streaming and post-response tests serve: ``uvicorn tests._streaming_app:app``.

Every endpoint writes ``text`` into ``streaming_notes`` and reports what it saw while it ran: the pool's
``in_use`` count and its connection's ``CONNECTION_ID()``. ``fail=true`` makes the server end the connection
just before the commit, so that the commit fails after the status line has gone out.

Two pools on ``DATABASE_URL``: ``default`` (maxsize 3) and ``tight`` (one connection, a short acquire timeout), on
which a request that kept its connection too long makes the next acquire time out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import aiomysql
from fastapi import BackgroundTasks, Depends, FastAPI
from fastapi.responses import StreamingResponse
from fastapi.sse import EventSourceResponse

import fastapi_mysqlpool as mp

tight = mp.pool_dependencies("tight")
TightPool = Annotated[mp.Pool, Depends(tight.get_pool)]
TightConn = Annotated[aiomysql.Connection, Depends(tight.get_conn)]
TightCursor = Annotated[aiomysql.Cursor, Depends(tight.get_cursor)]
TightTransaction = Annotated[aiomysql.Connection, Depends(tight.get_transaction)]

lifespan = mp.mysql_lifespan(maxsize=3, acquire_timeout=10)
lifespan = mp.mysql_lifespan(name="tight", lifespan=lifespan, maxsize=1, acquire_timeout=0.5)
app = FastAPI(lifespan=lifespan)
app.include_router(mp.pool_router)

_INSERT = "INSERT INTO streaming_notes (text) VALUES (%s)"


async def _insert(conn: aiomysql.Connection, text: str) -> int:
    async with conn.cursor() as cursor:
        await cursor.execute(_INSERT, (text,))
        await cursor.execute("SELECT CONNECTION_ID()")
        ((connection_id,),) = await cursor.fetchall()
    return int(connection_id)


async def _seen(pool: mp.Pool, conn: aiomysql.Connection, text: str) -> dict[str, Any]:
    return {"connection_id": await _insert(conn, text), "in_use": pool.stats()["in_use"]}


async def _lose(pool: mp.Pool, connection_id: int) -> None:
    """End the session ``connection_id`` on the server, as a failover or a crash would."""
    async with pool.acquire() as other, other.cursor() as cursor:
        await cursor.execute(f"KILL {int(connection_id)}")


async def _commit(pool: mp.Pool, conn: aiomysql.Connection, connection_id: int, fail: bool) -> None:
    if fail:
        await _lose(pool, connection_id)
    await conn.commit()


# --------------------------------------------------------------------------- generator endpoints


@app.post("/gen/conn")
async def gen_conn(text: str, pool: mp.PoolDep, conn: mp.ConnDep, fail: bool = False) -> AsyncIterator[dict[str, Any]]:
    seen = await _seen(pool, conn, text)
    yield seen
    await _commit(pool, conn, seen["connection_id"], fail)
    yield {"committed": True}


@app.post("/gen/cursor")
async def gen_cursor(
    text: str, pool: mp.PoolDep, cursor: mp.CursorDep, fail: bool = False
) -> AsyncIterator[dict[str, Any]]:
    seen = await _seen(pool, cursor.connection, text)
    yield seen
    await _commit(pool, cursor.connection, seen["connection_id"], fail)
    yield {"committed": True}


@app.post("/gen/transaction")
async def gen_transaction(text: str, pool: mp.PoolDep, conn: mp.TransactionDep) -> AsyncIterator[dict[str, Any]]:
    yield await _seen(pool, conn, text)


@app.post("/gen/sse", response_class=EventSourceResponse)
async def gen_sse(text: str, pool: mp.PoolDep, conn: mp.ConnDep, fail: bool = False) -> AsyncIterator[dict[str, Any]]:
    seen = await _seen(pool, conn, text)
    yield seen
    await _commit(pool, conn, seen["connection_id"], fail)
    yield {"committed": True}


@app.post("/gen/raw", response_class=StreamingResponse)
async def gen_raw(text: str, pool: mp.PoolDep, conn: mp.ConnDep, fail: bool = False) -> AsyncIterator[bytes]:
    seen = await _seen(pool, conn, text)
    yield f"{seen['connection_id']} {seen['in_use']}\n".encode()
    await _commit(pool, conn, seen["connection_id"], fail)
    yield b"committed\n"


@app.post("/gen/tight")
async def gen_tight(text: str, conn: TightConn, hold: float = 0) -> AsyncIterator[dict[str, Any]]:
    yield {"connection_id": await _insert(conn, text)}
    await asyncio.sleep(hold)  # the client reads the first line meanwhile, and may go away
    await conn.commit()
    yield {"committed": True}


# --------------------------------------------------------------------------- StreamingResponse from a handler


@app.post("/response/pool")
async def response_pool(text: str, pool: mp.PoolDep, fail: bool = False) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        async with pool.acquire() as conn:
            seen = await _seen(pool, conn, text)
            yield f"{seen['connection_id']} {seen['in_use']}\n".encode()
            await _commit(pool, conn, seen["connection_id"], fail)
            yield b"committed\n"

    return StreamingResponse(body(), media_type="text/plain")


# The request's own connection used by a body that runs after the handler returned: on the one-connection pool,
# so that the next acquirer is sure to get that connection and show what it was left in.


@app.post("/response/conn")
async def response_conn(text: str, conn: TightConn) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        yield b"started\n"
        await _insert(conn, text)
        await conn.commit()
        yield b"committed\n"

    return StreamingResponse(body(), media_type="text/plain")


@app.post("/response/cursor")
async def response_cursor(text: str, cursor: TightCursor) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        yield b"started\n"
        await cursor.execute(_INSERT, (text,))
        await cursor.connection.commit()
        yield b"committed\n"

    return StreamingResponse(body(), media_type="text/plain")


@app.post("/response/transaction")
async def response_transaction(text: str, conn: TightTransaction) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        yield b"started\n"
        await _insert(conn, text)
        yield b"inserted\n"

    return StreamingResponse(body(), media_type="text/plain")


# --------------------------------------------------------------------------- work after the response


async def _record(pool: mp.Pool, text: str) -> None:
    async with pool.acquire() as conn:
        await _insert(conn, text)
        await conn.commit()


@app.post("/background/own")
async def background_own(text: str, conn: TightTransaction, pool: TightPool, tasks: BackgroundTasks) -> dict[str, Any]:
    connection_id = await _insert(conn, text)
    tasks.add_task(_record, pool, f"{text} (background)")
    return {"connection_id": connection_id}


# What each background task of /background/request-conn ended with, by its text: "ok" or the error it raised.
outcomes: dict[str, str] = {}


@app.post("/background/request-conn")
async def background_request_conn(text: str, conn: TightConn, tasks: BackgroundTasks) -> dict[str, Any]:
    async def record() -> None:
        try:
            await _insert(conn, text)
            await conn.commit()
        except Exception as exc:
            outcomes[text] = f"{type(exc).__name__}: {exc}"
        else:
            outcomes[text] = "ok"

    tasks.add_task(record)
    return {"queued": text}


@app.get("/background/outcome")
async def background_outcome(text: str) -> dict[str, Any]:
    return {"outcome": outcomes.get(text)}


@app.get("/tight/connection-state")
async def tight_state(conn: TightConn) -> dict[str, Any]:
    """What the next acquirer of the one ``tight`` connection finds."""
    in_transaction = conn.get_transaction_status()
    async with conn.cursor() as cursor:
        await cursor.execute("SELECT COUNT(*) FROM streaming_notes")
        ((rows,),) = await cursor.fetchall()
    return {"in_transaction": in_transaction, "rows_visible": rows}
