"""The pattern users write today: aiomysql's pool in a lifespan, a yield dependency around ``acquire()``."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import aiomysql
from fastapi import Depends, FastAPI, Request

import fastapi_mysqlpool as mp


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Only the DSN parsing is borrowed from fastapi_mysqlpool; the pool is aiomysql's, with its defaults.
    app.state.pool = await aiomysql.create_pool(**mp.parse_dsn(os.environ["DATABASE_URL"]).connect_kwargs)
    yield
    app.state.pool.close()
    await app.state.pool.wait_closed()


app = FastAPI(lifespan=lifespan)


async def get_conn(request: Request) -> AsyncIterator[Any]:
    async with request.app.state.pool.acquire() as conn:
        yield conn


@app.get("/")
async def one(conn: Annotated[Any, Depends(get_conn)]) -> dict[str, int]:
    async with conn.cursor() as cur:
        await cur.execute("SELECT 1")
        (value,) = await cur.fetchone()
    return {"value": value}
