"""The pool's promises, against a real server: aiomysql compatibility, timeouts, FIFO, reset and discard."""

from __future__ import annotations

import asyncio
import gc
import importlib
import inspect
import json
import logging
import uuid
from typing import Any

import aiomysql
import pymysql
import pytest

import fastapi_mysqlpool as mp
from fastapi_mysqlpool._aiomysql import Connection
from fastapi_mysqlpool.testing import ExternalServer, MySQLServer
from tests import _drivers
from tests._drivers import db_errors
from tests._proxy import FaultProxy
from tests.conftest import PoolFactory, proxied_dsn, query

pytestmark = pytest.mark.usefixtures("driver")


async def fetch(conn: aiomysql.Connection, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    async with conn.cursor() as cur:
        await cur.execute(sql, args or None)
        return list(await cur.fetchall())


async def conn_id(conn: aiomysql.Connection) -> int:
    return int((await fetch(conn, "SELECT CONNECTION_ID()"))[0][0])


def unaccounted(pool: mp.Pool) -> int:
    """The conservation law of the counters: every connection the pool counted as created and not as
    closed is one it holds (idle, in use, being checked or reset), apart from those still opening.
    Nonzero when a connection was lost, or counted twice, or closed without being counted."""
    stats = pool.stats()
    alive = stats["created_total"] - sum(stats["closed_total"].values())
    return alive - (stats["size"] - stats["opening"])


def assert_settled(pool: mp.Pool) -> None:
    stats = pool.stats()
    assert stats["in_use"] == 0, stats
    assert stats["waiting"] == 0, stats
    assert stats["size"] <= stats["maxsize"], stats
    assert unaccounted(pool) == 0, stats


# ---------------------------------------------------------------- aiomysql surface


async def test_seed_examples_run_unchanged(mysql_server: MySQLServer | ExternalServer) -> None:
    kw = mysql_server.connect_kwargs

    pool = await mp.create_pool(minsize=1, maxsize=5, **kw)
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT COUNT(*) FROM information_schema.tables")
        (count,) = await cur.fetchone()
        assert count > 0
    pool.close()
    await pool.wait_closed()
    assert pool.closed

    pool = await mp.create_pool(minsize=2, maxsize=10, pool_recycle=3600, echo=True, **kw)
    for _ in range(3):
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute("SELECT SLEEP(0)")
    assert (pool.size, pool.freesize) == (2, 2)
    pool.close()
    await pool.wait_closed()

    async def worker(pool: mp.Pool, worker_id: int) -> list[tuple[int, int]]:
        seen = []
        for i in range(3):
            async with pool.acquire() as conn, conn.cursor() as cur:
                await cur.execute("SELECT %s, %s", (worker_id, i))
                seen.append(await cur.fetchone())
                await asyncio.sleep(0.01)
        return seen

    pool = await mp.create_pool(minsize=2, maxsize=5, **kw)
    results = await asyncio.gather(*(worker(pool, i) for i in range(4)))
    assert results == [[(w, i) for i in range(3)] for w in range(4)]
    pool.close()
    await pool.wait_closed()

    async with mp.create_pool(minsize=1, maxsize=3, **kw) as pool, pool.acquire() as conn1, conn1.cursor() as cur:
        await cur.execute("SELECT 1")
    assert pool.closed

    pool = await mp.create_pool(minsize=1, maxsize=3, **kw)
    try:
        with pytest.raises(db_errors.ProgrammingError):
            async with pool.acquire() as conn, conn.cursor() as cur:
                await cur.execute("SELECT * FROM nonexistent_table")
        assert pool.freesize == 1  # returned to the pool after the error
    finally:
        pool.close()
        await pool.wait_closed()


async def test_acquire_is_awaitable_and_release_returns(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=2)
    conn = await pool.acquire()
    assert (pool.size, pool.freesize) == (1, 0)
    assert await fetch(conn, "SELECT 1") == [(1,)]
    await pool.release(conn)
    assert (pool.size, pool.freesize) == (1, 1)
    with pytest.raises(mp.PoolError, match="released twice"):
        await pool.release(conn)


async def test_dsn_and_keyword_arguments_combine(mysql_server: MySQLServer | ExternalServer) -> None:
    async with mp.create_pool(dsn=mysql_server.dsn + "?maxsize=4&acquire_timeout=3", minsize=2) as pool:
        assert (pool.minsize, pool.maxsize, pool.options.acquire_timeout) == (2, 4, 3.0)
        async with pool.acquire() as conn:
            assert await fetch(conn, "SELECT DATABASE()") == [(mysql_server.db,)]


async def test_echo_logs_sql(make_pool: PoolFactory, caplog: pytest.LogCaptureFixture) -> None:
    pool = await make_pool(echo=True)
    with caplog.at_level(logging.INFO, logger=_drivers.current()):
        async with pool.acquire() as conn:
            await fetch(conn, "SELECT 42")
    assert any("SELECT 42" in r.getMessage() for r in caplog.records)


async def test_stats_are_json_ready(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=3, name="main")
    async with pool.acquire():
        stats = pool.stats()
    json.dumps(stats)
    for key in ("name", "minsize", "maxsize", "size", "free", "in_use", "waiting", "acquired_total",
                "timeouts_total", "rejected_total", "created_total", "connect_errors_total", "closed_total",
                "acquire_wait_seconds", "use_seconds", "last_error"):  # fmt: skip
        assert key in stats
    assert stats["name"] == "main"
    assert stats["in_use"] == 1
    assert set(stats["closed_total"]) >= {"broken", "lifetime", "idle", "reset_failed", "terminated"}
    assert pool.stats()["use_seconds"]["count"] == 1


# ---------------------------------------------------------------- never hangs


async def test_queue_timeout_names_the_pool_and_loses_nothing(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1, acquire_timeout=0.2, name="tiny")
    async with pool.acquire():
        with pytest.raises(mp.PoolTimeout) as info:
            await pool.acquire()
        assert isinstance(info.value, TimeoutError)
        message = str(info.value)
        assert "tiny" in message and "size 1/1" in message and "1 in use" in message
        with pytest.raises(mp.PoolTimeout):
            async with pool.acquire(timeout=0.05):
                pass
    assert pool.stats()["timeouts_total"] == 2
    assert_settled(pool)
    async with pool.acquire(timeout=0.5) as conn:  # the timed-out waiters took nothing with them
        assert await fetch(conn, "SELECT 1") == [(1,)]
    assert (pool.size, pool.freesize) == (1, 1)


async def test_each_waiter_times_out_at_its_own_deadline(make_pool: PoolFactory) -> None:
    # One timer serves every deadline: a short one queued behind long ones must still fire
    # first, and expiring it must leave the others waiting until they are served.
    pool = await make_pool(minsize=1, maxsize=1, acquire_timeout=30)
    holder = await pool.acquire()
    failed: list[str] = []

    async def waiter(label: str, timeout: float | None) -> None:
        try:
            async with pool.acquire(timeout=timeout):
                pass
        except mp.PoolTimeout:
            failed.append(label)
            raise

    long_wait = asyncio.create_task(waiter("default", None))
    await asyncio.sleep(0.01)
    medium = asyncio.create_task(waiter("0.4 s", 0.4))
    short = asyncio.create_task(waiter("0.15 s", 0.15))
    with pytest.raises(mp.PoolTimeout, match=r"within 0\.15 s"):
        await short
    assert failed == ["0.15 s"] and not medium.done()
    with pytest.raises(mp.PoolTimeout, match=r"within 0\.4 s"):
        await medium
    assert failed == ["0.15 s", "0.4 s"] and not long_wait.done()
    assert pool.stats()["waiting"] == 1
    await pool.release(holder)
    await long_wait  # served by the release, not timed out
    assert failed == ["0.15 s", "0.4 s"] and pool.stats()["timeouts_total"] == 2
    assert_settled(pool)


async def test_a_failing_log_handler_does_not_keep_waiters_past_their_deadline(make_pool: PoolFactory) -> None:
    # Deadlines share one timer; the timeout log line runs the application's logging code.
    # If that raises, every overdue waiter must still fail, and later deadlines still fire.
    pool = await make_pool(minsize=1, maxsize=1, acquire_timeout=30)
    holder = await pool.acquire()
    loop_errors: list[BaseException | None] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: loop_errors.append(context.get("exception")))

    class FailOnce(logging.Filter):
        failed = False

        def filter(self, record: logging.LogRecord) -> bool:
            if not self.failed and getattr(record, "event", None) == "timeout":
                self.failed = True
                raise RuntimeError("log handler failed")
            return True

    log_filter = FailOnce()
    logging.getLogger("fastapi_mysqlpool").addFilter(log_filter)
    try:
        together = [asyncio.create_task(pool.acquire(timeout=0.2)) for _ in range(3)]
        later = asyncio.create_task(pool.acquire(timeout=0.5))
        done, pending = await asyncio.wait([*together, later], timeout=5)
    finally:
        logging.getLogger("fastapi_mysqlpool").removeFilter(log_filter)
        loop.set_exception_handler(None)
    assert not pending
    assert all(isinstance(task.exception(), mp.PoolTimeout) for task in done)
    assert [str(error) for error in loop_errors] == ["log handler failed"]
    assert pool.stats()["timeouts_total"] == 4
    await pool.release(holder)
    assert_settled(pool)


