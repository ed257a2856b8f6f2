"""aiomysql's pool API, called the way aiomysql's documentation and its users call it.

Each test states one documented behaviour of ``aiomysql.Pool`` (or of the connection it hands
out) and checks ours against the real server. The deliberate differences are listed in
docs/migrating.md; `test_deliberate_differences_are_documented` keeps that table honest.
"""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path
from typing import Any

import aiomysql
import pytest

import fastapi_mysqlpool as mp
from tests import _drivers
from tests._drivers import db_errors
from tests.conftest import PoolFactory, query
from tests.test_pool import conn_id, fetch

pytestmark = pytest.mark.usefixtures("driver")

DOCS = Path(__file__).resolve().parent.parent / "docs"


async def test_release_without_await_releases_at_once(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=0, maxsize=2)
    conn1 = await pool.acquire()
    conn2 = await pool.acquire()
    assert (pool.size, pool.freesize, pool._used) == (2, 0, {conn1, conn2})
    pool.release(conn1)  # aiomysql: "This is NOT a coroutine"
    assert (pool.size, pool.freesize, pool._used) == (2, 1, {conn2})
    await pool.release(conn2)  # and awaiting what it returns is allowed too
    assert (pool.size, pool.freesize, pool._used) == (2, 2, set())
    again = await pool.acquire()
    assert again is conn2  # the most recently released is reused first
    pool.release(again)


async def test_release_without_await_of_a_connection_needing_a_rollback(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1)
    conn = await pool.acquire()
    async with conn.cursor() as cur:
        await cur.execute("BEGIN")
    pool.release(conn)  # the rollback runs in the background; the caller is free at once
    assert not pool._used
    async with pool.acquire(timeout=2) as again:
        assert again is conn
        assert await fetch(again, "SELECT @@in_transaction") == [(0,)]


async def test_release_of_a_connection_the_caller_closed(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=2, maxsize=2)
    conn = await pool.acquire()
    await conn.ensure_closed()
    pool.release(conn)
    assert not pool._used
    async with pool.acquire() as fresh:
        assert not _drivers.closed(fresh)
        assert await fetch(fresh, "SELECT 1") == [(1,)]


async def test_acquire_is_awaitable_a_context_manager_and_a_task(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=0, maxsize=2)
    first, second = await asyncio.gather(pool.acquire(), asyncio.create_task(pool.acquire()))
    assert isinstance(first, _drivers.connection_class()) and isinstance(second, _drivers.connection_class())
    assert first is not second
    pool.release(first)
    pool.release(second)
    async with pool.acquire() as conn:
        assert pool._used == {conn}
    assert not pool._used and pool.freesize == 2


async def test_properties(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=2, maxsize=5, echo=False)
    assert (pool.minsize, pool.maxsize, pool.size, pool.freesize, pool.closed, pool.echo) == (2, 5, 2, 2, False, False)
    pool.close()
    await pool.wait_closed()
    assert pool.closed and pool.size == 0


async def test_invalid_sizes_are_value_errors(mysql_dsn: str) -> None:
    with pytest.raises(ValueError):
        await mp.create_pool(dsn=mysql_dsn, minsize=-1)
    with pytest.raises(ValueError):
        await mp.create_pool(dsn=mysql_dsn, minsize=5, maxsize=2)


async def test_pool_as_plain_context_manager_is_a_runtime_error(make_pool: PoolFactory) -> None:
    pool = await make_pool()
    with pytest.raises(RuntimeError, match=r"async with pool\.acquire"), pool:
        pass


async def test_deprecated_with_await_pool(mysql_dsn: str) -> None:
    async with mp.create_pool(dsn=mysql_dsn, minsize=1, maxsize=1) as pool:
        with pytest.warns(DeprecationWarning, match=r"async with pool\.acquire"):
            held = await pool
        with held as conn:
            assert pool._used == {conn}
            assert await fetch(conn, "SELECT 1") == [(1,)]
        assert not pool._used and pool.freesize == 1
    assert _drivers.closed(conn)


async def test_acquire_after_close_is_a_runtime_error(make_pool: PoolFactory) -> None:
    pool = await make_pool()
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        await pool.acquire()
    with pytest.raises(mp.PoolClosed):
        async with pool.acquire():
            pass


async def test_wait_closed_before_close_is_a_runtime_error(make_pool: PoolFactory) -> None:
    pool = await make_pool()
    with pytest.raises(RuntimeError, match=r"after close\(\)"):
        await pool.wait_closed()


async def test_close_waits_for_connections_in_use(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=3, maxsize=3)
    conn = await pool.acquire()
    pool.close()
    closing = asyncio.create_task(pool.wait_closed())
    await asyncio.sleep(0.05)
    assert not closing.done() and not pool.closed  # still waits for the connection in use
    pool.release(conn)
    await asyncio.wait_for(closing, 5)
    assert pool.closed and _drivers.closed(conn)


async def test_terminate_closes_connections_in_use(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=2)
    conn = await pool.acquire()
    pool.terminate()
    await pool.wait_closed()
    assert pool.closed and _drivers.closed(conn)
    pool.release(conn)  # releasing a terminated connection is allowed, as in aiomysql


async def test_clear_closes_the_free_connections(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=0, maxsize=3)
    conns = [await pool.acquire() for _ in range(3)]
    for conn in conns:
        pool.release(conn)
    await pool.clear()
    assert all(_drivers.closed(conn) for conn in conns)
    async with pool.acquire() as conn:
        assert conn not in conns


async def test_create_pool_is_an_async_context_manager(mysql_dsn: str) -> None:
    opener = mp.create_pool(dsn=mysql_dsn, minsize=1, maxsize=3, loop=asyncio.get_running_loop())
    async with opener as pool, pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT 1")
        assert await cur.fetchone() == (1,)
    assert pool.closed


