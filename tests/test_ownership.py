"""A connection belongs to whoever acquired it, and only until they release it: against a real server."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import fastapi_mysqlpool as mp
from fastapi_mysqlpool._seam import POOL_TASK
from tests import _drivers
from tests.conftest import PoolFactory, query
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


async def test_a_pinged_connection_is_handed_out_unmarked_and_a_later_change_is_still_caught(
    make_pool: PoolFactory,
) -> None:
    pool = await make_pool(minsize=1, maxsize=1, pre_ping_window=0.2)
    async with pool.acquire() as conn:
        before = await conn_id(conn)
    await asyncio.sleep(0.3)  # past the pre-ping window: the next acquire pings it in the pool's own task
    async with pool.acquire() as pinged:
        assert pinged is conn
        # The ping reached it while given back; the test after the ping settled it, so the mark is gone.
        assert conn._touched is False
    assert pool.stats()["closed_total"]["broken"] == 0

    async def begin_behind_the_pools_back() -> Any:
        POOL_TASK.set(True)
        return await conn.begin()

    await asyncio.create_task(begin_behind_the_pools_back())
    async with pool.acquire() as fresh:  # within the window: the fast path, which now tests the session
        assert await conn_id(fresh) != before
        assert await fetch(fresh, "SELECT @@in_transaction") == [(0,)]
    assert pool.stats()["closed_total"]["broken"] == 1


@pytest.mark.parametrize("step", ["open", "reset"])
async def test_a_connection_the_pools_own_io_left_in_a_transaction_is_closed_not_handed_to_a_waiter(
    make_pool: PoolFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, step: str
) -> None:
    # A defect of the pool's own open or reset, which no server can be made to cause: the step runs as it
    # should, then leaves a transaction open, once.
    pool = await make_pool(minsize=0, maxsize=1, autocommit=True)
    connector = type(pool._connector)  # its instances have slots: the step is replaced on the class
    defects = [step]

    async def leave_a_transaction(conn: Any) -> None:
        if defects:
            defects.pop()
            await conn._own_query("BEGIN")

    if step == "open":
        connect = connector.connect

        async def connect_leaving_a_transaction(self: Any) -> Any:
            entry = await connect(self)
            await leave_a_transaction(entry.conn)
            return entry

        monkeypatch.setattr(connector, "connect", connect_leaving_a_transaction)
        waiter = asyncio.create_task(pool.acquire())
    else:
        reset = connector._reset

        async def reset_leaving_a_transaction(self: Any, conn: Any, full: bool) -> None:
            await reset(self, conn, full)
            await leave_a_transaction(conn)

        monkeypatch.setattr(connector, "_reset", reset_leaving_a_transaction)
        conn = await pool.acquire()
        await fetch(conn, "SET @left = 1")  # the release runs the full reset
        waiter = asyncio.create_task(pool.acquire())
        await asyncio.sleep(0.05)  # it waits for the only connection
        assert not waiter.done()
        with caplog.at_level(logging.ERROR, logger="fastapi_mysqlpool"):
            await pool.release(conn)
    with caplog.at_level(logging.ERROR, logger="fastapi_mysqlpool"):
        fresh = await asyncio.wait_for(waiter, 10)
    try:
        assert await fetch(fresh, "SELECT @@in_transaction, @left") == [(0, None)]
    finally:
        await pool.release(fresh)
    assert not defects
    assert pool.stats()["closed_total"]["broken"] == 1
    (record,) = [r for r in caplog.records if getattr(r, "reason", None) == "unclean"]
    assert record.levelno == logging.ERROR
    assert f"the pool's own {step}" in record.getMessage()


async def test_a_reference_kept_by_the_configure_hook_cannot_use_the_idle_connection(make_pool: PoolFactory) -> None:
    kept: list[Any] = []

    async def configure(conn: Any) -> None:
        kept.append(conn)

    pool = await make_pool(minsize=1, maxsize=1, autocommit=True, configure=configure)
    (conn,) = kept
    # Opened and idle, never handed out yet: it is the pool's, as after a release.
    with pytest.raises(mp.PoolMisuse, match="after its release"):
        await conn.begin()
    async with pool.acquire() as mine:
        assert mine is conn
        assert await fetch(mine, "SELECT @@in_transaction") == [(0,)]


async def test_results_read_by_another_task_after_the_release_are_refused(make_pool: PoolFactory, admin: Any) -> None:
    query(
        admin,
        "CREATE OR REPLACE PROCEDURE app.ownership_two_results() BEGIN SELECT 1 AS a; SELECT 2 AS b; END",
    )
    try:
        pool = await make_pool(minsize=1, maxsize=1, autocommit=True)
        conn = await pool.acquire()
        before = await conn_id(conn)
        cur = await _drivers.open_cursor(conn)
        await cur.execute("CALL app.ownership_two_results()")  # the first result read, the others to come
        late = asyncio.create_task(cur.nextset())  # runs only once the release below has given it back
        await pool.release(conn)
        with pytest.raises(mp.PoolMisuse, match="after its release"):
            await late
        # The release's reset read the results the task was refused: the next owner gets the same connection, clean.
        async with pool.acquire() as again:
            assert await conn_id(again) == before
            assert await fetch(again, "SELECT 'next'") == [("next",)]
    finally:
        query(admin, "DROP PROCEDURE IF EXISTS app.ownership_two_results")


async def test_a_second_task_reading_results_while_the_first_waits_is_refused(
    make_pool: PoolFactory, admin: Any
) -> None:
    query(
        admin,
        "CREATE OR REPLACE PROCEDURE app.ownership_slow_results() "
        "BEGIN SELECT 1 AS a; DO SLEEP(0.3); SELECT 2 AS b; END",
    )
    try:
        pool = await make_pool(minsize=1, maxsize=1, autocommit=True)
        async with pool.acquire() as conn:
            cur = await _drivers.open_cursor(conn)
            await cur.execute("CALL app.ownership_slow_results()")
            first = asyncio.create_task(cur.nextset())  # waits for the second result, 0.3 s away
            await asyncio.sleep(0.1)
            with pytest.raises(mp.PoolMisuse, match="two tasks at once"):
                await conn.next_result()
            assert await first
            assert list(await cur.fetchall()) == [(2,)]
            while await cur.nextset():
                pass
            assert await fetch(conn, "SELECT 'next'") == [("next",)]
    finally:
        query(admin, "DROP PROCEDURE IF EXISTS app.ownership_slow_results")
