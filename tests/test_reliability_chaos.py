"""Reliability under chaos: random cancellation, overload, and money transfers while connections are killed.

Scenarios 6, 7 and 8 of docs/reliability.md, at the pool level, on the session's shared server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

import fastapi_mysqlpool as mp
from fastapi_mysqlpool.testing import ExternalServer, MySQLServer
from tests import _drivers
from tests._reliability import (
    FAST,
    Bank,
    KillCount,
    assert_every_connection_usable,
    assert_pool_accounted,
    kill_connections,
    percentile,
    query_once,
    record_figure,
    wait_until,
)
from tests.conftest import PoolFactory, query

pytestmark = pytest.mark.usefixtures("driver")


@pytest.fixture
def table_prefix(admin: pymysql.connections.Connection) -> Iterator[str]:
    """A unique prefix for this test's tables, dropped afterwards."""
    prefix = f"rel_{os.urandom(4).hex()}"
    yield prefix
    for (name,) in query(
        admin, "SELECT table_name FROM information_schema.tables WHERE table_name LIKE %s", prefix + "%"
    ):
        query(admin, f"DROP TABLE app.`{name}`")


# --------------------------------------------------------------------------- 6: cancellation


async def test_cancellation_at_random_points_under_load_loses_and_poisons_no_connection(
    make_pool: PoolFactory, table_prefix: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    pool = await make_pool(minsize=2, maxsize=5, **FAST)
    table = f"{table_prefix}_cancel"
    await query_once(pool, f"CREATE TABLE {table} (id INT PRIMARY KEY) ENGINE=InnoDB")
    rng = random.Random(6)
    commit_started: set[int] = set()
    counts = {"completed": 0, "cancelled": 0}
    next_id = iter(range(1, 10**9))

    async def transaction(conn: Any) -> None:
        row = next(next_id)
        await conn.begin()
        async with conn.cursor() as cur:
            await cur.execute(f"INSERT INTO {table} VALUES (%s)", (row,))
            await cur.execute("SELECT SLEEP(0.002)")
        commit_started.add(row)
        await conn.commit()

    async def unread_result(conn: Any) -> None:
        async with conn.cursor(_drivers.unbuffered_cursor()) as cur:
            await cur.execute("SELECT seq FROM seq_1_to_20000")
            await cur.fetchmany(10)

    async def sleep_query(conn: Any) -> None:
        async with conn.cursor() as cur:
            await cur.execute("SELECT SLEEP(0.003)")
            await cur.fetchall()

    async def one() -> None:
        async with pool.acquire() as conn:
            await rng.choice((transaction, unread_result, sleep_query))(conn)

    async def worker(until: float) -> None:
        while time.monotonic() < until:
            try:
                # A random deadline cancels the request while it waits, connects, queries, commits or releases.
                await asyncio.wait_for(one(), rng.uniform(0.0, 0.03))
            except asyncio.TimeoutError:
                counts["cancelled"] += 1
            else:
                counts["completed"] += 1

    caplog.set_level(logging.INFO, logger="fastapi_mysqlpool")
    until = time.monotonic() + 3.0
    await asyncio.gather(*(worker(until) for _ in range(30)))

    # A reset started by a cancelled release finishes in its own task; let it land.
    await wait_until(lambda: pool.stats()["in_use"] == 0, 5.0, "every connection to come back")
    record_figure(request, "6-cancellation", "cancelled_requests", counts["cancelled"], "requests")
    record_figure(request, "6-cancellation", "connections_lost", pool.stats()["in_use"], "connections")
    assert counts["cancelled"] > 100, counts
    assert counts["completed"] > 10, counts
    assert_pool_accounted(pool)
    await assert_every_connection_usable(pool)
    # A connection returned mid-transaction and reused without a rollback would commit its rows with the next
    # user's commit: every row present must belong to a transaction that reached its own COMMIT.
    committed = {row for (row,) in await query_once(pool, f"SELECT id FROM {table}")}
    assert committed <= commit_started
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert failures == []


# --------------------------------------------------------------------------- 7: overload


async def test_overload_rejects_the_excess_at_once_and_serves_the_rest(
    make_pool: PoolFactory, request: pytest.FixtureRequest
) -> None:
    pool = await make_pool(minsize=10, maxsize=10, max_waiting=50, acquire_timeout=10.0)

    async def one() -> tuple[str, float]:
        started = time.monotonic()
        try:
            await query_once(pool, "SELECT SLEEP(0.01)", query_timeout=10.0)
        except mp.TooManyWaiters:
            return "rejected", time.monotonic() - started
        return "served", time.monotonic() - started

    results = await asyncio.gather(*(one() for _ in range(1000)))

    served = [seconds for outcome, seconds in results if outcome == "served"]
    rejected = [seconds for outcome, seconds in results if outcome == "rejected"]
    record_figure(request, "7-overload", "served", len(served), "requests")
    record_figure(request, "7-overload", "rejected", len(rejected), "requests")
    record_figure(request, "7-overload", "served_p99_seconds", percentile(served, 0.99), "s")
    record_figure(request, "7-overload", "rejected_max_seconds", max(rejected), "s")
    assert len(served) + len(rejected) == 1000
    assert len(served) >= pool.maxsize + 50
    stats = pool.stats()
    # Rejected without waiting: no request timed out in the queue, each excess one was turned away on arrival.
    assert stats["rejected_total"] == len(rejected)
    assert stats["timeouts_total"] == 0
    assert_pool_accounted(pool)
    await assert_every_connection_usable(pool)


# --------------------------------------------------------------------------- 8: data integrity


@pytest.fixture
async def bank_pool(make_pool: PoolFactory) -> mp.Pool:
    return await make_pool(minsize=4, maxsize=8, **FAST)


async def test_money_is_conserved_and_the_ledger_is_exact_while_connections_are_killed(
    bank_pool: mp.Pool,
    table_prefix: str,
    mysql_server: MySQLServer | ExternalServer,
    admin: pymysql.connections.Connection,
    request: pytest.FixtureRequest,
) -> None:
    bank = Bank(table_prefix)
    await bank.open(bank_pool)
    rng = random.Random(8)
    stop = asyncio.Event()
    killed = KillCount()
    killing = asyncio.create_task(kill_connections(admin, mysql_server.user, stop, seed=8, killed=killed))

    async def client(first: int) -> None:
        # 60 transfers each, and more (up to 600) until enough connections have been killed under them.
        for transfer in range(first, first + 600):
            if transfer >= first + 60 and killed.value >= 30:
                break
            await bank.transfer(bank_pool, transfer, rng)

    await asyncio.gather(*(client(c * 1000) for c in range(16)))
    stop.set()
    kills = await killing

    record_figure(request, "8-integrity", "kills", kills, "connections")
    record_figure(request, "8-integrity", "committed", len(bank.committed), "transfers")
    record_figure(request, "8-integrity", "failed_before_commit", len(bank.failed_before_commit), "transfers")
    record_figure(request, "8-integrity", "ambiguous_commits", len(bank.ambiguous), "transfers")
    assert kills > 20
    assert bank.failed_before_commit, "no transfer was interrupted: the scenario tested nothing"
    assert set(bank.errors) <= {"OperationalError", "PoolTimeout"}, bank.errors
    bank.assert_books_balance(admin)
    assert_pool_accounted(bank_pool)
    await assert_every_connection_usable(bank_pool)
