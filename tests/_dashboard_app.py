"""The app the dashboard tests serve: ``uvicorn tests._dashboard_app:app`` with ``DATABASE_URL`` set.

One pool of at most `MAXSIZE` connections behind ``pool_router``, and knobs to make it move:
``POST /hold?n=2`` keeps connections checked out, ``POST /release`` gives them back, and
``POST /load?tasks=6&seconds=30`` runs tasks that acquire, hold for a random moment, and release.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import aiomysql
from fastapi import FastAPI

import fastapi_mysqlpool as mp

MAXSIZE = 4

app = FastAPI(lifespan=mp.mysql_lifespan(minsize=1, maxsize=MAXSIZE, acquire_timeout=0.5))
app.include_router(mp.pool_router)
_held: list[aiomysql.Connection] = []
_load: set[asyncio.Task[None]] = set()


@app.post("/hold")
async def hold(n: int, pool: mp.PoolDep) -> dict[str, Any]:
    _held.extend([await pool.acquire() for _ in range(n)])
    return {"held": len(_held)}


@app.post("/release")
async def release(pool: mp.PoolDep) -> dict[str, Any]:
    while _held:
        await pool.release(_held.pop())
    return {"held": 0}


@app.post("/load")
async def load(tasks: int, seconds: float, pool: mp.PoolDep) -> dict[str, Any]:
    async def worker(until: float) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() < until:
            try:
                async with pool.acquire() as conn, conn.cursor() as cursor:
                    await cursor.execute("SELECT SLEEP(%s)", (random.uniform(0.01, 0.3),))
            except mp.PoolTimeout:
                pass
            await asyncio.sleep(random.uniform(0, 0.4))

    until = asyncio.get_running_loop().time() + seconds
    for _ in range(tasks):
        task = asyncio.create_task(worker(until))
        _load.add(task)
        task.add_done_callback(_load.discard)
    return {"tasks": len(_load)}
