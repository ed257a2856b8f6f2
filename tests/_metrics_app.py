"""A tiny app for the multi-worker metrics test: ``uvicorn tests._metrics_app:app --workers 2``.

Each worker opens its own pool (named ``workers``) from ``DATABASE_URL``; ``/work`` holds a connection
for one query and answers the worker's pid, ``/pool/metrics`` answers for all workers.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import fastapi_mysqlpool as mp
from fastapi_mysqlpool._metrics import attach, detach, metrics_response

MINSIZE = 2
MAXSIZE = 5


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    pool = await mp.create_pool(dsn=os.environ["DATABASE_URL"], name="workers", minsize=MINSIZE, maxsize=MAXSIZE)
    attach(pool)
    try:
        yield {"pool": pool}
    finally:
        detach(pool)
        pool.close()
        await pool.wait_closed()


async def work(request: Request) -> Response:
    async with request.state.pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT 1")
    return JSONResponse({"pid": os.getpid()})


async def metrics(request: Request) -> Response:
    return metrics_response({"workers": request.state.pool})


app = Starlette(lifespan=lifespan, routes=[Route("/work", work), Route("/pool/metrics", metrics)])
