"""Reliability, network faults: silently dead connections and a blackholed database, through a fault proxy.

Scenarios 3 and 4 of docs/reliability.md, at the pool level.
"""

from __future__ import annotations

import asyncio
import time

import pytest

import fastapi_mysqlpool as mp
from fastapi_mysqlpool.testing import ExternalServer, MySQLServer
from tests import _drivers
from tests._proxy import FaultProxy
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
    wait_until,
)
from tests.conftest import proxied_dsn

QUERY_TIMEOUT = 1.0
DEADLINE = FAST["acquire_timeout"] + QUERY_TIMEOUT + 1.0
# After the network returns, a connect already sent into the void must first time out (connect_timeout), then the
# next attempt waits out its backoff (at most backoff_max).
BLACKHOLE_RECOVERY_BOUND = FAST["connect_timeout"] + FAST["backoff_max"] + 1.0

pytestmark = [pytest.mark.fault, pytest.mark.usefixtures("driver")]


async def _timed(pool: mp.Pool) -> float:
    started = time.monotonic()
    await query_once(pool, query_timeout=QUERY_TIMEOUT)
    return time.monotonic() - started


async def test_half_open_idle_connections_are_replaced_within_the_acquire_timeout(
    mysql_server: MySQLServer | ExternalServer, proxy: FaultProxy, request: pytest.FixtureRequest
) -> None:
    async with mp.create_pool(dsn=proxied_dsn(mysql_server, proxy), minsize=4, maxsize=4, **FAST) as pool:
        await asyncio.gather(*(query_once(pool, "SELECT SLEEP(0.05)") for _ in range(4)))
        # Past the pre-ping window, so the pool checks each connection before handing it out.
        await asyncio.sleep(pool.options.pre_ping_window + 0.2)
        proxy.half_open_existing()

        latencies = await asyncio.gather(*(_timed(pool) for _ in range(20)))

        record_figure(request, "3-half-open", "worst_request_seconds", max(latencies), "s")
        assert len(latencies) == 20
        # The other dead connections are found by concurrent background pings, which may outlast the requests.
        await wait_until(lambda: pool.stats()["closed_total"]["broken"] == 4, 5.0, "the 4 dead connections to go")
        assert_pool_accounted(pool)
        await assert_every_connection_usable(pool)


async def test_connection_that_goes_silent_mid_use_is_bounded_by_the_caller_and_discarded(
    mysql_server: MySQLServer | ExternalServer, proxy: FaultProxy, request: pytest.FixtureRequest
) -> None:
    # aiomysql has no query timeout: a query on a connection whose peer went silent waits for ever. The caller's
    # bound ends it; the pool must then discard the connection, never hand it out again.
    async with mp.create_pool(dsn=proxied_dsn(mysql_server, proxy), minsize=1, maxsize=1, **FAST) as pool:
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute("SELECT 1")
            proxy.half_open_existing()
            started = time.monotonic()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(cur.execute("SELECT 2"), 0.5)
            bounded = time.monotonic() - started
        record_figure(request, "3-half-open", "in_use_query_bounded_seconds", bounded, "s")
        assert pool.stats()["closed_total"]["broken"] == 1
        assert await query_once(pool, "SELECT 3") == [(3,)]
        assert_pool_accounted(pool)


async def test_blackholed_database_ends_every_wait_within_its_bound_and_recovers(
    mysql_server: MySQLServer | ExternalServer, proxy: FaultProxy, request: pytest.FixtureRequest
) -> None:
    async with mp.create_pool(dsn=proxied_dsn(mysql_server, proxy), minsize=2, maxsize=4, **FAST) as pool:
        load = Load(pool, 10, DEADLINE).start()
        await asyncio.sleep(0.3)
        holed = time.monotonic()
        proxy.blackhole()
        # Longer than the acquire timeout, so that waiting requests meet their deadline.
        await asyncio.sleep(FAST["acquire_timeout"] + 1.0)
        proxy.heal()
        healed = time.monotonic()
        await asyncio.sleep(BLACKHOLE_RECOVERY_BOUND + 1.0)
        ops = await load.stop()

        assert unclean(ops) == []
        during = [op for op in ops if op.started >= holed and op.ended <= healed]
        assert {op.outcome for op in during} <= {"PoolTimeout", "QueryTimeout", "OperationalError"}
        assert "PoolTimeout" in {op.outcome for op in during}
        assert failures_after(ops, healed + BLACKHOLE_RECOVERY_BOUND) == []
        record_figure(request, "4-blackhole", "worst_request_seconds", max(op.seconds for op in ops), "s")
        record_figure(request, "4-blackhole", "recovery_seconds", recovery_seconds(ops, healed), "s")
        assert "timed out" in (pool.stats()["last_error"] or "")

        assert_pool_accounted(pool)
        await assert_every_connection_usable(pool)


async def test_blackholed_database_with_fail_fast_fails_waiters_with_the_connect_error(
    mysql_server: MySQLServer | ExternalServer, proxy: FaultProxy, request: pytest.FixtureRequest
) -> None:
    options = {**FAST, "acquire_timeout": 5.0}
    async with mp.create_pool(
        dsn=proxied_dsn(mysql_server, proxy), minsize=1, maxsize=2, fail_fast=True, **options
    ) as pool:
        proxy.blackhole()
        await pool.clear()
        started = time.monotonic()
        with pytest.raises(_drivers.db_errors.OperationalError, match="timed out"):
            await query_once(pool)
        record_figure(request, "4-blackhole", "fail_fast_error_seconds", time.monotonic() - started, "s")
        proxy.heal()
        healed = time.monotonic()
        # fail_fast keeps failing waiters until a connect succeeds again; then requests pass.
        while True:
            try:
                assert await query_once(pool, "SELECT 5") == [(5,)]
                break
            except _drivers.db_errors.OperationalError:
                assert time.monotonic() - healed < BLACKHOLE_RECOVERY_BOUND
                await asyncio.sleep(0.05)
        record_figure(request, "4-blackhole", "fail_fast_recovery_seconds", time.monotonic() - healed, "s")
        assert_pool_accounted(pool)
