"""Reliability, server-side faults: the server crashes, kills idle sessions, or stops answering, under load.

Scenarios 1, 2 and 5 of docs/reliability.md, at the pool level. Each runs against a real MariaDB; the crash and
pause scenarios use a private server so that they can kill it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pymysql
import pytest

import fastapi_mysqlpool as mp
from fastapi_mysqlpool.testing import MySQLServer
from tests._reliability import (
    FAST,
    Load,
    assert_every_connection_usable,
    assert_pool_accounted,
    failures_after,
    query_once,
    record_figure,
    recovery_seconds,
    unclean,
)
from tests.conftest import PoolFactory, query

# The promise: requests succeed again within this many seconds of the server answering again.
RECOVERY_BOUND = 2.0
QUERY_TIMEOUT = 1.0
# Past the pool's own bounds (acquire timeout, then the caller's query bound): a request still running is hung.
DEADLINE = FAST["acquire_timeout"] + QUERY_TIMEOUT + 1.0
WORKERS = 24

pytestmark = [pytest.mark.fault, pytest.mark.usefixtures("driver")]


def _sleep_query(seconds: float) -> Callable[[mp.Pool], Awaitable[object]]:
    async def request(pool: mp.Pool) -> object:
        return await query_once(pool, f"SELECT SLEEP({seconds})", query_timeout=QUERY_TIMEOUT)

    return request


async def test_server_killed_and_restarted_under_load_recovers_without_restarting_the_app(
    private_mysql_server: MySQLServer, request: pytest.FixtureRequest
) -> None:
    server = private_mysql_server
    async with mp.create_pool(dsn=server.dsn, minsize=5, maxsize=10, **FAST) as pool:
        load = Load(pool, WORKERS, DEADLINE, _sleep_query(0.01)).start()
        await asyncio.sleep(0.5)
        killed = time.monotonic()
        await asyncio.to_thread(server.kill)
        await asyncio.sleep(1.5)
        await asyncio.to_thread(server.start)
        ready = time.monotonic()
        await asyncio.sleep(RECOVERY_BOUND + 1.0)
        ops = await load.stop()

        assert unclean(ops) == []
        failed = [op for op in ops if not op.ok]
        assert failed, "the crash went unnoticed: the scenario did not test anything"
        assert [op for op in failed if op.ended < killed] == []
        assert failures_after(ops, ready + RECOVERY_BOUND) == []
        assert any(op.ok and op.ended < killed for op in ops)
        recovery = recovery_seconds(ops, ready)
        record_figure(request, "1-server-killed", "recovery_seconds", recovery, "s")
        record_figure(request, "1-server-killed", "requests", len(ops), "requests")
        record_figure(request, "1-server-killed", "failed_during_outage", len(failed), "requests")

        assert_pool_accounted(pool)
        await assert_every_connection_usable(pool)


@pytest.mark.parametrize("idle", [0.05, 0.7], ids=["within-pre-ping-window", "past-pre-ping-window"])
async def test_idle_connections_killed_by_the_server_cost_no_request_an_error(
    make_pool: PoolFactory, admin: pymysql.connections.Connection, request: pytest.FixtureRequest, idle: float
) -> None:
    pool = await make_pool(minsize=4, maxsize=4, **FAST)
    conns = [await pool.acquire() for _ in range(4)]
    killed = [conn.thread_id() for conn in conns]
    for conn in conns:
        await pool.release(conn)
    for thread_id in killed:
        query(admin, f"KILL {thread_id}")
    await asyncio.sleep(idle)

    ops = await _requests(pool)

    errors = [r for r in ops if isinstance(r, BaseException)]
    record_figure(request, f"2-idle-killed-{idle:g}s", "errors", len(errors), "errors")
    assert errors == []
    assert pool.stats()["closed_total"]["broken"] == 4
    survivors = {row[0] for row in query(admin, "SELECT id FROM information_schema.processlist")}
    assert survivors.isdisjoint(killed)
    assert_pool_accounted(pool)


async def test_connections_expired_by_wait_timeout_cost_no_request_an_error(
    make_pool: PoolFactory, request: pytest.FixtureRequest
) -> None:
    # A session wait_timeout of 1 s makes the server drop idle connections, as a production server does after 8 h.
    pool = await make_pool(minsize=4, maxsize=4, init_command="SET SESSION wait_timeout=1", **FAST)
    await asyncio.gather(*(query_once(pool, "SELECT SLEEP(0.05)") for _ in range(4)))
    await asyncio.sleep(2.5)

    ops = await _requests(pool)

    errors = [r for r in ops if isinstance(r, BaseException)]
    record_figure(request, "2-wait-timeout", "errors", len(errors), "errors")
    assert errors == []
    assert pool.stats()["closed_total"]["broken"] >= 1, "the server expired no connection: nothing was tested"
    assert_pool_accounted(pool)


async def _requests(pool: mp.Pool) -> list[object]:
    """Twenty concurrent requests, then twenty one after another."""
    results: list[object] = list(await asyncio.gather(*(query_once(pool) for _ in range(20)), return_exceptions=True))
    for _ in range(20):
        try:
            results.append(await query_once(pool))
        except Exception as exc:
            results.append(exc)
    return results


async def test_create_pool_against_an_unreachable_server_fails_with_pool_timeout_and_leaves_nothing_running(
    private_mysql_server: MySQLServer, request: pytest.FixtureRequest
) -> None:
    server = private_mysql_server
    server.kill()
    started = time.monotonic()
    # Longer than the maintenance interval (1 s): the pool's background work must not disturb the opening.
    with pytest.raises(mp.PoolTimeout, match="could not open") as failed:
        await mp.create_pool(dsn=server.dsn, minsize=1, open_timeout=2.5, connect_timeout=1.0)
    record_figure(request, "1-server-down-at-start", "create_pool_error_seconds", time.monotonic() - started, "s")
    assert server.password not in str(failed.value)
    await asyncio.sleep(0.2)
    assert [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("mysqlpool")] == []


async def test_server_paused_mid_query_ends_every_request_within_its_bounds_and_recovers(
    private_mysql_server: MySQLServer, request: pytest.FixtureRequest
) -> None:
    server = private_mysql_server
    async with mp.create_pool(dsn=server.dsn, minsize=5, maxsize=10, **FAST) as pool:
        load = Load(pool, WORKERS, DEADLINE, _sleep_query(0.05)).start()
        await asyncio.sleep(0.5)
        paused = time.monotonic()
        server.pause()
        try:
            await asyncio.sleep(2.0)
        finally:
            server.resume()
        resumed = time.monotonic()
        await asyncio.sleep(RECOVERY_BOUND + 1.0)
        ops = await load.stop()

        assert unclean(ops) == []
        during = [op for op in ops if op.ended >= paused and op.started < resumed]
        assert any(not op.ok for op in during), "the pause went unnoticed: the scenario did not test anything"
        assert failures_after(ops, resumed + RECOVERY_BOUND) == []
        recovery = recovery_seconds(ops, resumed)
        record_figure(request, "5-server-paused", "recovery_seconds", recovery, "s")
        record_figure(request, "5-server-paused", "worst_request_seconds", max(op.seconds for op in ops), "s")

        assert_pool_accounted(pool)
        await assert_every_connection_usable(pool)