async def test_max_waiting_rejects_at_once(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1, max_waiting=2, acquire_timeout=5)
    holder = await pool.acquire()
    waiters = [asyncio.create_task(pool.acquire()) for _ in range(2)]
    await asyncio.sleep(0.01)
    assert pool.stats()["waiting"] == 2
    with pytest.raises(mp.TooManyWaiters):
        await pool.acquire()
    assert pool.stats()["rejected_total"] == 1
    await pool.release(holder)
    for task in waiters:
        await pool.release(await task)
    assert_settled(pool)


async def test_returned_connection_goes_to_the_longest_waiter(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1, acquire_timeout=5)
    order: list[int] = []
    holder = await pool.acquire()

    async def waiter(i: int) -> None:
        async with pool.acquire():
            order.append(i)
            await asyncio.sleep(0)

    tasks = []
    for i in range(5):
        tasks.append(asyncio.create_task(waiter(i)))
        await asyncio.sleep(0.005)
    await pool.release(holder)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert_settled(pool)


async def test_spike_grows_the_pool_without_overshooting(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=5, acquire_timeout=10)
    peak = 0

    async def work(i: int) -> int:
        nonlocal peak
        async with pool.acquire() as conn:
            peak = max(peak, pool.size)
            rows = await fetch(conn, "SELECT %s, SLEEP(0.02)", i)
            return int(rows[0][0])

    results = await asyncio.gather(*(work(i) for i in range(60)))
    assert results == list(range(60))
    assert peak == 5
    assert pool.size == 5
    assert pool.stats()["created_total"] == 5
    assert_settled(pool)


# ---------------------------------------------------------------- reset on release


async def test_open_transaction_is_rolled_back_on_release(make_pool: PoolFactory, admin: Any) -> None:
    query(admin, "CREATE TABLE IF NOT EXISTS app.rollback_on_release (id INT PRIMARY KEY) ENGINE=InnoDB")
    query(admin, "DELETE FROM app.rollback_on_release")
    pool = await make_pool(minsize=1, maxsize=1)
    async with pool.acquire() as conn:
        first = await conn_id(conn)
        await fetch(conn, "INSERT INTO rollback_on_release VALUES (1)")
        assert conn.get_transaction_status()
    async with pool.acquire() as conn:
        assert await conn_id(conn) == first  # rolled back and reused, not closed as aiomysql does
        assert not conn.get_transaction_status()
        assert await fetch(conn, "SELECT COUNT(*) FROM rollback_on_release") == [(0,)]
    assert pool.stats()["closed_total"]["reset_failed"] == 0


