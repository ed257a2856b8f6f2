"""``pool.resize()`` under load: growing serves waiters at once, shrinking retires idle then returning connections."""

from __future__ import annotations

import asyncio

import pytest

import fastapi_mysqlpool as mp
from tests._reliability import wait_until
from tests.conftest import PoolFactory


async def _hold(pool: mp.Pool, seconds: float, peak: list[int]) -> None:
    async with pool.acquire(timeout=10):
        peak.append(len(pool._in_use))
        await asyncio.sleep(seconds)


async def test_growing_serves_waiting_tasks_at_once(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=2)
    peak: list[int] = []
    tasks = [asyncio.ensure_future(_hold(pool, 0.5, peak)) for _ in range(8)]
    await asyncio.sleep(0.1)
    assert pool.stats()["in_use"] == 2 and pool.stats()["waiting"] == 6
    pool.resize(maxsize=8)
    await asyncio.sleep(0.3)  # well before any of the first two comes back
    assert pool.stats()["in_use"] == 8 and pool.stats()["waiting"] == 0
    await asyncio.gather(*tasks)
    assert pool.maxsize == 8 and pool.stats()["maxsize"] == 8 and max(peak) == 8


async def test_shrinking_under_load_retires_idle_first_then_returning_ones(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=6)
    peak: list[int] = []
    first = [asyncio.ensure_future(_hold(pool, 0.3, peak)) for _ in range(6)]
    await asyncio.gather(*first)
    assert pool.size == 6
    # Load: 4 busy, 2 idle. Shrink to 2 while 10 more tasks queue behind.
    busy = [asyncio.ensure_future(_hold(pool, 0.3, peak)) for _ in range(4)]
    await asyncio.sleep(0.05)
    pool.resize(minsize=1, maxsize=2)
    assert pool.stats()["closed_total"]["resized"] == 2  # the idle ones, at once
    peak.clear()
    queued = [asyncio.ensure_future(_hold(pool, 0.05, peak)) for _ in range(10)]
    await asyncio.gather(*busy, *queued)
    assert max(peak) <= 2  # nobody got a connection beyond the new maxsize once the busy ones came back
    stats = pool.stats()
    assert stats["size"] == 2 and stats["maxsize"] == 2 and stats["closed_total"]["resized"] == 4
    assert stats["closed_total"]["broken"] == 0


async def test_raising_minsize_opens_connections(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=0, maxsize=5)
    pool.resize(minsize=3)
    await wait_until(lambda: pool.freesize >= 3, 5.0, "3 idle connections after raising minsize")
    assert pool.minsize == 3 and pool.stats()["minsize"] == 3


async def test_bad_sizes_are_rejected_with_the_reason(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=3)
    with pytest.raises(ValueError, match=r"cannot resize pool .*maxsize.*0 \(expected >= 1\)"):
        pool.resize(maxsize=0)
    with pytest.raises(ValueError, match=r"minsize \(5\) is greater than maxsize \(3\)"):
        pool.resize(minsize=5)
    with pytest.raises(ValueError, match="'maxsize': '4'"):
        pool.resize(maxsize="4")  # type: ignore[arg-type]
    assert (pool.minsize, pool.maxsize) == (1, 3)
    pool.close()
    with pytest.raises(mp.PoolClosed):
        pool.resize(maxsize=4)
