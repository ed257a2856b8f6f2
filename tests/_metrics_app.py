"""The app of the multi-worker metrics test: ``uvicorn tests._metrics_app:app --workers 2``.

Each worker opens its own pool, named ``workers``, from ``DATABASE_URL``; ``/work`` runs one query on it and
answers the worker's pid; ``pool_router`` serves ``/pool/metrics``.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import aiomysql
from fastapi import Depends, FastAPI

import fastapi_mysqlpool as mp

NAME = "workers"
MINSIZE = 2
MAXSIZE = 5

pool = mp.pool_dependencies(NAME)
app = FastAPI(lifespan=mp.mysql_lifespan(name=NAME, minsize=MINSIZE, maxsize=MAXSIZE))
app.include_router(mp.pool_router)


@app.get("/work")
async def work(cursor: Annotated[aiomysql.Cursor, Depends(pool.get_cursor)]) -> dict[str, Any]:
    await cursor.execute("SELECT 1")
    return {"pid": os.getpid()}