async def test_read_view_of_a_select_does_not_leak_to_the_next_user(make_pool: PoolFactory, admin: Any) -> None:
    query(admin, "CREATE TABLE IF NOT EXISTS app.snapshot (id INT PRIMARY KEY) ENGINE=InnoDB")
    query(admin, "DELETE FROM app.snapshot")
    pool = await make_pool(minsize=1, maxsize=1)
    async with pool.acquire() as conn:
        assert await fetch(conn, "SELECT COUNT(*) FROM snapshot") == [(0,)]  # opens a read view
    query(admin, "INSERT INTO app.snapshot VALUES (1)")
    async with pool.acquire() as conn:
        assert await fetch(conn, "SELECT COUNT(*) FROM snapshot") == [(1,)]


async def test_autocommit_is_restored_on_release(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1, autocommit=True)
    async with pool.acquire() as conn:
        await conn.autocommit(False)
        await fetch(conn, "SELECT 1")
    async with pool.acquire() as conn:
        assert conn.get_autocommit() is True
        await fetch(conn, "SET autocommit = 0")
    async with pool.acquire() as conn:
        assert await fetch(conn, "SELECT @@autocommit") == [(1,)]


async def test_reset_connection_clears_session_state(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1, reset_connection=True, init_command="SET @greeting = 'hi'")
    async with pool.acquire() as conn:
        first = await conn_id(conn)
        await fetch(conn, "SET @leftover = 1")
        await fetch(conn, "CREATE TEMPORARY TABLE scratch (id INT)")
        assert await fetch(conn, "SELECT GET_LOCK('mysqlpool-test', 0)") == [(1,)]
    async with pool.acquire() as conn:
        assert await conn_id(conn) == first
        assert await fetch(conn, "SELECT @leftover, @greeting") == [(None, "hi")]
        assert await fetch(conn, "SELECT IS_USED_LOCK('mysqlpool-test')") == [(None,)]
        with pytest.raises(db_errors.ProgrammingError):
            await fetch(conn, "SELECT * FROM scratch")


# ---------------------------------------------------------------- discard by error type


async def test_statement_errors_keep_the_connection(make_pool: PoolFactory, admin: Any) -> None:
    query(admin, "CREATE TABLE IF NOT EXISTS app.unique_ids (id INT PRIMARY KEY)")
    query(admin, "REPLACE INTO app.unique_ids VALUES (1)")
    pool = await make_pool(minsize=1, maxsize=1)
    async with pool.acquire() as conn:
        first = await conn_id(conn)
    for sql, error in (
        ("SELECT * FROM no_such_table", db_errors.ProgrammingError),
        ("INSERT INTO unique_ids VALUES (1)", db_errors.IntegrityError),
    ):
        with pytest.raises(error):
            async with pool.acquire() as conn:
                await fetch(conn, sql)
        async with pool.acquire() as conn:
            assert await conn_id(conn) == first
    assert sum(pool.stats()["closed_total"].values()) == 0


async def test_connection_errors_replace_the_connection(make_pool: PoolFactory, admin: Any) -> None:
    pool = await make_pool(minsize=1, maxsize=1)
    with pytest.raises(db_errors.OperationalError):
        async with pool.acquire() as conn:
            first = await conn_id(conn)
            query(admin, f"KILL {first}")
            await fetch(conn, "SELECT 1")
    assert pool.stats()["closed_total"]["broken"] == 1
    async with pool.acquire() as conn:
        assert await conn_id(conn) != first
    assert_settled(pool)


async def test_a_value_that_fails_to_convert_replaces_the_connection(
    make_pool: PoolFactory, mysql_server: MySQLServer | ExternalServer, proxy: FaultProxy
) -> None:
    # The driver stops inside the answer at the row that fails. The reply arrives a few bytes at a time, so most
    # of the rest is not even in the buffer yet: only the failure itself can tell the connection is unfit.
    def picky(value: str | bytes) -> int:
        if value in ("3", b"3"):
            raise ValueError("three is not allowed")
        return int(value)

    converters = importlib.import_module(
        "pymysql.converters" if _drivers.current() == "aiomysql" else "asyncmy.converters"
    )
    conv = {**converters.conversions, pymysql.constants.FIELD_TYPE.LONGLONG: picky}
    pool = await make_pool(dsn=proxied_dsn(mysql_server, proxy), minsize=1, maxsize=1, conv=conv)
    proxy.split_replies(7, seed=3)
    with pytest.raises(ValueError, match="three"):
        async with pool.acquire() as conn:
            await fetch(conn, "SELECT seq FROM seq_1_to_2000")
    assert conn._broken
    assert pool.stats()["closed_total"]["broken"] == 1
    async with pool.acquire() as conn:
        assert await fetch(conn, "SELECT seq FROM seq_4_to_6") == [(4,), (5,), (6,)]


async def test_a_connection_handed_out_reports_no_last_statement(make_pool: PoolFactory, driver: str) -> None:
    # A new aiomysql connection answers insert_id() and affected_rows() with 0: so does each one the pool hands
    # out, whatever the pool ran on it (its settings at connect) or the last user did.
    pool = await make_pool(minsize=0, maxsize=1, init_command="SELECT 1")
    table = f"last_statement_{driver}_{uuid.uuid4().hex[:8]}"
    async with pool.acquire() as conn:
        assert (conn.insert_id(), conn.affected_rows()) == (0, 0)
        first = conn
        async with conn.cursor() as cur:
            await cur.execute(f"CREATE TABLE {table} (id INT AUTO_INCREMENT PRIMARY KEY, x INT)")
            await cur.execute(f"INSERT INTO {table} (x) VALUES (1), (2), (3)")
        assert (conn.insert_id(), conn.affected_rows()) == (1, 3)
        await conn.commit()
        last = (conn.insert_id(), conn.affected_rows())
    assert (conn.insert_id(), conn.affected_rows()) == last  # still readable after the release, as in aiomysql
    # A clean release: the same connection comes back without a reset.
    async with pool.acquire() as conn:
        assert conn is first
        assert (conn.insert_id(), conn.affected_rows()) == (0, 0)
        await conn.begin()
        async with conn.cursor() as cur:
            await cur.execute(f"INSERT INTO {table} (x) VALUES (4)")
        assert (conn.insert_id(), conn.affected_rows()) == (4, 1)
    # Given back in a transaction: rolled back, and still nothing of the last user's statement shows.
    async with pool.acquire() as conn:
        assert conn is first
        assert (conn.insert_id(), conn.affected_rows()) == (0, 0)
        assert await fetch(conn, f"SELECT COUNT(*) FROM {table}") == [(3,)]
        await fetch(conn, f"DROP TABLE {table}")


