"""Server-side statement timeouts: the server stops the statement (seen in PROCESSLIST) and the connection lives."""

from __future__ import annotations

import asyncio
import time

import pymysql
import pytest

import fastapi_mysqlpool as mp
from fastapi_mysqlpool._statement import session_sql, with_limit
from tests.conftest import PoolFactory, query


def _running_sleeps(admin: pymysql.connections.Connection, thread_id: int) -> list[tuple[object, ...]]:
    return query(
        admin,
        "SELECT ID, TIME_MS, INFO FROM information_schema.PROCESSLIST WHERE ID = %s AND INFO LIKE %s",
        thread_id,
        "%SLEEP(%",
    )


async def _assert_stopped_on_server(
    pool: mp.Pool, admin: pymysql.connections.Connection, conn: object, sql: str
) -> float:
    """Run ``sql`` (a long SLEEP) on ``conn``; it must fail with the server's timeout while the server shows it
    running, be gone from PROCESSLIST afterwards, and leave the connection usable. Returns seconds taken."""
    thread_id = conn.thread_id()  # type: ignore[attr-defined]
    async with conn.cursor() as cur:  # type: ignore[attr-defined]
        started = time.monotonic()
        task = asyncio.ensure_future(cur.execute(sql))
        await asyncio.sleep(0.1)
        assert _running_sleeps(admin, thread_id), "the statement should be running on the server"
        with pytest.raises(pymysql.err.OperationalError) as caught:
            await task
        took = time.monotonic() - started
        assert mp.is_statement_timeout(caught.value), caught.value
        assert _running_sleeps(admin, thread_id) == []  # stopped on the server, not only abandoned by us
        await cur.execute("SELECT 1")
        assert await cur.fetchone() == (1,)
    return took


async def test_pool_wide_max_statement_time_stops_the_statement_on_the_server_and_keeps_the_connection(
    make_pool: PoolFactory, admin: pymysql.connections.Connection
) -> None:
    pool = await make_pool(minsize=1, maxsize=1, max_statement_time=0.5)
    async with pool.acquire() as conn:
        took = await _assert_stopped_on_server(pool, admin, conn, "SELECT SLEEP(10)")
        thread_id = conn.thread_id()
    assert took < 5  # generous: the server stops it at 0.5 s
    async with pool.acquire() as conn:
        assert conn.thread_id() == thread_id  # the pool kept it
    stats = pool.stats()
    assert stats["closed_total"]["broken"] == 0 and stats["created_total"] == 1


async def test_per_acquire_override_applies_until_release_and_does_not_leak(
    make_pool: PoolFactory, admin: pymysql.connections.Connection
) -> None:
    pool = await make_pool(minsize=1, maxsize=1)  # no pool-wide limit
    async with pool.acquire(max_statement_time=0.3) as conn:
        await _assert_stopped_on_server(pool, admin, conn, "SELECT SLEEP(10)")
        thread_id = conn.thread_id()
    async with pool.acquire() as conn, conn.cursor() as cur:
        assert conn.thread_id() == thread_id
        await cur.execute("SELECT SLEEP(0.6)")  # the next acquirer has no limit
        assert await cur.fetchone() == (0,)
        await cur.execute("SELECT @@max_statement_time")
        assert float((await cur.fetchone())[0]) == 0.0


async def test_per_acquire_zero_lifts_the_pool_wide_limit(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1, max_statement_time=0.2)
    conn = await pool.acquire(max_statement_time=0)
    try:
        async with conn.cursor() as cur:
            await cur.execute("SELECT SLEEP(0.4)")
            assert await cur.fetchone() == (0,)
    finally:
        await pool.release(conn)
    async with pool.acquire() as conn, conn.cursor() as cur:
        with pytest.raises(pymysql.err.OperationalError, match="max_statement_time"):
            await cur.execute("SELECT SLEEP(0.4)")


async def test_the_session_limit_survives_reset_connection(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1, max_statement_time=0.25, reset_connection=True)
    for _ in range(2):
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute("SELECT @@max_statement_time")
            assert float((await cur.fetchone())[0]) == 0.25


async def test_invalid_statement_times_are_rejected(make_pool: PoolFactory, mysql_dsn: str) -> None:
    with pytest.raises(ValueError, match="invalid value for pool option 'max_statement_time'"):
        mp.create_pool(dsn=mysql_dsn, max_statement_time=-1)
    pool = await make_pool(minsize=0)
    with pytest.raises(ValueError, match="invalid max_statement_time: 'fast'"):
        pool.acquire(max_statement_time="fast")  # type: ignore[arg-type]


def test_the_statement_text_each_server_needs() -> None:
    # Only MariaDB runs in the test suite; MySQL's forms are checked here as text.
    assert session_sql(1.5, mariadb=True) == "SET SESSION max_statement_time=1.500000"
    assert session_sql(1.5, mariadb=False) == "SET SESSION max_execution_time=1500"
    assert with_limit(b"SELECT 1", 0.25, mariadb=True) == b"SET STATEMENT max_statement_time=0.250000 FOR SELECT 1"
    assert with_limit(b"  select * from t", 2, mariadb=False) == b"  select /*+ MAX_EXECUTION_TIME(2000) */ * from t"
    assert with_limit(b"UPDATE t SET a = 1", 2, mariadb=False) == b"UPDATE t SET a = 1"  # MySQL limits SELECT only


