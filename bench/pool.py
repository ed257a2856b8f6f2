"""Pool micro-benchmark: one process, interleaved rounds, medians.

Every contender runs the same three workloads against the same server, round after
round, in an order that rotates each round so that no contender always runs first
(right after a garbage collection) or last. Each measurement runs for a fixed time and
counts operations; the reported figure is the median over the rounds.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiomysql
import asyncmy
import sqlalchemy
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import fastapi_mysqlpool as mp

__all__ = ["CONTENDERS", "METRICS", "PoolResults", "run_pool_bench"]

#: (key, title) of each workload, in report order.
METRICS = (
    ("acquire_release", "acquire+release, no query"),
    ("select1", "sequential SELECT 1"),
    ("concurrent", "64 tasks on 10 connections"),
)
TASKS = 64
MAXSIZE = 10

Op = Callable[[int], Awaitable[None]]


async def _select1(conn: Any) -> None:
    # The cursor API is the same in aiomysql and asyncmy, so both run the very same code.
    async with conn.cursor() as cur:
        await cur.execute("SELECT 1")
        await cur.fetchone()


class Contender:
    """One way of getting a connection; subclasses provide the three operations."""

    name = ""
    #: Operations per timed batch: large enough that the clock is read rarely.
    acquire_batch = 200
    query_batch = 20

    async def open(self, kwargs: dict[str, Any], dsn: str) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def acquire_release(self, n: int) -> None:
        raise NotImplementedError

    async def select1(self, n: int) -> None:
        raise NotImplementedError

    async def shared(self, n: int) -> None:
        """What each of the ``TASKS`` concurrent tasks runs: by default `select1`."""
        await self.select1(n)


class RawAiomysql(Contender):
    """A single aiomysql connection, no pool: the floor any pool adds its cost to."""

    name = "raw aiomysql connection"
    conn: Any

    async def open(self, kwargs: dict[str, Any], dsn: str) -> None:
        self.conn = await aiomysql.connect(**kwargs)
        self.lock = asyncio.Lock()

    async def close(self) -> None:
        await self.conn.ensure_closed()

    async def select1(self, n: int) -> None:
        conn = self.conn
        for _ in range(n):
            await _select1(conn)

    async def shared(self, n: int) -> None:
        # One connection cannot run queries concurrently: the tasks take turns on it.
        conn, lock = self.conn, self.lock
        for _ in range(n):
            async with lock:
                await _select1(conn)


class RawAsyncmy(RawAiomysql):
    """A single asyncmy connection: what the driver alone costs, for the driver question."""

    name = "raw asyncmy connection"

    async def open(self, kwargs: dict[str, Any], dsn: str) -> None:
        self.conn = await asyncmy.connect(**kwargs)
        self.lock = asyncio.Lock()

    async def close(self) -> None:
        await self.conn.ensure_closed()


class _CursorPool(Contender):
    """Pools with aiomysql's surface: ``async with pool.acquire() as conn``."""

    pool: Any

    async def close(self) -> None:
        self.pool.close()
        await self.pool.wait_closed()

    async def acquire_release(self, n: int) -> None:
        pool = self.pool
        for _ in range(n):
            async with pool.acquire():
                pass

    async def select1(self, n: int) -> None:
        pool = self.pool
        for _ in range(n):
            async with pool.acquire() as conn:
                await _select1(conn)


class MysqlPool(_CursorPool):
    name = "fastapi_mysqlpool"

    async def open(self, kwargs: dict[str, Any], dsn: str) -> None:
        # Default options, pre-ping window and all; maxsize 10 is the default too.
        self.pool = await mp.create_pool(dsn=dsn)


class AiomysqlPool(_CursorPool):
    name = "aiomysql pool"

    async def open(self, kwargs: dict[str, Any], dsn: str) -> None:
        self.pool = await aiomysql.create_pool(**kwargs, minsize=1, maxsize=MAXSIZE)


class AsyncmyPool(_CursorPool):
    name = "asyncmy pool"

    async def open(self, kwargs: dict[str, Any], dsn: str) -> None:
        self.pool = await asyncmy.create_pool(**kwargs, minsize=1, maxsize=MAXSIZE)