async def test_a_check_hook_leaves_no_last_statement_to_the_acquirer(make_pool: PoolFactory) -> None:
    async def check(conn: Any) -> bool:
        async with conn.cursor() as cur:
            await cur.execute("SELECT 1")
        return True

    pool = await make_pool(minsize=1, maxsize=1, check=check, pre_ping_window=0)
    for _ in range(2):  # each acquire runs the check first
        async with pool.acquire() as conn:
            assert (conn.insert_id(), conn.affected_rows()) == (0, 0)


async def test_release_with_discard_closes_the_connection(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=0, maxsize=1)
    conn = await pool.acquire()
    first = await conn_id(conn)
    await pool.release(conn, discard=True)
    assert pool.size == 0
    async with pool.acquire() as conn:
        assert await conn_id(conn) != first


@pytest.mark.parametrize(
    ("error", "disconnect"),
    [
        (pymysql.err.OperationalError(2006, "MySQL server has gone away"), True),
        (pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query"), True),
        (pymysql.err.OperationalError(1927, "Connection was killed"), True),
        (pymysql.err.InternalError("Packet sequence number wrong - got 0 expected 1"), True),
        (pymysql.err.InterfaceError(0, "Not connected"), True),
        (ConnectionResetError(), True),
        (pymysql.err.OperationalError(1213, "Deadlock found"), False),
        (pymysql.err.OperationalError(1205, "Lock wait timeout exceeded"), False),
        (pymysql.err.ProgrammingError(1146, "Table doesn't exist"), False),
        (pymysql.err.IntegrityError(1062, "Duplicate entry"), False),
        (pymysql.err.DataError(1406, "Data too long"), False),
        (ValueError("application bug"), False),
    ],
)
def test_error_classification(error: BaseException, disconnect: bool) -> None:
    assert mp.is_disconnect(error) is disconnect


# ---------------------------------------------------------------- never hands out a bad connection


async def test_connection_killed_while_idle_is_never_handed_out(make_pool: PoolFactory, admin: Any) -> None:
    pool = await make_pool(minsize=2, maxsize=2)
    async with pool.acquire() as a, pool.acquire() as b:
        ids = {await conn_id(a), await conn_id(b)}
    for cid in ids:
        query(admin, f"KILL {cid}")
    await asyncio.sleep(0.05)
    for _ in range(4):  # both within and past the pre-ping window
        async with pool.acquire() as conn:
            assert await fetch(conn, "SELECT 1") == [(1,)]
            assert await conn_id(conn) not in ids
    assert pool.stats()["closed_total"]["broken"] == 2


async def test_wait_timeout_expiry_is_caught_by_the_pre_ping(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1, init_command="SET SESSION wait_timeout = 1")
    async with pool.acquire() as conn:
        first = await conn_id(conn)
    await asyncio.sleep(2.2)
    async with pool.acquire() as conn:
        assert await fetch(conn, "SELECT 1") == [(1,)]
        assert await conn_id(conn) != first


async def test_half_open_idle_connections_are_replaced_within_the_deadline(
    mysql_server: MySQLServer | ExternalServer, proxy: FaultProxy
) -> None:
    async with mp.create_pool(
        dsn=proxied_dsn(mysql_server, proxy), minsize=3, maxsize=3, ping_timeout=0.3, acquire_timeout=3
    ) as pool:
        await asyncio.sleep(0.6)  # past the pre-ping window
        proxy.half_open_existing()
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with pool.acquire() as conn:
            assert await fetch(conn, "SELECT 1") == [(1,)]
        assert loop.time() - started < 3
        await asyncio.sleep(0.5)  # the concurrent sweep retires the other dead ones
        assert pool.stats()["closed_total"]["broken"] == 3
        for _ in range(3):
            async with pool.acquire() as conn:
                assert await fetch(conn, "SELECT 1") == [(1,)]


async def test_max_lifetime_retires_connections_with_jitter(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=4, maxsize=4, max_lifetime=0.5)
    expiries = sorted(entry.expires - entry.created for entry in pool._free)
    assert all(0.5 * 0.975 <= e <= 0.5 for e in expiries)
    assert len(set(expiries)) == 4  # jittered, not all at once
    async with pool.acquire() as conn:
        held = await conn_id(conn)
        await asyncio.sleep(0.7)
    assert pool.stats()["closed_total"]["lifetime"] >= 1
    await asyncio.sleep(0.4)
    assert pool.size == 4
    async with pool.acquire() as conn:
        assert await conn_id(conn) != held
    assert pool.stats()["closed_total"]["lifetime"] >= 4


async def test_pool_recycle_counts_from_creation(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1, pool_recycle=0.4)
    async with pool.acquire() as conn:
        first = await conn_id(conn)
    for _ in range(6):  # kept busy: aiomysql would never recycle it
        async with pool.acquire() as conn:
            await fetch(conn, "SELECT 1")
        await asyncio.sleep(0.1)
    async with pool.acquire() as conn:
        assert await conn_id(conn) != first


async def test_max_idle_shrinks_to_minsize_and_minsize_is_refilled(make_pool: PoolFactory, admin: Any) -> None:
    pool = await make_pool(minsize=2, maxsize=6, max_idle=0.3)
    conns = [await pool.acquire() for _ in range(6)]
    for conn in conns:
        await pool.release(conn)
    assert pool.size == 6
    await asyncio.sleep(0.8)
    assert pool.size == 2
    assert pool.stats()["closed_total"]["idle"] == 4
    async with pool.acquire() as a, pool.acquire() as b:
        ids = [await conn_id(a), await conn_id(b)]
        query(admin, f"KILL {ids[0]}")
        with pytest.raises(db_errors.OperationalError):
            await fetch(a, "SELECT 1")
    await asyncio.sleep(0.6)
    assert pool.size == 2  # the lost connection was replaced in the background


async def test_clear_replaces_every_connection(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=2, maxsize=2)
    held = await pool.acquire()
    held_id = await conn_id(held)
    await pool.clear()
    released = pool.release(held)
    assert released.done()  # its retirement runs in the background: the releaser does not wait for the COM_QUIT
    await released
    assert pool.stats()["closed_total"]["cleared"] == 2
    async with pool.acquire() as a, pool.acquire() as b:
        assert held_id not in {await conn_id(a), await conn_id(b)}


# ---------------------------------------------------------------- outages


async def test_server_down_at_start_fails_within_open_timeout(private_mysql_server: MySQLServer) -> None:
    dsn = private_mysql_server.dsn
    private_mysql_server.kill()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(mp.PoolTimeout, match="could not open") as info:
        await mp.create_pool(dsn=dsn, open_timeout=1, connect_timeout=0.5)
    assert loop.time() - started < 3
    assert "Can't connect" in str(info.value)
    assert private_mysql_server.password not in str(info.value)


async def test_degraded_start_recovers_when_the_server_comes_up(private_mysql_server: MySQLServer) -> None:
    dsn = private_mysql_server.dsn
    private_mysql_server.kill()
    async with mp.create_pool(dsn=dsn, wait_open=False, minsize=2, connect_timeout=0.5, acquire_timeout=0.3) as pool:
        with pytest.raises(mp.PoolTimeout, match="last connect error"):
            await pool.acquire()
        assert pool.stats()["connect_errors_total"] >= 1
        await asyncio.to_thread(private_mysql_server.restart)
        async with pool.acquire(timeout=5) as conn:
            assert await fetch(conn, "SELECT 1") == [(1,)]
        await asyncio.sleep(0.2)
        assert pool.size == 2


async def test_fail_fast_surfaces_the_connect_error(private_mysql_server: MySQLServer) -> None:
    dsn = private_mysql_server.dsn
    private_mysql_server.kill()
    async with mp.create_pool(dsn=dsn, wait_open=False, minsize=0, fail_fast=True, connect_timeout=0.5) as pool:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(db_errors.OperationalError, match="Can't connect"):
            await pool.acquire(timeout=5)
        assert loop.time() - started < 2


async def test_wrong_credentials_fail_at_once_without_retrying(mysql_server: MySQLServer | ExternalServer) -> None:
    kw = {**mysql_server.connect_kwargs, "password": "definitely-wrong"}
    with pytest.raises(db_errors.OperationalError) as info:
        await mp.create_pool(open_timeout=30, **kw)
    assert info.value.args[0] == 1045
    with pytest.raises(db_errors.OperationalError) as info:
        await mp.create_pool(**{**mysql_server.connect_kwargs, "db": "no_such_db"})
    # 1044 for an account with rights on its own database only, as the throwaway server's; 1049 with global rights.
    assert info.value.args[0] in ({1044} if isinstance(mysql_server, MySQLServer) else {1044, 1049})


async def test_server_restarted_under_load(private_mysql_server: MySQLServer) -> None:
    pool = await mp.create_pool(dsn=private_mysql_server.dsn, minsize=2, maxsize=4, acquire_timeout=1,
                                connect_timeout=0.5)  # fmt: skip
    ok = errors = 0
    stop = asyncio.Event()

    async def worker() -> None:
        nonlocal ok, errors
        while not stop.is_set():
            try:
                async with pool.acquire() as conn:
                    await asyncio.wait_for(fetch(conn, "SELECT 1"), 2)
                ok += 1
            except (mp.PoolTimeout, db_errors.OperationalError, db_errors.InterfaceError):
                errors += 1
                await asyncio.sleep(0.05)

    tasks = [asyncio.create_task(worker()) for _ in range(8)]
    await asyncio.sleep(0.3)
    await asyncio.to_thread(private_mysql_server.restart, graceful=False)
    ok_at_restart = ok
    await asyncio.sleep(1.5)
    stop.set()
    await asyncio.gather(*tasks)
    assert ok > ok_at_restart  # recovered without restarting anything
    assert_settled(pool)
    pool.close()
    await pool.wait_closed()


# ---------------------------------------------------------------- cancellation


async def test_cancelled_waiter_leaves_no_trace(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1, acquire_timeout=5)
    holder = await pool.acquire()
    task = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.stats()["waiting"] == 0
    await pool.release(holder)
    async with pool.acquire(timeout=0.5):
        pass
    assert (pool.size, pool.freesize) == (1, 1)


async def test_cancelled_mid_query_connection_is_not_reused(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1)

    async def slow() -> None:
        async with pool.acquire() as conn:
            await fetch(conn, "SELECT SLEEP(5)")

    task = asyncio.create_task(slow())
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.stats()["closed_total"]["broken"] == 1
    async with pool.acquire() as conn:
        assert await fetch(conn, "SELECT 7") == [(7,)]  # its own result, not the SLEEP's
    assert_settled(pool)


async def test_randomized_cancellation_keeps_the_invariants(make_pool: PoolFactory) -> None:
    import random

    rng = random.Random(1234)
    pool = await make_pool(minsize=1, maxsize=4, acquire_timeout=2, pre_ping_window=0.0)
    max_seen = 0
    answered = 0
    samples: list[int] = []

    async def sample_between_awaits() -> None:
        # Runs whenever the other tasks yield: each sample sees the pool between two of its steps.
        while True:
            samples.append(unaccounted(pool))
            await asyncio.sleep(0)

    sampler = asyncio.create_task(sample_between_awaits())

    async def job(i: int) -> None:
        nonlocal max_seen, answered
        async with pool.acquire() as conn:
            max_seen = max(max_seen, pool.size)
            if rng.random() < 0.3:
                await fetch(conn, "BEGIN")
            rows = await fetch(conn, "SELECT %s, SLEEP(%s)", i, rng.choice([0, 0, 0.001, 0.01]))
            assert rows == [(i, 0)]
            answered += 1

    for _round in range(12):
        tasks = [asyncio.create_task(job(_round * 100 + i)) for i in range(25)]
        await asyncio.sleep(rng.choice([0, 0.001, 0.003, 0.01, 0.02]))
        for task in tasks:
            if rng.random() < 0.5:
                task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        unexpected = [r for r in results if isinstance(r, Exception)]
        assert not unexpected, unexpected
        max_seen = max(max_seen, pool.size)
        assert pool.size <= pool.maxsize
    await asyncio.sleep(0.05)
    sampler.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sampler
    assert max_seen <= 4
    assert answered > 0
    assert_settled(pool)
    # The law held at every sample, under load as at rest (each job yields several times per query).
    assert len(samples) > 100
    assert [n for n in samples if n] == []
    for _ in range(pool.freesize):  # every pooled connection is clean and answers its own query
        async with pool.acquire() as conn:
            assert not conn.get_transaction_status()
            assert await fetch(conn, "SELECT 99") == [(99,)]


# ---------------------------------------------------------------- shutdown


async def test_close_while_busy(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1, close_timeout=5)
    holder = await pool.acquire()
    waiter = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0.01)
    pool.close()
    with pytest.raises(mp.PoolClosed):
        await waiter
    with pytest.raises(mp.PoolClosed):
        await pool.acquire()
    assert await fetch(holder, "SELECT 1") == [(1,)]  # in-use connections keep working
    closing = asyncio.create_task(pool.wait_closed())
    await asyncio.sleep(0.05)
    assert not closing.done()
    await pool.release(holder)
    await asyncio.wait_for(closing, 2)
    assert pool.closed and pool.size == 0