async def test_fastapi_answers_a_stopped_statement_with_504(mysql_dsn: str) -> None:
    from fastapi import FastAPI

    from fastapi_mysqlpool.testing import lifespan_client

    app = FastAPI(lifespan=mp.mysql_lifespan(mysql_dsn, max_statement_time=0.3))
    mp.install_error_handlers(app)

    @app.get("/slow")
    async def slow(cur: mp.CursorDep) -> dict[str, str]:
        await cur.execute("SELECT SLEEP(10)")
        return {"detail": "unreachable"}

    @app.get("/fast")
    async def fast(cur: mp.CursorDep) -> dict[str, int]:
        await cur.execute("SELECT 1")
        (one,) = await cur.fetchone()
        return {"one": one}

    async with lifespan_client(app) as client:
        answer = await client.get("/slow")
        assert answer.status_code == 504
        assert answer.json() == {"detail": "The database statement took too long and was stopped."}
        assert (await client.get("/fast")).json() == {"one": 1}


def _resets(admin: pymysql.connections.Connection) -> int:
    # MariaDB has no Com_reset_connection: it counts COM_RESET_CONNECTION (and COM_PING, off in these pools)
    # in Com_admin_commands.
    ((_, value),) = query(admin, "SHOW GLOBAL STATUS LIKE 'Com_admin_commands'")
    return int(value)


async def test_a_per_acquire_limit_costs_no_reset_at_release(
    make_pool: PoolFactory, admin: pymysql.connections.Connection
) -> None:
    pool = await make_pool(minsize=1, maxsize=1, pre_ping=False)
    before = _resets(admin)
    for _ in range(10):
        async with pool.acquire(max_statement_time=5) as conn, conn.cursor() as cur:
            await cur.execute("SELECT @@max_statement_time")  # answered with an EOF packet
            assert float((await cur.fetchone())[0]) == 5.0
            await cur.execute("DO 1")  # answered with an OK packet naming max_statement_time
    # The server flagged every statement as a session change; none of them was, and none cost a reset.
    assert _resets(admin) == before
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT @@max_statement_time")
        assert float((await cur.fetchone())[0]) == 0.0


@pytest.mark.parametrize("per_acquire", [None, 5.0])
async def test_a_session_max_statement_time_set_by_the_user_is_still_reset(
    make_pool: PoolFactory, admin: pymysql.connections.Connection, per_acquire: float | None
) -> None:
    pool = await make_pool(minsize=1, maxsize=1, pre_ping=False)
    before = _resets(admin)
    async with pool.acquire(max_statement_time=per_acquire) as conn, conn.cursor() as cur:
        # The same value the limit gives, so the server's report is the same as for the limit alone.
        await cur.execute("SET SESSION max_statement_time = 5")
        thread_id = conn.thread_id()
    assert _resets(admin) == before + 1
    async with pool.acquire() as conn, conn.cursor() as cur:
        assert conn.thread_id() == thread_id
        await cur.execute("SELECT @@max_statement_time")
        assert float((await cur.fetchone())[0]) == 0.0


@pytest.mark.parametrize(
    ("change", "probe", "fresh"),
    [
        ("SET @marker = 'left behind'", "SELECT @marker", None),
        # The second CREATE fails (1050) if the first one's table reached the next acquirer.
        ("CREATE TEMPORARY TABLE left_behind (a INT)", "CREATE TEMPORARY TABLE left_behind (a INT)", None),
        ("SELECT @marker := 'left behind'", "SELECT @marker", None),  # a change the server does not report
    ],
)
async def test_what_a_statement_under_a_per_acquire_limit_changes_is_still_reset(
    make_pool: PoolFactory, change: str, probe: str, fresh: object
) -> None:
    pool = await make_pool(minsize=1, maxsize=1)
    async with pool.acquire(max_statement_time=5) as conn, conn.cursor() as cur:
        await cur.execute(change)
        thread_id = conn.thread_id()
    async with pool.acquire() as conn, conn.cursor() as cur:
        assert conn.thread_id() == thread_id
        await cur.execute(probe)
        row = await cur.fetchone()
        assert (row[0] if row else None) == fresh


async def test_a_limit_below_the_servers_resolution_is_rounded_up_not_to_unlimited(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1)
    async with pool.acquire(max_statement_time=1e-9) as conn, conn.cursor() as cur:
        # Written as 0 the limit would be none at all, and the SLEEP would run its full second and answer 0.
        # Stopped at 1 µs, MariaDB answers 1969, or (when the timer fires before the statement has really
        # begun) lets SLEEP answer 1, "interrupted".
        answer: object
        try:
            await cur.execute("SELECT SLEEP(1)")
            answer = await cur.fetchone()
        except pymysql.err.OperationalError as exc:
            answer = "stopped" if mp.is_statement_timeout(exc) else exc
        assert answer in ("stopped", (1,))
    assert session_sql(4e-7, mariadb=True) == "SET SESSION max_statement_time=0.000001"
    assert session_sql(1e-5, mariadb=False) == "SET SESSION max_execution_time=1"
    assert with_limit(b"SELECT 1", 1e-9, mariadb=False) == b"SELECT /*+ MAX_EXECUTION_TIME(1) */ 1"
    assert session_sql(0, mariadb=True) == "SET SESSION max_statement_time=0.000000"
