"""``run_transaction`` against the real server: a real deadlock is rerun and commits; what may have committed is not."""

from __future__ import annotations

import asyncio
from typing import Any

import aiomysql
import pymysql
import pytest
from fastapi import FastAPI

import fastapi_mysqlpool as mp
from fastapi_mysqlpool.testing import GaleraCluster, MySQLServer, lifespan_client
from tests._clusters import app_conn
from tests.conftest import PoolFactory, query


@pytest.fixture
def rows(admin: pymysql.connections.Connection, mysql_server: Any) -> str:
    table = f"`{mysql_server.db}`.retry_rows"
    query(admin, f"CREATE OR REPLACE TABLE {table} (id INT PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB")
    query(admin, f"INSERT INTO {table} VALUES (1, 0), (2, 0)")
    query(admin, f"CREATE OR REPLACE TABLE `{mysql_server.db}`.retry_ballast (n INT) ENGINE=InnoDB")
    return table


async def test_a_transaction_that_loses_a_real_deadlock_is_rerun_and_commits(
    make_pool: PoolFactory, mysql_dsn: str, rows: str, admin: pymysql.connections.Connection
) -> None:
    pool = await make_pool(minsize=2, maxsize=2)
    a_locked, b_waiting = asyncio.Event(), asyncio.Event()
    attempts = 0

    async def transfer(conn: aiomysql.Connection) -> int:
        nonlocal attempts
        attempts += 1
        async with conn.cursor() as cur:
            await cur.execute(f"UPDATE {rows} SET v = v + 1 WHERE id = 1")
            a_locked.set()
            await b_waiting.wait()
            await asyncio.sleep(0.3)  # B is now blocked on row 1, which we hold
            await cur.execute(f"UPDATE {rows} SET v = v + 1 WHERE id = 2")  # the cycle closes here
        return attempts

    async def other() -> None:
        # B writes more (the ballast), so InnoDB rolls back the lighter transaction: the one under test.
        async with pool.acquire() as conn, conn.cursor() as cur:
            await a_locked.wait()
            await conn.begin()
            await cur.executemany(
                f"INSERT INTO {rows.replace('retry_rows', 'retry_ballast')} VALUES (%s)", [(i,) for i in range(200)]
            )
            await cur.execute(f"UPDATE {rows} SET v = v + 10 WHERE id = 2")
            b_waiting.set()
            await cur.execute(f"UPDATE {rows} SET v = v + 10 WHERE id = 1")
            await conn.commit()

    result, _ = await asyncio.gather(pool.run_transaction(transfer, retries=3), other())
    assert result == 2 and attempts == 2  # deadlocked once, rerun once, committed
    assert query(admin, f"SELECT id, v FROM {rows} ORDER BY id") == [(1, 11), (2, 11)]
    assert pool.stats()["closed_total"]["broken"] == 0


async def test_a_lock_wait_timeout_that_rolled_back_only_the_statement_is_not_rerun(
    make_pool: PoolFactory, rows: str
) -> None:
    pool = await make_pool(minsize=2, maxsize=2)
    attempts = 0
    async with pool.acquire() as blocker, blocker.cursor() as cur:
        await blocker.begin()
        await cur.execute(f"SELECT * FROM {rows} WHERE id = 1 FOR UPDATE")

        async def update(conn: aiomysql.Connection) -> None:
            nonlocal attempts
            attempts += 1
            async with conn.cursor() as c:
                await c.execute("SET SESSION innodb_lock_wait_timeout = 1")
                await c.execute(f"UPDATE {rows} SET v = 5 WHERE id = 1")

        with pytest.raises(pymysql.err.OperationalError) as caught:
            await pool.run_transaction(update, retries=3)
        await blocker.rollback()
    assert caught.value.args[0] == 1205 and attempts == 1  # innodb_rollback_on_timeout is OFF by default


async def test_other_errors_are_not_retried_and_roll_back(make_pool: PoolFactory, rows: str) -> None:
    pool = await make_pool(minsize=1, maxsize=1)
    attempts = 0

    async def broken(conn: aiomysql.Connection) -> None:
        nonlocal attempts
        attempts += 1
        async with conn.cursor() as cur:
            await cur.execute(f"UPDATE {rows} SET v = 99 WHERE id = 1")
            await cur.execute(f"INSERT INTO {rows} VALUES (1, 1)")  # duplicate key

    with pytest.raises(pymysql.err.IntegrityError):
        await pool.run_transaction(broken)
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(f"SELECT v FROM {rows} WHERE id = 1")
        assert await cur.fetchone() == (0,)  # rolled back
    assert attempts == 1


async def test_a_connection_lost_during_commit_is_reported_not_rerun(
    make_pool: PoolFactory, rows: str, admin: pymysql.connections.Connection
) -> None:
    pool = await make_pool(minsize=1, maxsize=1)
    attempts = 0

    async def then_lose_the_connection(conn: aiomysql.Connection) -> None:
        nonlocal attempts
        attempts += 1
        async with conn.cursor() as cur:
            await cur.execute(f"UPDATE {rows} SET v = 7 WHERE id = 1")
        query(admin, f"KILL CONNECTION {conn.thread_id()}")  # the COMMIT that follows meets a dead connection

    with pytest.raises(mp.CommitOutcomeUnknown, match="may or may not have been committed") as caught:
        await pool.run_transaction(then_lose_the_connection)
    assert attempts == 1 and isinstance(caught.value.__cause__, pymysql.err.OperationalError)
    assert pool.stats()["closed_total"]["broken"] == 1