async def test_wait_closed_is_bounded(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1, close_timeout=0.2)
    holder = await pool.acquire()
    pool.close()
    await asyncio.wait_for(pool.wait_closed(), 2)
    assert pool.stats()["closed_total"]["terminated"] == 1
    await pool.release(holder)  # the owner's late release is harmless


@pytest.mark.parametrize("waiter_cancelled", [False, True])
async def test_terminate_closes_each_connection_once(make_pool: PoolFactory, waiter_cancelled: bool) -> None:
    pool = await make_pool(minsize=2, maxsize=2)
    held = [await pool.acquire(), await pool.acquire()]
    waiter = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0.05)  # queued
    pool.release(held.pop())  # handed over to the waiter, whose task has not run since
    pool.terminate()  # closes it with the other one in use, before the waiter's task runs
    if waiter_cancelled:
        waiter.cancel()  # its task then gives back a connection that terminate() has already closed
    with pytest.raises(asyncio.CancelledError if waiter_cancelled else mp.PoolClosed):
        await waiter
    await pool.wait_closed()  # terminate() then wait_closed(): allowed, as in aiomysql
    pool.close()  # after terminate(): nothing left to do
    await pool.wait_closed()
    await pool.release(held.pop())  # the owner's late release is harmless
    stats = pool.stats()
    assert pool.closed and stats["size"] == 0
    assert stats["closed_total"]["terminated"] == 2
    assert sum(stats["closed_total"].values()) == stats["created_total"] == 2, stats