async def test_a_statement_error_leaves_the_connection_in_the_pool(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1)
    with pytest.raises(db_errors.ProgrammingError):
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute("SELECT * FROM nonexistent_table")
    async with pool.acquire() as again:
        assert again is conn


async def test_transaction_status_keeps_aiomysqls_meaning(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1, autocommit=True)
    async with pool.acquire() as conn:
        with pytest.raises(db_errors.ProgrammingError):
            await fetch(conn, "SELECT * FROM no_such_table")
        assert await fetch(conn, "SELECT @@in_transaction") == [(0,)]
        with pytest.raises(db_errors.ProgrammingError):
            await fetch(conn, "SELECT * FROM no_such_table")
        assert conn.get_transaction_status() is False  # the server said so; nothing was opened since
        await conn.begin()
        assert conn.get_transaction_status() is True
        await conn.commit()
        assert conn.get_transaction_status() is False


async def test_a_failed_statement_inside_a_transaction_still_rolls_back_on_release(
    make_pool: PoolFactory, admin: Any
) -> None:
    query(admin, "CREATE TABLE IF NOT EXISTS app.compat_locked (id INT PRIMARY KEY) ENGINE=InnoDB")
    query(admin, "INSERT IGNORE INTO app.compat_locked VALUES (1)")
    pool = await make_pool(minsize=1, maxsize=1)
    async with pool.acquire() as conn:
        await fetch(conn, "SELECT id FROM compat_locked WHERE id = 1 FOR UPDATE")  # opens a transaction, takes a lock
        with pytest.raises(db_errors.IntegrityError):
            await fetch(conn, "INSERT INTO compat_locked VALUES (1)")
    async with pool.acquire() as again:
        assert again is conn
        assert await fetch(again, "SELECT @@in_transaction") == [(0,)]


@pytest.mark.parametrize("value", [b"\x00", b"\x00'\\\xff\x1a", bytearray(b"\x01\x02"), b""])
async def test_bytes_parameters_round_trip(make_pool: PoolFactory, value: bytes | bytearray) -> None:
    pool = await make_pool(minsize=1, maxsize=1, autocommit=True)
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("CREATE TEMPORARY TABLE blobs (b BLOB)")
        await cur.execute("INSERT INTO blobs VALUES (%s)", (value,))
        await cur.execute("SELECT b, b = %s FROM blobs", [value])
        assert await cur.fetchall() == ((bytes(value), 1),)


async def test_sequence_parameters_expand_to_a_list(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1, autocommit=True)
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("CREATE TEMPORARY TABLE items (id INT, name VARCHAR(20))")
        await cur.executemany("INSERT INTO items VALUES (%s, %s)", [(1, "a"), (2, "b'"), (3, "c")])
        for ids in ((1, 3), [1, 3], {1, 3}, frozenset({1, 3})):
            await cur.execute("SELECT id FROM items WHERE id IN %s ORDER BY id", (ids,))
            assert await cur.fetchall() == ((1,), (3,))
        await cur.execute("SELECT id FROM items WHERE name IN %(names)s", {"names": ("b'", "zz")})
        assert await cur.fetchall() == ((2,),)
        assert cur.mogrify("SELECT %s", ((1, b"\x00", "x"),)) == "SELECT (1,_binary X'00','x')"


async def test_parameters_follow_no_backslash_escapes(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1, autocommit=True)
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')")
        await cur.execute("SELECT %s, %s", ("it's a \\ test", b"\\'"))
        assert await cur.fetchone() == ("it's a \\ test", b"\\'")


async def test_connections_are_aiomysql_connections_but_the_pool_is_not_an_aiomysql_pool(
    make_pool: PoolFactory,
) -> None:
    pool = await make_pool()
    async with pool.acquire() as conn:
        assert isinstance(conn, _drivers.connection_class())
        assert conn.get_autocommit() is False
        assert await conn_id(conn) > 0
    # Decided and documented in docs/migrating.md: the pool does not inherit aiomysql's internals.
    assert not isinstance(pool, aiomysql.Pool)


async def test_a_silent_statement_fails_at_read_timeout_unless_it_is_turned_off(make_pool: PoolFactory) -> None:
    # aiomysql waits for any statement as long as it takes; the pool's read_timeout (30 s by default) does not.
    assert mp.PoolOptions().read_timeout == 30
    bounded = await make_pool(minsize=0, maxsize=1, read_timeout=0.3)
    with pytest.raises(db_errors.OperationalError) as info:
        async with bounded.acquire() as conn, conn.cursor() as cur:
            await cur.execute("SELECT SLEEP(1)")
    assert info.value.args[0] == 2013 and "read_timeout=0.3 s" in info.value.args[1]
    unbounded = await make_pool(minsize=0, maxsize=1, read_timeout=0)
    async with unbounded.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT SLEEP(1)")
        assert await cur.fetchone() == (0,)


def test_deliberate_differences_are_documented() -> None:
    text = (DOCS / "migrating.md").read_text()
    section = text.split("## Deliberate differences", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| aiomysql")]
    subjects = " ".join(rows)
    for subject in (
        "maxsize=0",
        "transaction",
        "most recently",
        "refill",
        "released twice",
        "isinstance",
        "yield from",
        "RuntimeError",
        "read_timeout",
    ):
        assert subject in subjects, f"docs/migrating.md's table of differences does not mention {subject!r}"


def test_no_warning_escapes_from_the_compat_suite() -> None:
    # The suite runs with warnings as errors; the deprecated idiom's warning is the only one expected.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert issubclass(mp.PoolClosed, RuntimeError) and issubclass(mp.PoolMisuse, RuntimeError)
        assert issubclass(mp.PoolTimeout, TimeoutError)
