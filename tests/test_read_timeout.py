"""A statement on a server that stopped answering fails within ``read_timeout``, and its connection is never reused.

Against a real server behind the TCP proxy (blackholed), a real paused (SIGSTOP) server and a real paused Galera
node, on both drivers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import fastapi_mysqlpool as mp
from fastapi_mysqlpool._read_timeout import read_wait
from fastapi_mysqlpool.testing import GaleraCluster, MySQLServer
from tests._clusters import scalar
from tests._drivers import db_errors
from tests._proxy import FaultProxy
from tests.conftest import PoolFactory, proxied_dsn

# A bound on a wait that must end; never a measure of speed. Far above every read_timeout used here, so a
# statement that is not cut by its read timeout fails the test instead of hanging it.
NEVER = 60.0
LOST = 2013


async def statement_error(conn: Any, sql: str) -> Any:
    """The error ``sql`` fails with on ``conn`` (bounded by NEVER, so a hang fails instead of hanging)."""
    with pytest.raises(db_errors.OperationalError) as caught:
        await asyncio.wait_for(scalar(conn, sql), NEVER)
    return caught.value


def test_the_wait_is_at_least_twice_a_server_side_statement_limit() -> None:
    assert read_wait(30.0, None) == read_wait(30.0, 0.0) == 30.0
    assert read_wait(30.0, 5.0) == 30.0
    assert read_wait(1.0, 5.0) == 10.0
    assert mp.PoolOptions().read_timeout == 30.0
    with pytest.raises(ValueError, match="read_timeout"):
        mp.PoolOptions(read_timeout=-1)


async def test_a_blackholed_server_fails_the_statement_and_the_connection_is_discarded(
    driver: str, mysql_server: MySQLServer, proxy: FaultProxy, make_pool: PoolFactory
) -> None:
    pool = await make_pool(proxied_dsn(mysql_server, proxy), minsize=1, maxsize=2, read_timeout=1)
    async with pool.acquire() as conn:
        assert await scalar(conn, "SELECT 1") == 1
        proxy.blackhole()
        error = await statement_error(conn, "SELECT 2")
        dead = conn
    assert error.args[0] == LOST
    assert "within read_timeout=1 s" in error.args[1] and f":{proxy.port}" in error.args[1]
    assert pool.stats()["closed_total"]["broken"] == 1
    proxy.heal()
    async with pool.acquire() as conn:
        assert conn is not dead
        assert await scalar(conn, "SELECT 3") == 3


async def test_a_paused_server_fails_the_statement_and_the_pool_recovers_on_resume(
    driver: str, private_mysql_server: MySQLServer
) -> None:
    server = private_mysql_server
    async with mp.create_pool(dsn=server.dsn, minsize=1, maxsize=2, read_timeout=1, connect_timeout=1) as pool:
        async with pool.acquire() as conn:
            server.pause()
            try:
                error = await statement_error(conn, "SELECT 1")
            finally:
                server.resume()
        assert error.args[0] == LOST and "read_timeout" in error.args[1]
        assert pool.stats()["closed_total"]["broken"] == 1
        async with pool.acquire() as conn:
            assert await scalar(conn, "SELECT 4") == 4


async def test_a_cancelled_read_still_discards_its_connection(
    driver: str, mysql_server: MySQLServer, proxy: FaultProxy, make_pool: PoolFactory
) -> None:
    pool = await make_pool(proxied_dsn(mysql_server, proxy), minsize=0, maxsize=1, read_timeout=NEVER)
    conn = await pool.acquire()
    proxy.blackhole()
    task = asyncio.create_task(scalar(conn, "SELECT 5"))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pool.release(conn)
    proxy.heal()
    async with pool.acquire() as fresh:
        assert fresh is not conn
        assert await scalar(fresh, "SELECT 6") == 6
    assert pool.stats()["closed_total"]["broken"] == 1


async def test_the_servers_own_statement_timeout_comes_first_and_keeps_the_connection(
    driver: str, make_pool: PoolFactory
) -> None:
    # read_timeout is shorter than the statement's silence, but the wait is twice max_statement_time.
    pool = await make_pool(minsize=0, maxsize=1, read_timeout=0.2, max_statement_time=0.5)
    async with pool.acquire() as conn:
        error = await statement_error(conn, "SELECT SLEEP(5)")
        kept = conn
    # MariaDB stops SLEEP at max_statement_time with 1969; the connection was never given up.
    assert error.args[0] == 1969
    async with pool.acquire() as conn:
        assert conn is kept
        assert await scalar(conn, "SELECT 7") == 7
    assert pool.stats()["closed_total"]["broken"] == 0


async def test_a_statement_on_a_paused_galera_node_fails_and_the_next_query_goes_elsewhere(
    driver: str, galera_cluster: GaleraCluster
) -> None:
    gc = galera_cluster
    async with mp.create_pool(
        dsn=gc.dsn, minsize=1, maxsize=2, read_timeout=1, connect_timeout=1, host_check_interval=0.5
    ) as pool:
        try:
            async with pool.acquire() as conn:
                assert int(await scalar(conn, "SELECT @@port")) == gc.nodes[0].port
                gc.pause(0)
                error = await statement_error(conn, "SELECT COUNT(*) FROM information_schema.tables")
            assert error.args[0] == LOST and "read_timeout" in error.args[1]
            # The paused node is re-checked, so the next connection goes to a node that answers.
            async with pool.acquire(timeout=NEVER) as other:
                assert int(await scalar(other, "SELECT @@port")) != gc.nodes[0].port
                assert await scalar(other, "SELECT 8") == 8
        finally:
            gc.resume(0)
    gc.wait_synced()


async def test_each_read_is_cut_at_its_own_bound_whatever_else_waits(
    driver: str, mysql_server: MySQLServer, proxy: FaultProxy, make_pool: PoolFactory
) -> None:
    patient = await make_pool(proxied_dsn(mysql_server, proxy), minsize=1, maxsize=1, read_timeout=NEVER)
    hasty = await make_pool(proxied_dsn(mysql_server, proxy), minsize=1, maxsize=1, read_timeout=0.5)
    async with patient.acquire() as slow, hasty.acquire() as quick:
        proxy.blackhole()
        # The long bound is watched first; the short one, added later, still ends its read at its own bound.
        waiting = asyncio.create_task(scalar(slow, "SELECT 1"))
        await asyncio.sleep(0.1)
        error = await statement_error(quick, "SELECT 2")
        assert error.args[0] == LOST and "read_timeout=0.5 s" in error.args[1]
        assert not waiting.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting


async def test_an_answer_that_keeps_streaming_is_not_cut_however_long_it_takes(
    driver: str, mysql_server: MySQLServer, proxy: FaultProxy, make_pool: PoolFactory
) -> None:
    # The bound is on silence: 60 KB in pieces of 3 KB, 0.1 s apart, take about 2 s, four times the bound, and
    # no gap comes near it. The same pool's next silent answer is still cut at the bound.
    pool = await make_pool(proxied_dsn(mysql_server, proxy), minsize=1, maxsize=1, read_timeout=0.5)
    async with pool.acquire() as conn:
        assert await scalar(conn, "SELECT 1") == 1
        proxy.trickle_replies(3000, 0.1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        value = await asyncio.wait_for(scalar(conn, "SELECT REPEAT('x', 60000)"), NEVER)
        assert value in ("x" * 60000, b"x" * 60000)
        assert loop.time() - started > 1.0  # it did stream for longer than twice the bound
        proxy.heal()
        assert await scalar(conn, "SELECT 2") == 2
        proxy.blackhole()
        error = await statement_error(conn, "SELECT 3")
    assert error.args[0] == LOST and "read_timeout=0.5 s" in error.args[1]