class SQLAlchemyEngine(Contender):
    name = "SQLAlchemy async engine"
    acquire_batch = 20
    engine: AsyncEngine

    async def open(self, kwargs: dict[str, Any], dsn: str) -> None:
        url = sqlalchemy.URL.create(
            "mysql+aiomysql",
            username=kwargs["user"],
            password=kwargs["password"],
            host=kwargs["host"],
            port=kwargs["port"],
            database=kwargs["db"],
        )
        # Ten connections like the others (its default is 5 plus 10 overflow).
        self.engine = create_async_engine(url, pool_size=MAXSIZE, max_overflow=0)
        self.query = sqlalchemy.text("SELECT 1")

    async def close(self) -> None:
        await self.engine.dispose()

    async def acquire_release(self, n: int) -> None:
        engine = self.engine
        for _ in range(n):
            async with engine.connect():
                pass

    async def select1(self, n: int) -> None:
        engine, query = self.engine, self.query
        for _ in range(n):
            async with engine.connect() as conn:
                (await conn.execute(query)).scalar()


#: Every contender, the floor first. Names are the row labels of the report.
CONTENDERS: tuple[type[Contender], ...] = (
    RawAiomysql,
    MysqlPool,
    AiomysqlPool,
    AsyncmyPool,
    SQLAlchemyEngine,
    RawAsyncmy,
)


@dataclass
class PoolResults:
    """ops/s samples per (contender, metric), one per round."""

    rounds: int
    seconds: float
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def median(self, contender: str, metric: str) -> float | None:
        values = self.samples.get(contender, {}).get(metric)
        return statistics.median(values) if values else None

    def ratio(self, contender: str, metric: str, baseline: str, baseline_metric: str | None = None) -> float | None:
        mine = self.median(contender, metric)
        theirs = self.median(baseline, baseline_metric or metric)
        return mine / theirs if mine and theirs else None

    def to_json(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "seconds": self.seconds,
            "median_ops": {
                c: {m: statistics.median(v) for m, v in metrics.items() if v} for c, metrics in self.samples.items()
            },
            "samples": self.samples,
        }


async def _measure(contender: Contender, metric: str, seconds: float) -> float | None:
    """Run one workload for about ``seconds``; return operations per second."""
    if metric == "acquire_release":
        if isinstance(contender, RawAiomysql):
            return None  # nothing to acquire: the floor has no pool
        return await _timed([contender.acquire_release], contender.acquire_batch, seconds)
    if metric == "select1":
        return await _timed([contender.select1], contender.query_batch, seconds)
    return await _timed([contender.shared] * TASKS, 2, seconds)


async def _timed(workers: list[Op], batch: int, seconds: float) -> float:
    """Run each worker concurrently, in batches, until ``seconds`` have passed; total ops/s.

    The workers are started once and read the clock once per batch, so neither task
    creation nor timing costs show up in the figure.
    """
    gc.collect()
    clock = time.perf_counter
    counts = [0] * len(workers)
    started = clock()
    end = started + seconds

    async def worker(i: int, op: Op) -> None:
        while clock() < end:
            await op(batch)
            counts[i] += batch

    await asyncio.gather(*(worker(i, op) for i, op in enumerate(workers)))
    return sum(counts) / (clock() - started)


async def run_pool_bench(
    dsn: str, *, rounds: int, seconds: float, warmup: bool = True, log: Callable[[str], None] = print
) -> PoolResults:
    """Open every contender, warm each up, then measure each workload ``rounds`` times, interleaved."""
    kwargs = mp.parse_dsn(dsn).connect_kwargs
    contenders = [cls() for cls in CONTENDERS]
    results = PoolResults(rounds=rounds, seconds=seconds)
    opened: list[Contender] = []
    try:
        for contender in contenders:
            await contender.open(dict(kwargs), dsn)
            opened.append(contender)
            results.samples[contender.name] = {metric: [] for metric, _ in METRICS}
        # Warm-up: open the connections each pool will use and fill the caches.
        for contender in contenders if warmup else ():
            for metric, _ in METRICS:
                await _measure(contender, metric, min(seconds, 0.05))
        for r in range(rounds):
            order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
            for metric, _ in METRICS:
                for contender in order:
                    ops = await _measure(contender, metric, seconds)
                    if ops is not None:
                        results.samples[contender.name][metric].append(ops)
            log(f"  pool round {r + 1}/{rounds} done")
    finally:
        for contender in opened:
            await contender.close()
    return results