async def test_connections_close_with_com_quit(mysql_server: MySQLServer | ExternalServer, admin: Any) -> None:
    def aborted() -> int:
        return int(query(admin, "SHOW GLOBAL STATUS LIKE 'Aborted_clients'")[0][1])

    before = aborted()
    async with mp.create_pool(dsn=mysql_server.dsn, minsize=3, maxsize=5, max_lifetime=0.3) as pool:
        async with pool.acquire() as a, pool.acquire() as b:
            await fetch(a, "SELECT 1")
            await fetch(b, "SELECT 1")
        await asyncio.sleep(0.5)  # lifetime retirements too
        await pool.clear()
    await asyncio.sleep(0.2)
    assert aborted() == before


# ---------------------------------------------------------------- secrets


async def test_password_never_leaks(
    mysql_server: MySQLServer | ExternalServer, caplog: pytest.LogCaptureFixture
) -> None:
    password = mysql_server.password
    caplog.set_level(logging.DEBUG, logger="fastapi_mysqlpool")
    outputs: list[str] = []
    async with mp.create_pool(dsn=mysql_server.dsn, minsize=1, maxsize=1, acquire_timeout=0.05) as pool:
        outputs += [repr(pool), str(pool), json.dumps(pool.stats()), repr(pool.options)]
        async with pool.acquire():
            with pytest.raises(mp.PoolTimeout) as info:
                await pool.acquire()
            outputs.append(str(info.value))
    bad = mysql_server.dsn + "?maxsize=zero"
    with pytest.raises(ValueError) as value_error:
        mp.create_pool(dsn=bad)
    outputs.append(str(value_error.value))
    outputs.append(mp.mask_dsn(mysql_server.dsn))
    outputs += [r.getMessage() for r in caplog.records]
    assert outputs
    for text in outputs:
        assert password not in text
        assert pymysql.converters.escape_string(password) not in text


async def test_cancelled_release_still_resets_and_returns_the_connection(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1)
    conn = await pool.acquire()
    await fetch(conn, "BEGIN")  # the release needs a rollback, which runs in its own task
    released = pool.release(conn)
    assert conn not in pool._used  # released at once; only the reset is still under way
    released.cancel()
    with pytest.raises(asyncio.CancelledError):
        await released
    async with pool.acquire(timeout=2) as again:
        assert again is conn
        assert not again.get_transaction_status()
    assert_settled(pool)


async def test_unreachable_server_at_start_leaves_no_task_behind() -> None:
    with pytest.raises(mp.PoolTimeout, match="last error"):
        await mp.create_pool(host="127.0.0.1", port=1, user="x", password="y", open_timeout=1.5, connect_timeout=0.2)
    await asyncio.sleep(0.05)
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("mysqlpool")] == []


