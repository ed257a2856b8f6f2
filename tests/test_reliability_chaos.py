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

import aiomysql
import pymysql
import pytest

import fastapi_mysqlpool as mp
from tests._reliability import (
    FAST,
    assert_every_connection_usable,
    assert_pool_accounted,
    classify,
    percentile,
    query_once,
    record_figure,
    wait_until,
)
from tests.conftest import PoolFactory, query

ACCOUNTS = 10
OPENING_BALANCE = 1_000


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

    async def transaction(conn: aiomysql.Connection) -> None:
        row = next(next_id)
        await conn.begin()
        async with conn.cursor() as cur:
            await cur.execute(f"INSERT INTO {table} VALUES (%s)", (row,))
            await cur.execute("SELECT SLEEP(0.002)")
        commit_started.add(row)
        await conn.commit()

    async def unread_result(conn: aiomysql.Connection) -> None:
        async with conn.cursor(aiomysql.SSCursor) as cur:
            await cur.execute("SELECT seq FROM seq_1_to_20000")
            await cur.fetchmany(10)

    async def sleep_query(conn: aiomysql.Connection) -> None:
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


class _Bank:
    """Concurrent transfers between accounts; each transfer also writes its id to a ledger, in one transaction."""

    def __init__(self, pool: mp.Pool, prefix: str) -> None:
        self.pool = pool
        self.accounts = f"{prefix}_accounts"
        self.ledger = f"{prefix}_ledger"
        self.committed: set[int] = set()
        self.failed_before_commit: set[int] = set()
        self.ambiguous: set[int] = set()  # the commit was sent, its answer lost: either outcome is legitimate
        self.errors: dict[str, int] = {}
        self.thread_ids: set[int] = set()

    async def open(self) -> None:
        await query_once(self.pool, f"CREATE TABLE {self.accounts} (id INT PRIMARY KEY, balance BIGINT NOT NULL)")
        await query_once(
            self.pool,
            f"CREATE TABLE {self.ledger} (transfer INT PRIMARY KEY, src INT NOT NULL, dst INT NOT NULL, amount INT)",
        )
        rows = ", ".join(f"({i}, {OPENING_BALANCE})" for i in range(ACCOUNTS))
        async with self.pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(f"INSERT INTO {self.accounts} VALUES {rows}")
            await conn.commit()

    async def transfer(self, transfer: int, rng: random.Random) -> None:
        src, dst = rng.sample(range(ACCOUNTS), 2)
        amount = rng.randint(1, 50)
        commit_sent = False
        try:
            async with self.pool.acquire() as conn:
                self.thread_ids.add(conn.thread_id())
                await conn.begin()
                async with conn.cursor() as cur:
                    # Lock the accounts in id order, so that concurrent transfers never deadlock.
                    for account, delta in sorted([(src, -amount), (dst, amount)]):
                        await cur.execute(
                            f"UPDATE {self.accounts} SET balance = balance + %s WHERE id = %s", (delta, account)
                        )
                    await cur.execute(
                        f"INSERT INTO {self.ledger} VALUES (%s, %s, %s, %s)", (transfer, src, dst, amount)
                    )
                commit_sent = True
                await conn.commit()
        except Exception as exc:
            kind = classify(exc)
            self.errors[kind] = self.errors.get(kind, 0) + 1
            (self.ambiguous if commit_sent else self.failed_before_commit).add(transfer)
        else:
            self.committed.add(transfer)


@pytest.fixture
async def bank(make_pool: PoolFactory, table_prefix: str) -> _Bank:
    pool = await make_pool(minsize=4, maxsize=8, **FAST)
    bank = _Bank(pool, table_prefix)
    await bank.open()
    return bank


async def test_money_is_conserved_and_the_ledger_is_exact_while_connections_are_killed(
    bank: _Bank, admin: pymysql.connections.Connection, request: pytest.FixtureRequest
) -> None:
    rng = random.Random(8)
    kills = 0
    stop = asyncio.Event()

    async def killer() -> None:
        nonlocal kills
        while not stop.is_set():
            await asyncio.sleep(rng.uniform(0.005, 0.04))
            if bank.thread_ids:
                victim = rng.choice(sorted(bank.thread_ids))
                try:
                    await asyncio.to_thread(query, admin, f"KILL {victim}")
                    kills += 1
                except pymysql.err.OperationalError:  # 1094: that connection is already gone
                    bank.thread_ids.discard(victim)

    async def client(first: int, count: int) -> None:
        for transfer in range(first, first + count):
            await bank.transfer(transfer, rng)

    killing = asyncio.create_task(killer())
    await asyncio.gather(*(client(c * 1000, 60) for c in range(16)))
    stop.set()
    await killing

    balances = dict(query(admin, f"SELECT id, balance FROM app.{bank.accounts}"))
    ledger = query(admin, f"SELECT transfer, src, dst, amount FROM app.{bank.ledger}")
    in_ledger = {row[0] for row in ledger}
    record_figure(request, "8-integrity", "kills", kills, "connections")
    record_figure(request, "8-integrity", "committed", len(bank.committed), "transfers")
    record_figure(request, "8-integrity", "failed_before_commit", len(bank.failed_before_commit), "transfers")
    record_figure(request, "8-integrity", "ambiguous_commits", len(bank.ambiguous), "transfers")
    assert kills > 20
    assert bank.failed_before_commit, "no transfer was interrupted: the scenario tested nothing"
    assert set(bank.errors) <= {"OperationalError", "PoolTimeout"}, bank.errors
    assert sum(balances.values()) == ACCOUNTS * OPENING_BALANCE
    assert bank.committed <= in_ledger
    assert not (bank.failed_before_commit & in_ledger)
    expected = dict.fromkeys(range(ACCOUNTS), OPENING_BALANCE)
    for _, src, dst, amount in ledger:
        expected[src] -= amount
        expected[dst] += amount
    assert balances == expected
    assert_pool_accounted(bank.pool)
    await assert_every_connection_usable(bank.pool)
