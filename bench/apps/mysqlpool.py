"""The same endpoint on ``Depends(get_conn)`` and ``mysql_lifespan``, default options."""

from __future__ import annotations

import os
from typing import Annotated, Any

from fastapi import Depends, FastAPI

import fastapi_mysqlpool as mp

app = FastAPI(lifespan=mp.mysql_lifespan(os.environ["DATABASE_URL"]))


@app.get("/")
async def one(conn: Annotated[Any, Depends(mp.get_conn)]) -> dict[str, int]:
    async with conn.cursor() as cur:
        await cur.execute("SELECT 1")
        (value,) = await cur.fetchone()
    return {"value": value}