@pytest.mark.parametrize("closes_pool", [True, False])
def test_clean_interpreter_exit(mysql_dsn: str, tmp_path: Any, closes_pool: bool) -> None:
    import subprocess
    import sys

    script = tmp_path / "exit.py"
    script.write_text(
        "import asyncio, sys\n"
        "import fastapi_mysqlpool as mp\n"
        "async def main():\n"
        "    pool = await mp.create_pool(dsn=sys.argv[1], minsize=3, maxsize=3)\n"
        "    async with pool.acquire() as conn, conn.cursor() as cur:\n"
        "        await cur.execute('SELECT 1')\n"
        f"    if {closes_pool}:\n"
        "        pool.close()\n"
        "        await pool.wait_closed()\n"
        "asyncio.run(main())\n"
        "print('done')\n"
    )
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "always", str(script), mysql_dsn],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    assert result.stderr == ""


async def test_a_short_deadline_never_costs_a_healthy_connection(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1)
    await asyncio.sleep(0.6)  # idle past the pre-ping window: the next acquire checks it
    with pytest.raises(mp.PoolTimeout):
        await pool.acquire(timeout=1e-6)
    await asyncio.sleep(0.1)
    assert pool.stats()["closed_total"]["broken"] == 0
    async with pool.acquire() as conn:
        assert await fetch(conn, "SELECT 1") == [(1,)]
    assert pool.stats()["created_total"] == 1


async def test_a_burst_after_a_quiet_spell_uses_every_idle_connection(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=10, maxsize=10, acquire_timeout=10)
    await asyncio.sleep(0.6)  # every idle connection is now past the pre-ping window
    busiest = 0

    async def job() -> None:
        nonlocal busiest
        async with pool.acquire() as conn:
            busiest = max(busiest, pool.stats()["in_use"])
            await fetch(conn, "SELECT SLEEP(0.05)")

    await asyncio.gather(*(job() for _ in range(30)))
    assert busiest == 10
    assert pool.stats()["created_total"] == 10  # checked and reused, none replaced
    assert_settled(pool)


async def test_a_slow_connect_never_delays_a_waiter_a_release_can_serve(
    mysql_server: MySQLServer | ExternalServer, proxy: FaultProxy
) -> None:
    async with mp.create_pool(dsn=proxied_dsn(mysql_server, proxy), minsize=1, maxsize=2, connect_timeout=5) as pool:
        holder = await pool.acquire()
        proxy.slow_new_connections(3)  # the connect the waiter triggers takes 3 s
        loop = asyncio.get_running_loop()
        started = loop.time()
        waiter = asyncio.create_task(pool.acquire())
        await asyncio.sleep(0.05)
        assert pool.stats()["opening"] == 1
        await pool.release(holder)
        conn = await asyncio.wait_for(waiter, 1)  # served by the release, not by the slow connect
        assert conn is holder
        assert loop.time() - started < 1
        await pool.release(conn)
        proxy.heal()


# ---------------------------------------------------------------- lifecycle edges


async def test_a_failed_statement_is_rolled_back_before_reuse(make_pool: PoolFactory, admin: Any) -> None:
    query(admin, "CREATE TABLE IF NOT EXISTS app.dup_keys (id INT PRIMARY KEY) ENGINE=InnoDB")
    query(admin, "REPLACE INTO app.dup_keys VALUES (1)")
    pool = await make_pool(minsize=1, maxsize=1)
    async with pool.acquire() as conn:
        first = await conn_id(conn)
    with pytest.raises(db_errors.IntegrityError):
        async with pool.acquire() as conn:
            await fetch(conn, "INSERT INTO dup_keys VALUES (1)")  # an error packet carries no status flags
    async with pool.acquire() as conn:
        assert await conn_id(conn) == first
        assert await fetch(conn, "SELECT @@in_transaction") == [(0,)]


async def test_close_right_after_open_keeps_exact_accounting(mysql_dsn: str) -> None:
    pool = await mp.create_pool(dsn=mysql_dsn, minsize=2, maxsize=4, wait_open=False)
    pool.close()  # the connect tasks are cancelled before their first step
    await pool.wait_closed()
    stats = pool.stats()
    assert (stats["opening"], stats["size"]) == (0, 0)
    assert stats["connect_errors_total"] == 0  # a cancelled connect is not a failed one


async def test_close_during_connect_is_not_a_connect_error(mysql_dsn: str) -> None:
    pool = await mp.create_pool(dsn=mysql_dsn, minsize=2, maxsize=4, wait_open=False)
    await asyncio.sleep(0)  # the connects start
    pool.close()
    await pool.wait_closed()
    stats = pool.stats()
    assert (stats["connect_errors_total"], stats["last_error"], stats["opening"]) == (0, None, 0)


async def test_terminate_silences_the_leak_watch(mysql_dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    pool = await mp.create_pool(dsn=mysql_dsn, minsize=0, maxsize=1, leak_timeout=0.2)
    conn = await pool.acquire()
    pool.terminate()
    await pool.wait_closed()
    await pool.release(conn)
    with caplog.at_level(logging.WARNING, logger="fastapi_mysqlpool"):
        await asyncio.sleep(0.4)
    assert [r for r in caplog.records if getattr(r, "event", None) == "leak"] == []


async def test_concurrent_wait_closed_calls_all_return_on_drain(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=0, maxsize=1, close_timeout=5)
    conn = await pool.acquire()
    pool.close()
    waits = [asyncio.create_task(pool.wait_closed()) for _ in range(2)]
    await asyncio.sleep(0.05)
    await pool.release(conn)
    await asyncio.wait_for(asyncio.gather(*waits), 2)  # both, well before close_timeout


async def test_release_during_its_reset_is_rejected(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1)
    conn = await pool.acquire()
    await fetch(conn, "BEGIN")  # the release needs a rollback, in a task of its own
    released = pool.release(conn)
    with pytest.raises(mp.PoolMisuse, match="released twice"):
        pool.release(conn)
    await released
    async with pool.acquire() as again:
        assert await fetch(again, "SELECT @@in_transaction") == [(0,)]
    assert pool.stats()["closed_total"]["reset_failed"] == 0


async def test_clear_reaches_a_connection_being_checked(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1, pre_ping_window=0)
    async with pool.acquire() as conn:
        first = await conn_id(conn)
    await asyncio.sleep(0.01)
    task = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0)  # the acquire hands the idle connection to a check task
    assert pool.stats()["checking"] == 1
    await pool.clear()
    conn = await task
    try:
        assert await conn_id(conn) != first
    finally:
        await pool.release(conn)


