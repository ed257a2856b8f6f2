"""A connection belongs to whoever acquired it, and only until they release it: against a real server."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import fastapi_mysqlpool as mp
from fastapi_mysqlpool._seam import POOL_TASK
from tests.conftest import PoolFactory
from tests.test_pool import conn_id, fetch

pytestmark = pytest.mark.usefixtures("driver")


async def test_a_reference_kept_after_release_raises(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1)
    conn = await pool.acquire()
    first = await conn_id(conn)
    await pool.release(conn)
    with pytest.raises(mp.PoolMisuse, match="after its release"):
        await fetch(conn, "SELECT 1")
    # The refused command sent nothing: the next owner gets the same, healthy connection.
    async with pool.acquire() as again:
        assert again is conn
        assert await conn_id(again) == first
    assert pool.stats()["closed_total"]["broken"] == 0


async def test_a_reference_kept_after_the_async_with_block_raises(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1)
    async with pool.acquire() as conn:
        await fetch(conn, "SELECT 1")
    for use in (conn.commit(), conn.ping(reconnect=False), conn.select_db("mysql"), conn.ensure_closed()):
        with pytest.raises(mp.PoolMisuse, match="release"):
            await use
    async with pool.acquire() as again:
        assert await fetch(again, "SELECT DATABASE()") != [("mysql",)]


async def test_two_tasks_on_one_connection_raise_and_the_first_gets_its_answer(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1)
    async with pool.acquire() as conn:
        first = asyncio.create_task(fetch(conn, "SELECT SLEEP(0.3), 'mine'"))
        await asyncio.sleep(0.05)  # the first command has been sent and waits for its answer
        with pytest.raises(mp.PoolMisuse, match="two tasks at once"):
            await fetch(conn, "SELECT 'theirs'")
        assert await first == [(0, "mine")]
        assert await fetch(conn, "SELECT 'next'") == [("next",)]


async def test_an_idle_connection_inside_a_transaction_is_discarded_not_handed_out(
    make_pool: PoolFactory, caplog: pytest.LogCaptureFixture
) -> None:
    pool = await make_pool(minsize=1, maxsize=1)
    async with pool.acquire() as conn:
        before = await conn_id(conn)

    async def begin_behind_the_pools_back() -> Any:
        # Only a bug in the pool itself could do this: its own tasks may use a given-back connection.
        POOL_TASK.set(True)
        return await conn.begin()

    await asyncio.create_task(begin_behind_the_pools_back())  # a task of its own: the flag stays there
    with caplog.at_level(logging.ERROR, logger="fastapi_mysqlpool"):
        async with pool.acquire() as fresh:
            assert await conn_id(fresh) != before
            assert await fetch(fresh, "SELECT @@in_transaction") == [(0,)]
    assert pool.stats()["closed_total"]["broken"] == 1
    assert any(
        record.levelno == logging.ERROR and "inside a transaction" in record.message for record in caplog.records
    )
