"""The same endpoint on ``Depends(get_conn)`` and ``mysql_lifespan``, default options, on aiomysql."""

from __future__ import annotations

import os
from typing import Annotated, Any

from fastapi import Depends, FastAPI

import fastapi_mysqlpool as mp


async def one(conn: Annotated[Any, Depends(mp.get_conn)]) -> dict[str, int]:
    async with conn.cursor() as cur:
        await cur.execute("SELECT 1")
        (value,) = await cur.fetchone()
    return {"value": value}


def make_app(driver: str) -> FastAPI:
    """The app on ``driver``; the endpoint's code is the same for both drivers."""
    app = FastAPI(lifespan=mp.mysql_lifespan(os.environ["DATABASE_URL"], driver=driver))
    app.get("/")(one)
    return app


app = make_app("aiomysql")