@pytest.mark.parametrize("released_after", [0.0, 0.5])  # while the procedure runs, and after it has answered
async def test_unread_result_sets_of_a_procedure_are_not_handed_on(
    make_pool: PoolFactory, admin: Any, released_after: float
) -> None:
    query(admin, "CREATE TABLE IF NOT EXISTS app.proc_rows (id INT PRIMARY KEY) ENGINE=InnoDB")
    query(admin, "DELETE FROM app.proc_rows")
    query(admin, "DROP PROCEDURE IF EXISTS app.slow_insert")
    query(
        admin, "CREATE PROCEDURE app.slow_insert() BEGIN SELECT 1; DO SLEEP(0.3); INSERT INTO proc_rows VALUES (7); END"
    )
    pool = await make_pool(minsize=1, maxsize=1)
    async with pool.acquire() as conn:
        first = await conn_id(conn)
        assert await fetch(conn, "CALL slow_insert()") == [(1,)]  # the first result set only
        await asyncio.sleep(released_after)
    async with pool.acquire() as conn:
        assert await conn_id(conn) == first  # read to its end and rolled back, not discarded
        assert await fetch(conn, "SELECT @@in_transaction") == [(0,)]
        assert await fetch(conn, "SELECT COUNT(*) FROM proc_rows") == [(0,)]  # its insert was rolled back
    assert pool.stats()["closed_total"]["broken"] == 0


@pytest.mark.parametrize("end", ["cancelled", "closed"])
async def test_a_half_read_unbuffered_result_dies_with_its_connection_quietly(make_pool: PoolFactory, end: str) -> None:
    # A request cut inside an unbuffered read leaves a result whose rows are still due on a connection that is
    # discarded. Collecting that result must not start a read (a coroutine nobody awaits, on old asyncmy).
    pool = await make_pool(minsize=0, maxsize=1)
    conn = await pool.acquire()
    cur = conn.cursor(_drivers.unbuffered_cursor())
    if inspect.isawaitable(cur):  # aiomysql's cursor() is a coroutine, asyncmy's is not
        cur = await cur
    # Rows of 8 KB, one a millisecond: the server sends them as they come, so the read waits, and a cancel cuts it.
    await cur.execute("SELECT REPEAT('x', 8000), SLEEP(0.001) FROM seq_1_to_2000")
    assert len(await cur.fetchmany(10)) == 10
    if end == "cancelled":
        task = asyncio.create_task(cur.fetchall())
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        conn.close()
    await pool.release(conn)
    del cur, conn
    gc.collect()  # an unawaited coroutine here fails the test (warnings are errors)
    assert pool.stats()["closed_total"]["broken"] == 1
    async with pool.acquire() as again:
        assert await fetch(again, "SELECT 1") == [(1,)]


async def test_a_query_after_a_half_read_unbuffered_result_reads_its_own_answer(make_pool: PoolFactory) -> None:
    # The cursor was left unclosed with rows still due: the next command reads them first, as aiomysql does
    # (asyncmy 0.2.13 would send it at once and read the old rows as its answer).
    pool = await make_pool(minsize=0, maxsize=1)
    async with pool.acquire() as conn:
        cur = conn.cursor(_drivers.unbuffered_cursor())
        if inspect.isawaitable(cur):
            cur = await cur
        await cur.execute("SELECT seq FROM seq_1_to_2000")
        assert len(await cur.fetchmany(10)) == 10
        with pytest.warns(UserWarning, match="left incomplete"):
            assert await fetch(conn, "SELECT 'next'") == [("next",)]
        assert await fetch(conn, "SELECT 2") == [(2,)]
    assert pool.stats()["closed_total"]["broken"] == 0


async def test_packets_split_across_reads_and_over_16_mib_arrive_whole(make_pool: PoolFactory, admin: Any) -> None:
    # Pooled connections take a packet synchronously when it is already buffered. A row that
    # arrives over many reads, or spans several protocol packets (16 MiB each), must take the
    # waiting path and come out byte-for-byte, and the connection must stay in sequence.
    (previous,) = query(admin, "SELECT @@GLOBAL.max_allowed_packet")[0]
    query(admin, "SET GLOBAL max_allowed_packet = %s", 64 * 1024 * 1024)
    try:
        pool = await make_pool(minsize=1, maxsize=1)
        async with pool.acquire() as conn:
            # aiomysql's synchronous fast path is on (asyncmy parses its buffer in compiled code)
            assert _drivers.current() != "aiomysql" or (isinstance(conn, Connection) and conn._buffered_reads)
            sizes = [3 * 1024 * 1024, 16 * 1024 * 1024 - 1, 17 * 1024 * 1024]
            if _drivers.current() == "asyncmy":
                sizes.pop()  # asyncmy 0.2.18 returns no row for a row continued past 16 MiB (docs/pool.md)
            for size in sizes:
                rows = await fetch(conn, "SELECT REPEAT('ab', %s), 7", size // 2)
                assert len(rows[0][0]) == size // 2 * 2 and set(rows[0][0]) == {"a", "b"}
                assert rows[0][1] == 7
                assert await fetch(conn, "SELECT 1") == [(1,)]
        with pytest.raises(db_errors.ProgrammingError):  # an error packet on the fast path
            async with pool.acquire() as conn:
                await fetch(conn, "SELECT * FROM no_such_table_here")
        async with pool.acquire() as conn:
            assert await fetch(conn, "SELECT 2") == [(2,)]
        assert pool.stats()["closed_total"]["broken"] == 0
    finally:
        query(admin, "SET GLOBAL max_allowed_packet = %s", previous)
