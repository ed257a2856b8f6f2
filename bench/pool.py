"""Pool micro-benchmark: one process, interleaved rounds, medians.

Every contender runs the same three workloads against the same server. Within a round
the contenders take turns in bursts of a few milliseconds until each has run for the
round's time, so that the load of a shared machine falls on all of them alike; the
reported figure is the median over the rounds. In the concurrent workload each burst
starts its 64 tasks afresh: that costs every contender the same few microseconds per task.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import aiomysql
import asyncmy
import sqlalchemy
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import fastapi_mysqlpool as mp

from .wire import SharedConnections, select1

__all__ = ["CONTENDERS", "LOOPS", "METRICS", "PoolResults", "run_on", "run_pool_bench"]

T = TypeVar("T")

#: (key, title) of each workload, in report order.
METRICS = (
    ("acquire_release", "acquire+release, no query"),
    ("select1", "sequential SELECT 1"),
    ("concurrent", "64 tasks on 10 connections"),
)
#: The event loops the benchmark runs on, each in a run of its own: asyncio's, and uvloop (what
#: ``uvicorn[standard]`` runs on).
LOOPS = ("asyncio", "uvloop")
TASKS = 64
MAXSIZE = 10
#: Operations each of the ``TASKS`` tasks runs per burst of the concurrent workload. Small, so that a
#: contender's connections never sit idle past the default 0.5 s pre-ping window while the others run:
#: the workload measures steady load, not a burst after a lull.
CONCURRENT_BATCH = 4


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

    name = "raw aiomysql"
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

    name = "raw asyncmy"

    async def open(self, kwargs: dict[str, Any], dsn: str) -> None:
        self.conn = await asyncmy.connect(**kwargs)
        self.lock = asyncio.Lock()

    async def close(self) -> None:
        await self.conn.ensure_closed()


class NoDriver(RawAiomysql):
    """No driver at all: the query's packet written to the socket and the reply read until it is whole, on
    connections aiomysql opened (for the handshake only); in the 64-task workload the tasks share ten of them
    through a FIFO of futures a few lines long. No client on this event loop can do less per query: the same
    run's bound for every driver and pool above it, the event loop's and the system calls' share of a query."""

    name = "raw asyncio, no driver"
    conns: list[Any]

    async def open(self, kwargs: dict[str, Any], dsn: str) -> None:
        self.conns = [await aiomysql.connect(**kwargs, autocommit=True) for _ in range(MAXSIZE)]
        self.conn = self.conns[0]
        self.shared_conns = SharedConnections(self.conns)

    async def close(self) -> None:
        for conn in self.conns:
            await conn.ensure_closed()

    async def select1(self, n: int) -> None:
        conn = self.conn
        for _ in range(n):
            await select1(conn)

    async def shared(self, n: int) -> None:
        query = self.shared_conns.select1
        for _ in range(n):
            await query()


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
    name = "ours on aiomysql"
    driver = "aiomysql"

    async def open(self, kwargs: dict[str, Any], dsn: str) -> None:
        # Default options, pre-ping window and all; maxsize 10 is the default too.
        self.pool = await mp.create_pool(dsn=dsn, driver=self.driver)


class MysqlPoolAsyncmy(MysqlPool):
    name = "ours on asyncmy"
    driver = "asyncmy"


class AiomysqlPool(_CursorPool):
    name = "aiomysql's pool"

    async def open(self, kwargs: dict[str, Any], dsn: str) -> None:
        self.pool = await aiomysql.create_pool(**kwargs, minsize=1, maxsize=MAXSIZE)


class AsyncmyPool(_CursorPool):
    name = "asyncmy's pool"

    async def open(self, kwargs: dict[str, Any], dsn: str) -> None:
        self.pool = await asyncmy.create_pool(**kwargs, minsize=1, maxsize=MAXSIZE)


class SQLAlchemyEngine(Contender):
    name = "SQLAlchemy's async engine"
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


#: Every contender, in the report's column order: ours on each driver, the peers' pools, the raw drivers, no driver.
CONTENDERS: tuple[type[Contender], ...] = (
    MysqlPool,
    MysqlPoolAsyncmy,
    AiomysqlPool,
    AsyncmyPool,
    SQLAlchemyEngine,
    RawAiomysql,
    RawAsyncmy,
    NoDriver,
)


