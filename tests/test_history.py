"""``/pool/history``: one-second samples kept in the process, and the last minute with timed-out acquires counted."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI

import fastapi_mysqlpool as mp
from fastapi_mysqlpool._history import History
from fastapi_mysqlpool._stats import quantile
from tests._fastapi_support import serve
from tests.conftest import PoolFactory


async def test_a_timed_out_acquire_counts_in_the_wait_latency(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1)
    history = History(pool)
    async with pool.acquire():
        with pytest.raises(mp.PoolTimeout):
            await pool.acquire(timeout=0.3)
    stats = pool.stats()
    # Two acquires waited: the one that got the connection at once and the one that gave up after 0.3 s.
    assert stats["acquire_wait_seconds"]["count"] == 2
    assert stats["acquire_wait_seconds"]["max"] >= 0.3
    minute = history.window()
    assert minute["timeouts"] == 1
    assert minute["acquire_wait_seconds"]["count"] == 2
    assert minute["acquire_wait_seconds"]["p99"] >= 0.25


async def test_busy_counts_the_seconds_connections_were_held_in_each_interval(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=2, maxsize=2)
    history = History(pool)
    loop = asyncio.get_running_loop()
    async with pool.acquire():
        began = loop.time()
        await asyncio.sleep(0.5)
        history.sample(history.counters[-1].at + (loop.time() - began))
        (held,) = list(history.samples)
        # One connection held for the whole interval, still held at the sample: busy is 1, not the 0 the
        # finished holds alone would give.
        assert held["in_use"] == 1
        assert 0.8 <= held["busy"] <= 1.2
    for _ in range(20):
        async with pool.acquire():
            pass
    history.sample(history.counters[-1].at + 0.5)
    after = list(history.samples)[-1]
    assert (after["in_use"], after["acquires"]) == (0, 20)


def test_window_quantiles_interpolate_like_the_histogram() -> None:
    counts = [0] * 19
    counts[3] = 99  # <= 1 ms
    counts[12] = 1  # 0.5 s .. 1 s
    assert quantile(counts, 0.5, 0.9) == pytest.approx(0.0005 + 0.0005 * (50 / 99))
    assert quantile(counts, 1.0, 0.9) == 0.9
    assert quantile([0] * 19, 0.99, 1.0) == 0.0


async def test_the_router_serves_the_history_of_every_lifespan_pool(mysql_dsn: str) -> None:
    lifespan = mp.mysql_lifespan(mysql_dsn, name="analytics", lifespan=mp.mysql_lifespan(mysql_dsn))
    app = FastAPI(lifespan=lifespan)
    app.include_router(mp.pool_router)
    async with serve(app) as client:
        await asyncio.sleep(2.3)  # two samples, at one a second
        body = (await client.get("/pool/history")).json()
    assert set(body["pools"]) == {"default", "analytics"}
    history = body["pools"]["default"]
    assert history["interval"] == 1.0
    assert 1 <= len(history["samples"]) <= 3
    sample = history["samples"][-1]
    assert set(sample) == {"t", "in_use", "free", "waiting", "maxsize", "busy", "acquires", "timeouts", "errors"}
    assert sample["t"] <= body["now"]
    assert set(history["last_minute"]) >= {"acquires_per_second", "busy", "timeouts", "errors", "acquire_wait_seconds"}
