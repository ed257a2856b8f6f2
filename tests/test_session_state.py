"""Every acquirer gets a session as good as new, with default options, and a clean one costs nothing: against a
real server, whose own counters measure the round trips."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import aiomysql
import pytest

import fastapi_mysqlpool as mp
from fastapi_mysqlpool import _connection
from tests import _drivers
from tests.conftest import PoolFactory, query
from tests.test_pool import conn_id, fetch

pytestmark = pytest.mark.usefixtures("driver")

Use = Callable[[aiomysql.Connection], Awaitable[Any]]


async def run(conn: aiomysql.Connection, *statements: str) -> None:
    async with conn.cursor() as cur:
        for sql in statements:
            await cur.execute(sql)


async def error_code(conn: aiomysql.Connection, sql: str) -> int:
    with pytest.raises(_drivers.db_errors.MySQLError) as caught:
        await fetch(conn, sql)
    return int(caught.value.args[0])


@pytest.fixture
async def tables(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=0, maxsize=1)
    async with pool.acquire() as conn:
        await run(
            conn,
            "CREATE TABLE IF NOT EXISTS state_a (i INT PRIMARY KEY) ENGINE=InnoDB",
            "CREATE TABLE IF NOT EXISTS state_b (i INT PRIMARY KEY) ENGINE=InnoDB",
        )


async def change_db(conn: aiomysql.Connection) -> None:
    await conn.select_db("information_schema")


# Each: what a request leaves behind, and what the next acquirer reads, the same as on a new connection.
STATES: dict[str, tuple[Use, str]] = {
    "use_database": (lambda c: run(c, "USE information_schema"), "SELECT DATABASE()"),
    "select_db": (change_db, "SELECT DATABASE()"),
    "set_names": (lambda c: run(c, "SET NAMES latin1"), "SELECT @@character_set_client, @@collation_connection"),
    "sql_mode": (lambda c: run(c, "SET sql_mode = 'ANSI'"), "SELECT @@sql_mode"),
    "time_zone": (lambda c: run(c, "SET time_zone = '+05:00'"), "SELECT @@time_zone"),
    "isolation_level": (
        lambda c: run(c, "SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE"),
        "SELECT @@tx_isolation",
    ),
    "user_variable_set": (lambda c: run(c, "SET @v = 'left'"), "SELECT @v"),
    "user_variable_in_select": (lambda c: run(c, "SELECT @w := 'left'"), "SELECT @w"),
    "user_variable_into": (lambda c: run(c, "SELECT 'left' INTO @x"), "SELECT @x"),
    "get_lock": (lambda c: run(c, "SELECT GET_LOCK('state_lock', 0)"), "SELECT IS_FREE_LOCK('state_lock')"),
    "autocommit": (lambda c: c.autocommit(True), "SELECT @@autocommit"),
    "set_charset": (lambda c: c.set_charset("latin1"), "SELECT @@character_set_client, @@character_set_results"),
}


@pytest.mark.parametrize("state", list(STATES))
async def test_session_state_never_reaches_the_next_acquirer(make_pool: PoolFactory, state: str) -> None:
    leave, probe = STATES[state]
    pool = await make_pool(minsize=1, maxsize=1)
    async with pool.acquire() as conn:
        new = await fetch(conn, probe)
        first = await conn_id(conn)
    async with pool.acquire() as conn:
        await leave(conn)
        assert await fetch(conn, probe) != new  # the change took effect in its own session
    async with pool.acquire() as conn:
        assert await conn_id(conn) == first  # reset, not replaced
        assert await fetch(conn, probe) == new
    assert pool.stats()["closed_total"]["reset_failed"] == 0


async def unread(conn: aiomysql.Connection, sql: str) -> None:
    """Run ``sql`` and read its first result set only, then release without closing the cursor (whose close would
    read the rest)."""
    cur = conn.cursor()
    if inspect.isawaitable(cur):  # aiomysql's; asyncmy's is the cursor itself
        cur = await cur
    await cur.execute(sql)
    await cur.fetchall()


# Each: a statement whose later result sets (never read by the caller) change the session, and the probe.
UNREAD: dict[str, tuple[str, str]] = {
    "multi_statement_time_zone": ("SELECT 1; SET time_zone = '+05:00'", "SELECT @@time_zone"),
    "multi_statement_variable": ("SELECT 1; SET @left = 1", "SELECT @left"),
    "procedure_variable": ("CALL state_sets_variable()", "SELECT @from_procedure"),
}


@pytest.mark.parametrize("case", list(UNREAD))
async def test_a_change_in_result_sets_left_unread_never_reaches_the_next_acquirer(
    make_pool: PoolFactory, case: str
) -> None:
    leave, probe = UNREAD[case]
    pool = await make_pool(minsize=1, maxsize=1)
    async with pool.acquire() as conn:
        await run(
            conn,
            "CREATE OR REPLACE PROCEDURE state_sets_variable() BEGIN SELECT 1; SET @from_procedure = 42; END",
        )
        new = await fetch(conn, probe)
    async with pool.acquire() as conn:
        await unread(conn, leave)
    async with pool.acquire() as conn:
        assert await fetch(conn, probe) == new


# Each sets the next transaction's access mode only (no tracker but the transaction's reports it).
@pytest.mark.parametrize(
    "statement", ["SET TRANSACTION READ ONLY", "SET /* next */ TRANSACTION READ ONLY", "SET @@tx_read_only = 1"]
)
async def test_the_next_transactions_characteristics_never_reach_the_next_acquirer(
    make_pool: PoolFactory, tables: None, statement: str
) -> None:
    pool = await make_pool(minsize=1, maxsize=1)
    async with pool.acquire() as conn:
        first = await conn_id(conn)
        await run(conn, statement)
    async with pool.acquire() as conn:
        assert await conn_id(conn) == first  # reset, not replaced
        await run(conn, "INSERT INTO state_a VALUES (7)", "DELETE FROM state_a WHERE i = 7")  # 1792 if it leaked
        await conn.commit()
    for sql in ("SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED", "set  transaction read write"):
        assert _connection.changes_unreported(sql)


async def test_a_column_named_like_the_transaction_costs_no_reset(
    make_pool: PoolFactory, admin: Any, tables: None
) -> None:
    pool = await make_pool(minsize=1, maxsize=1, autocommit=True)
    async with pool.acquire() as conn:
        await run(conn, "CREATE TABLE IF NOT EXISTS state_payments (id INT PRIMARY KEY, transaction_id INT)")
        await run(conn, "REPLACE INTO state_payments VALUES (1, 0)")
    figures = await measure(admin, pool, 10, "UPDATE state_payments SET transaction_id = transaction_id + 1")
    assert figures["Com_admin_commands"] == 0  # no COM_RESET_CONNECTION
    assert figures["Com_change_db"] == 0


async def test_a_failed_later_statement_leaves_no_transaction_open(
    make_pool: PoolFactory, admin: Any, tables: None
) -> None:
    pool = await make_pool(minsize=1, maxsize=1)
    async with pool.acquire() as conn:
        await run(conn, "REPLACE INTO state_a VALUES (1)")
        await conn.commit()
        before = counters(admin)["Com_rollback"]
        # The first result confirms a status with no transaction; the INSERT that fails then opened one.
        async with conn.cursor() as cur:
            await cur.execute("SELECT 1; INSERT INTO state_a VALUES (1)")
            with pytest.raises(_drivers.db_errors.IntegrityError):
                await cur.nextset()
    async with pool.acquire() as conn:
        assert counters(admin)["Com_rollback"] - before == 1  # the release rolled it back
        await run(conn, "DELETE FROM state_a")
        await conn.commit()


@pytest.mark.filterwarnings("ignore:Truncated incorrect INTEGER value")  # aiomysql's cursor warns of it
async def test_a_statement_with_a_warning_costs_no_round_trip_on_release(make_pool: PoolFactory, admin: Any) -> None:
    pool = await make_pool(minsize=1, maxsize=1, autocommit=True)
    figures = await measure(admin, pool, 20, "SELECT CAST('x' AS INT)")  # a warning: the cursor reads SHOW WARNINGS
    assert figures["Com_rollback"] == 0 and figures["Com_admin_commands"] == 0
    assert figures["Questions"] == 40


async def test_a_reset_the_unread_results_made_full_runs_the_configure_hook_again(make_pool: PoolFactory) -> None:
    async def configure(conn: aiomysql.Connection) -> None:
        await run(conn, "SET time_zone = '+05:00'")

    pool = await make_pool(minsize=1, maxsize=1, configure=configure)
    async with pool.acquire() as conn:
        await unread(conn, "SELECT 1; SET @left = 1")  # the release learns of the change only while it resets
    async with pool.acquire() as conn:
        assert await fetch(conn, "SELECT @@time_zone, @left") == [("+05:00", None)]


@pytest.mark.parametrize("charset", ["utf8", "utf8mb4", "latin1"])
async def test_the_full_reset_sets_the_character_set_and_collation_the_handshake_set(
    make_pool: PoolFactory, charset: str
) -> None:
    probe = "SELECT @@character_set_client, @@character_set_results, @@collation_connection"
    pool = await make_pool(minsize=1, maxsize=1, charset=charset)
    async with pool.acquire() as conn:
        new = await fetch(conn, probe)
        await run(conn, "SET NAMES ascii")
    async with pool.acquire() as conn:
        assert await fetch(conn, probe) == new


async def test_the_reset_restores_the_character_set_the_driver_encodes_with(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1)
    async with pool.acquire() as conn:
        await conn.set_charset("latin1")
        assert await fetch(conn, "SELECT @@character_set_client") == [("latin1",)]
    async with pool.acquire() as conn:
        assert await fetch(conn, "SELECT '日本', @@character_set_client") == [("日本", "utf8mb4")]


async def test_lock_tables_never_reaches_the_next_acquirer(make_pool: PoolFactory, tables: None) -> None:
    pool = await make_pool(minsize=1, maxsize=1)
    async with pool.acquire() as conn:
        await run(conn, "LOCK TABLES state_a WRITE")
        assert await error_code(conn, "SELECT COUNT(*) FROM state_b") == 1100  # not locked by LOCK TABLES
    async with pool.acquire() as conn:
        assert await fetch(conn, "SELECT COUNT(*) FROM state_b") == [(0,)]


async def test_temporary_table_never_reaches_the_next_acquirer(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1)
    async with pool.acquire() as conn:
        await run(conn, "CREATE TEMPORARY TABLE state_tmp (i INT)", "INSERT INTO state_tmp VALUES (1)")
    async with pool.acquire() as conn:
        assert await error_code(conn, "SELECT * FROM state_tmp") == 1146  # no such table


async def test_open_handler_never_reaches_the_next_acquirer(make_pool: PoolFactory, tables: None) -> None:
    pool = await make_pool(minsize=1, maxsize=1)
    async with pool.acquire() as conn:
        await run(conn, "HANDLER state_a OPEN")
        assert await fetch(conn, "HANDLER state_a READ FIRST") == []
    async with pool.acquire() as conn:
        assert await error_code(conn, "HANDLER state_a READ FIRST") == 1109  # unknown table in HANDLER


async def test_the_reset_restores_the_configured_charset_sql_mode_and_init_command(make_pool: PoolFactory) -> None:
    pool = await make_pool(
        minsize=1, maxsize=1, charset="latin1", sql_mode="'TRADITIONAL'", init_command="SET @greeting = 'hi'"
    )
    probe = "SELECT @@character_set_client, @@sql_mode LIKE '%%STRICT_ALL_TABLES%%', @greeting, DATABASE()"
    async with pool.acquire() as conn:
        new = await fetch(conn, probe)
        assert new[0][:3] == ("latin1", 1, "hi")
        await run(conn, "SET NAMES utf8mb4, sql_mode = '', @greeting = NULL", "USE information_schema")
    async with pool.acquire() as conn:
        assert await fetch(conn, probe) == new


async def test_a_pool_without_a_database_discards_a_session_that_chose_one(mysql_server: Any) -> None:
    kwargs = {k: v for k, v in mysql_server.connect_kwargs.items() if k != "db"}
    async with mp.create_pool(minsize=1, maxsize=1, **kwargs) as pool:
        async with pool.acquire() as conn:
            await run(conn, "USE information_schema")
        async with pool.acquire() as conn:
            assert await fetch(conn, "SELECT DATABASE()") == [(None,)]
        # No command returns a session to "no database": that one was replaced.
        assert pool.stats()["closed_total"]["reset_failed"] == 1


async def test_rollback_only_reset_keeps_session_state_as_documented(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1, session_reset="rollback")
    async with pool.acquire() as conn:
        await run(conn, "SET @v = 'left'")
    async with pool.acquire() as conn:
        ((value,),) = await fetch(conn, "SELECT @v")
    assert value in (b"left", "left")  # the risk docs/pool.md states next to the option


# MariaDB has no Com_reset_connection: it counts COM_RESET_CONNECTION, like COM_PING, in Com_admin_commands
# (nothing pings during a measurement: every connection is used well within the pre-ping window).
COUNTERS = ("Com_admin_commands", "Com_rollback", "Com_change_db", "Questions")


def counters(admin: Any) -> dict[str, int]:
    rows = query(admin, "SHOW GLOBAL STATUS WHERE Variable_name IN %s", COUNTERS)
    return {name: int(value) for name, value in rows}


async def measure(admin: Any, pool: mp.Pool, cycles: int, *statements: str, commit: bool = False) -> dict[str, int]:
    async with pool.acquire():
        pass  # settled before the first reading
    before = counters(admin)
    for _ in range(cycles):
        async with pool.acquire() as conn:
            await run(conn, *statements)
            if commit:
                await conn.commit()
    after = counters(admin)
    # The reading itself is one question of the admin's.
    return {name: after[name] - before[name] - (name == "Questions") for name in COUNTERS}


async def test_clean_requests_cost_no_round_trip_on_release(
    make_pool: PoolFactory, admin: Any, tables: None, capsys: pytest.CaptureFixture[str]
) -> None:
    autocommit = await make_pool(minsize=1, maxsize=1, autocommit=True)
    reads = await measure(admin, autocommit, 1000, "SELECT 1")
    assert reads == {"Com_admin_commands": 0, "Com_rollback": 0, "Com_change_db": 0, "Questions": 1000}

    transactions = await make_pool(minsize=1, maxsize=1)
    writes = await measure(
        admin, transactions, 1000, "DELETE FROM state_a", "INSERT INTO state_a VALUES (1)", commit=True
    )
    # Two statements and the COMMIT per request, nothing on release.
    assert writes == {"Com_admin_commands": 0, "Com_rollback": 0, "Com_change_db": 0, "Questions": 3000}

    dirty = await measure(admin, autocommit, 100, "SET @v = 1")
    assert dirty["Com_admin_commands"] == 100
    assert dirty["Com_change_db"] == 100
    with capsys.disabled():
        print(f"\nclean autocommit: {reads}\nclean transactions: {writes}\ndirty (100 releases): {dirty}")


async def test_a_server_without_session_tracking_gets_the_full_reset_every_time(
    make_pool: PoolFactory, admin: Any
) -> None:
    pool = await make_pool(minsize=1, maxsize=1, autocommit=True)
    async with pool.acquire() as conn:
        # What a server without CLIENT_SESSION_TRACK leaves the connection with (MariaDB always offers it).
        conn._tracks_sessions = False
    figures = await measure(admin, pool, 10, "SELECT 1")
    assert figures["Com_admin_commands"] == 10