@dataclass
class PoolResults:
    """Per (contender, metric), one sample per round: ops/s (wall clock) and client CPU µs per op.

    The CPU figure is this process's time only (driver and pool, not the server): it is far
    less sensitive to a busy machine than ops/s, so it shows small per-operation costs.
    """

    rounds: int
    seconds: float
    loop: str = "asyncio"
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    cpu: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def median(self, contender: str, metric: str) -> float | None:
        values = self.samples.get(contender, {}).get(metric)
        return statistics.median(values) if values else None

    def cpu_us(self, contender: str, metric: str) -> float | None:
        values = self.cpu.get(contender, {}).get(metric)
        return statistics.median(values) if values else None

    def ratio(self, contender: str, metric: str, baseline: str, baseline_metric: str | None = None) -> float | None:
        mine = self.median(contender, metric)
        theirs = self.median(baseline, baseline_metric or metric)
        return mine / theirs if mine and theirs else None

    def cpu_ratio(self, contender: str, metric: str, baseline: str) -> float | None:
        """How many times less client CPU per operation ``contender`` takes than ``baseline`` (higher is better,
        as for `ratio`): the same comparison, much less disturbed by what else the machine runs."""
        mine, theirs = self.cpu_us(contender, metric), self.cpu_us(baseline, metric)
        return theirs / mine if mine and theirs else None

    def to_json(self) -> dict[str, Any]:
        return {
            "loop": self.loop,
            "rounds": self.rounds,
            "seconds": self.seconds,
            "median_ops": {
                c: {m: statistics.median(v) for m, v in metrics.items() if v} for c, metrics in self.samples.items()
            },
            "median_cpu_us": {
                c: {m: statistics.median(v) for m, v in metrics.items() if v} for c, metrics in self.cpu.items()
            },
            "samples": self.samples,
        }


def _slice(contender: Contender, metric: str) -> tuple[Callable[[], Awaitable[object]], int] | None:
    """One short burst of a workload, and how many operations it runs; ``None`` if it does not apply."""
    if metric == "acquire_release":
        if isinstance(contender, RawAiomysql):
            return None  # nothing to acquire: the floor has no pool
        return partial(contender.acquire_release, contender.acquire_batch), contender.acquire_batch
    if metric == "select1":
        return partial(contender.select1, contender.query_batch), contender.query_batch

    def concurrent() -> Awaitable[object]:
        return asyncio.gather(*(contender.shared(CONCURRENT_BATCH) for _ in range(TASKS)))

    return concurrent, TASKS * CONCURRENT_BATCH


async def _round(contenders: list[Contender], metric: str, seconds: float) -> dict[str, tuple[float, float]]:
    """Alternate short bursts of every contender until each has run ``seconds``; ops/s and CPU µs/op each.

    A burst lasts milliseconds, so a load spike from elsewhere on the machine hits every
    contender alike instead of whichever happened to be measured at the time.
    """
    slices = {c.name: found for c in contenders if (found := _slice(c, metric)) is not None}
    wall = dict.fromkeys(slices, 0.0)
    cpu = dict.fromkeys(slices, 0.0)
    ops = dict.fromkeys(slices, 0)
    clock, cpu_clock = time.perf_counter, time.process_time
    gc.collect()
    while min(wall.values()) < seconds:
        for name, (burst, count) in slices.items():
            if wall[name] >= seconds:
                continue  # done; the others catch up (a fast contender's bursts are shorter)
            cpu_started, started = cpu_clock(), clock()
            await burst()
            wall[name] += clock() - started
            cpu[name] += cpu_clock() - cpu_started
            ops[name] += count
    return {name: (ops[name] / wall[name], cpu[name] / ops[name] * 1e6) for name in slices}


def run_on(loop: str, main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on a new event loop of the kind ``loop`` names (`LOOPS`)."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


async def run_pool_bench(
    dsn: str, *, rounds: int, seconds: float, warmup: bool = True, log: Callable[[str], None] = print
) -> PoolResults:
    """Open every contender, warm each up, then measure each workload ``rounds`` times, interleaved,
    on the running event loop."""
    kwargs = mp.parse_dsn(dsn).connect_kwargs
    contenders = [cls() for cls in CONTENDERS]
    loop = "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"
    results = PoolResults(rounds=rounds, seconds=seconds, loop=loop)
    opened: list[Contender] = []
    try:
        for contender in contenders:
            await contender.open(dict(kwargs), dsn)
            opened.append(contender)
            results.samples[contender.name] = {metric: [] for metric, _ in METRICS}
            results.cpu[contender.name] = {metric: [] for metric, _ in METRICS}
        # Warm-up: open the connections each pool will use and fill the caches.
        for metric, _ in METRICS if warmup else ():
            await _round(contenders, metric, min(seconds, 0.05))
        for r in range(rounds):
            # Rotate who goes first, so that nobody always runs right after the garbage collection.
            order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
            for metric, _ in METRICS:
                for name, (rate, cpu_us) in (await _round(order, metric, seconds)).items():
                    results.samples[name][metric].append(rate)
                    results.cpu[name][metric].append(cpu_us)
            log(f"  pool round {r + 1}/{rounds} done ({loop})")
    finally:
        for contender in opened:
            await contender.close()
    return results