async def test_bad_arguments_are_rejected(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=0)
    with pytest.raises(ValueError, match="invalid retries: -1"):
        await pool.run_transaction(lambda conn: conn.commit(), retries=-1)


async def test_the_fastapi_dependency_runs_a_transaction_on_the_apps_pool(mysql_dsn: str, rows: str) -> None:
    app = FastAPI(lifespan=mp.mysql_lifespan(mysql_dsn, maxsize=2))

    @app.post("/bump")
    async def bump(run: mp.RunTransactionDep) -> dict[str, int]:
        async def fn(conn: aiomysql.Connection) -> int:
            async with conn.cursor() as cur:
                await cur.execute(f"UPDATE {rows} SET v = v + 1 WHERE id = 2")
                await cur.execute(f"SELECT v FROM {rows} WHERE id = 2")
                (value,) = await cur.fetchone()
            return int(value)

        return {"v": await run(fn, retries=2)}

    async with lifespan_client(app) as client:
        assert (await client.post("/bump")).json() == {"v": 1}
        assert (await client.post("/bump")).json() == {"v": 2}


async def test_a_lock_wait_timeout_is_rerun_where_the_server_rolled_back_the_whole_transaction() -> None:
    with MySQLServer(server_args=["--innodb-rollback-on-timeout", "--innodb-lock-wait-timeout=1"]) as server:
        admin = pymysql.connect(**server.root_connect_kwargs(), autocommit=True)
        try:
            assert query(admin, "SELECT @@innodb_rollback_on_timeout") == [(1,)]
            query(admin, f"CREATE TABLE `{server.db}`.r (id INT PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB")
            query(admin, f"CREATE TABLE `{server.db}`.log (attempt INT PRIMARY KEY) ENGINE=InnoDB")
            query(admin, f"INSERT INTO `{server.db}`.r VALUES (1, 0)")
            async with mp.create_pool(dsn=server.dsn, minsize=2, maxsize=2) as pool:
                attempts = 0
                async with pool.acquire() as blocker, blocker.cursor() as hold:
                    await blocker.begin()
                    await hold.execute("SELECT * FROM r WHERE id = 1 FOR UPDATE")

                    async def update(conn: aiomysql.Connection) -> int:
                        nonlocal attempts
                        attempts += 1
                        async with conn.cursor() as cur:
                            await cur.execute("INSERT INTO log VALUES (%s)", (attempts,))  # before the wait
                            if attempts == 2:
                                await blocker.rollback()  # the blocker lets go before the rerun waits
                            await cur.execute("UPDATE r SET v = v + 1 WHERE id = 1")  # 1205 after 1 s, once
                        return attempts

                    assert await pool.run_transaction(update, retries=2) == 2
            # The first attempt's INSERT went with its whole transaction; the rerun committed once.
            assert query(admin, f"SELECT attempt FROM `{server.db}`.log") == [(2,)]
            assert query(admin, f"SELECT v FROM `{server.db}`.r") == [(1,)]
        finally:
            admin.close()


async def test_a_galera_certification_conflict_is_rerun_and_commits(galera_cluster: GaleraCluster) -> None:
    cluster = galera_cluster
    cluster.query(0, "CREATE OR REPLACE TABLE app.retry_galera (id INT PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB")
    cluster.query(0, "INSERT INTO app.retry_galera VALUES (1, 0)")
    cluster.wait_synced()

    def conflicts() -> int:
        rows = cluster.query(
            0,
            "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_cert_failures', 'wsrep_local_bf_aborts')",
        )
        return sum(int(row["Value"]) for row in rows)

    before = conflicts()
    attempts = 0
    async with mp.create_pool(dsn=cluster.nodes[0].dsn, minsize=1, maxsize=1) as pool:

        async def bump(conn: aiomysql.Connection) -> int:
            nonlocal attempts
            attempts += 1
            async with conn.cursor() as cur:
                await cur.execute("UPDATE retry_galera SET v = v + 1 WHERE id = 1")
                if attempts == 1:
                    # Another node writes the same row and commits first: this node's transaction loses
                    # certification (or is aborted by the replicated write) and the server answers 1213.
                    async with app_conn(cluster.nodes[1]) as other, other.cursor() as writer:
                        await writer.execute("UPDATE app.retry_galera SET v = v + 10 WHERE id = 1")
                    await asyncio.sleep(0.2)
                await cur.execute("SELECT v FROM retry_galera WHERE id = 1")
                (value,) = await cur.fetchone()
            return int(value)

        assert await pool.run_transaction(bump, retries=3) == 11
    assert attempts == 2 and conflicts() > before  # the server counted the conflict as a wsrep one
    cluster.wait_synced()
    assert [cluster.query(i, "SELECT v FROM app.retry_galera")[0]["v"] for i in range(3)] == [11, 11, 11]
