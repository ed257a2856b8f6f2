"""The app the uvicorn tests of the FastAPI integration serve: ``uvicorn tests._fastapi_app:app``.

Three pools, from the environment: ``default`` (``DATABASE_URL``, maxsize 3), ``tight`` (the same server, one
connection, a short acquire timeout and one waiter at most) and ``proxied`` (``PROXIED_DATABASE_URL``: the same
server behind a fault proxy).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Annotated, Any

import aiomysql
from fastapi import Depends, FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

import fastapi_mysqlpool as mp
from tests import _drivers

# The app runs on the driver the tests chose for it; its unbuffered cursor is that driver's.
_drivers.select(os.environ.get("MYSQLPOOL_DRIVER", "aiomysql"))
tight = mp.pool_dependencies("tight")
_COUNT_TO = "WITH RECURSIVE s (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < %s) SELECT n FROM s"

lifespan = mp.mysql_lifespan(maxsize=3, acquire_timeout=10)
lifespan = mp.mysql_lifespan(
    os.environ["DATABASE_URL"], name="tight", lifespan=lifespan, maxsize=1, acquire_timeout=0.3, max_waiting=1
)
lifespan = mp.mysql_lifespan(
    os.environ["PROXIED_DATABASE_URL"], name="proxied", lifespan=lifespan, minsize=1, maxsize=2, connect_timeout=1
)
app = FastAPI(lifespan=lifespan)
app.include_router(mp.pool_router)


@app.get("/echo")
async def echo(value: int, cursor: mp.CursorDep) -> dict[str, Any]:
    await cursor.execute("SELECT %s", (value,))
    (row,) = await cursor.fetchall()
    return {"value": row[0]}


@app.get("/sleep")
async def sleep(seconds: float, cursor: mp.CursorDep) -> dict[str, Any]:
    await cursor.execute("SELECT SLEEP(%s)", (seconds,))
    return {"slept": seconds}


@app.get("/tight/sleep")
async def tight_sleep(seconds: float, conn: Annotated[aiomysql.Connection, Depends(tight.get_conn)]) -> dict[str, Any]:
    async with conn.cursor() as cursor:
        await cursor.execute("SELECT SLEEP(%s)", (seconds,))
    return {"slept": seconds}


@app.websocket("/ws/echo")
async def websocket_echo(websocket: WebSocket, cursor: mp.CursorDep) -> None:
    """One connection for the whole WebSocket session: each text message is selected back."""
    await websocket.accept()
    try:
        async for message in websocket.iter_text():
            await cursor.execute("SELECT %s", (message,))
            (row,) = await cursor.fetchall()
            await websocket.send_text(str(row[0]))
    except WebSocketDisconnect:
        pass


@app.websocket("/ws/tight")
async def websocket_tight(websocket: WebSocket, conn: Annotated[aiomysql.Connection, Depends(tight.get_conn)]) -> None:
    await websocket.accept()
    await websocket.send_text("connected")
    await websocket.close()


@app.get("/stream")
async def stream(rows: int, pool: mp.PoolDep) -> StreamingResponse:
    async def lines() -> AsyncIterator[bytes]:
        async with pool.acquire() as conn, conn.cursor(_drivers.unbuffered_cursor()) as cursor:
            await cursor.execute(_COUNT_TO, (rows,))
            async for (n,) in cursor:
                yield f"{n}\n".encode()
                await asyncio.sleep(0.01)

    return StreamingResponse(lines(), media_type="text/plain")


@app.post("/notes")
async def add_note(text: str, conn: mp.TransactionDep) -> dict[str, Any]:
    async with conn.cursor() as cursor:
        await cursor.execute("INSERT INTO fastapi_uvicorn_notes (text) VALUES (%s)", (text,))
    return {"text": text}


@app.post("/notes/commit-fails")
async def add_note_then_lose_connection(text: str, conn: mp.TransactionDep, pool: mp.PoolDep) -> dict[str, Any]:
    async with conn.cursor() as cursor:
        await cursor.execute("INSERT INTO fastapi_uvicorn_notes (text) VALUES (%s)", (text,))
        await cursor.execute("SELECT CONNECTION_ID()")
        ((connection_id,),) = await cursor.fetchall()
    # The server ends this connection between the handler's last statement and the commit.
    async with pool.acquire() as other, other.cursor() as cursor:
        await cursor.execute(f"KILL {int(connection_id)}")
    return {"text": text}
