"""Lifecycle hooks against the real server: configure on connect, check with the pre-ping, reset on release."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiomysql
import pymysql
import pytest

import fastapi_mysqlpool as mp
from fastapi_mysqlpool._seam import is_transient_connect_error
from tests.conftest import PoolFactory, query


async def _time_zone(conn: aiomysql.Connection) -> str:
    async with conn.cursor() as cur:
        await cur.execute("SELECT @@session.time_zone")
        (zone,) = await cur.fetchone()
    return str(zone)


async def test_configure_runs_on_every_new_connection_before_it_is_handed_out(make_pool: PoolFactory) -> None:
    configured: list[int] = []

    async def configure(conn: aiomysql.Connection) -> None:
        async with conn.cursor() as cur:
            await cur.execute("SET time_zone = '+02:00'")
        configured.append(conn.thread_id())

    pool = await make_pool(minsize=2, maxsize=3, configure=configure)
    assert len(configured) == 2
    conns = [await pool.acquire() for _ in range(3)]
    assert sorted(configured) == sorted(conn.thread_id() for conn in conns)
    assert [await _time_zone(conn) for conn in conns] == ["+02:00"] * 3
    for conn in conns:
        await pool.release(conn)


async def test_a_failing_configure_hook_fails_the_open_naming_the_hook(make_pool: PoolFactory) -> None:
    async def set_time_zone(conn: aiomysql.Connection) -> None:
        raise RuntimeError("no such zone")

    with pytest.raises(mp.HookError, match=r"configure hook .*set_time_zone failed: RuntimeError: no such zone"):
        await make_pool(minsize=1, configure=set_time_zone)


async def test_a_failing_configure_hook_discards_the_connection_and_counts_a_connect_error(
    make_pool: PoolFactory,
) -> None:
    calls = 0

    async def flaky(conn: aiomysql.Connection) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ValueError("second connection refused")

    pool = await make_pool(minsize=1, maxsize=2, configure=flaky, backoff_max=0.05)
    async with pool.acquire() as first, pool.acquire() as second:
        # The second connect's hook failed: that connection was closed, and the retry served the acquire.
        assert first.thread_id() != second.thread_id()
    stats = pool.stats()
    assert stats["connect_errors_total"] == 1
    assert "configure hook" in stats["last_error"] and "flaky" in stats["last_error"]
    assert stats["size"] == 2 and calls == 3


async def test_a_configure_hook_that_hangs_is_bounded_by_connect_timeout(
    make_pool: PoolFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async def hang(conn: aiomysql.Connection) -> None:
        await asyncio.sleep(30)

    with caplog.at_level(logging.WARNING, logger="fastapi_mysqlpool"), pytest.raises(mp.PoolTimeout):
        await make_pool(minsize=1, configure=hang, connect_timeout=0.3, open_timeout=0.5)
    # The first attempt ends at connect_timeout; the retry after it is cut short at open_timeout.
    failed = [r.getMessage() for r in caplog.records if getattr(r, "event", None) == "connect_failed"]
    assert failed and "connect timed out after 0.3 s" in failed[0], failed


async def test_a_hook_that_is_not_async_is_reported(make_pool: PoolFactory) -> None:
    def configure(conn: aiomysql.Connection) -> None:
        pass

    with pytest.raises(mp.HookError, match="not an awaitable: make it `async def`"):
        await make_pool(minsize=1, configure=configure)
    with pytest.raises(ValueError, match="invalid value for hook 'reset'"):
        await make_pool(reset="SET @x = 1")


async def test_check_runs_with_the_pre_ping_and_a_rejected_connection_is_replaced(
    make_pool: PoolFactory, caplog: pytest.LogCaptureFixture
) -> None:
    checked: list[int] = []

    async def only_once(conn: aiomysql.Connection) -> bool:
        checked.append(conn.thread_id())
        return len(checked) > 1  # the first connection checked is rejected

    caplog.set_level(logging.WARNING, "fastapi_mysqlpool")
    pool = await make_pool(minsize=1, maxsize=2, check=only_once, pre_ping_window=0)
    handed = []
    for _ in range(2):
        await asyncio.sleep(0.01)  # outside the (zero) window: every acquire pre-pings and checks
        async with pool.acquire() as conn:
            handed.append(conn.thread_id())
    assert checked[0] not in handed  # rejected, and so never handed out
    # A connection just opened for a waiter goes to it unchecked; idle again, it is checked and passes.
    assert checked[1:] == [handed[1]]
    assert pool.stats()["closed_total"]["broken"] == 1
    assert "check hook" in caplog.text and "only_once rejected the connection" in caplog.text


async def test_check_is_skipped_inside_the_pre_ping_window(make_pool: PoolFactory) -> None:
    checked = 0

    async def check(conn: aiomysql.Connection) -> None:
        nonlocal checked
        checked += 1

    pool = await make_pool(minsize=1, check=check, pre_ping_window=60)
    for _ in range(5):
        async with pool.acquire():
            pass
    assert checked == 0


async def test_reset_runs_on_every_release_and_a_failing_one_discards(make_pool: PoolFactory) -> None:
    seen: list[Any] = []

    async def reset(conn: aiomysql.Connection) -> None:
        async with conn.cursor() as cur:
            await cur.execute("SELECT @marker")
            (marker,) = await cur.fetchone()
            seen.append(marker)
            if marker == b"fail" or marker == "fail":
                raise RuntimeError("refusing")
            await cur.execute("SET @marker = NULL")

    # Rollback only, so that the hook sees what the user left (the exact reset would have cleared @marker).
    pool = await make_pool(minsize=1, maxsize=1, reset=reset, session_reset="rollback")
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SET @marker = 'used'")
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT @marker")
        assert await cur.fetchone() == (None,)  # the hook cleared it
        await cur.execute("SET @marker = 'fail'")
    async with pool.acquire() as conn:
        pass
    assert [str(m, "ascii") if isinstance(m, bytes) else m for m in seen] == ["used", "fail", None]
    assert pool.stats()["closed_total"]["reset_failed"] == 1


async def _begin(conn: aiomysql.Connection) -> None:
    async with conn.cursor() as cur:
        await cur.execute("BEGIN")


async def _autocommit_on(conn: aiomysql.Connection) -> None:
    await conn.autocommit(True)


async def _in_transaction(conn: aiomysql.Connection) -> int:
    async with conn.cursor() as cur:
        await cur.execute("SELECT @@in_transaction")
        (found,) = await cur.fetchone()
    return int(found)


async def _read(conn: aiomysql.Connection) -> None:
    async with conn.cursor() as cur:
        await cur.execute("SELECT COUNT(*) FROM information_schema.tables")  # with autocommit off: a transaction
        await cur.fetchall()


@pytest.mark.parametrize("leaves", [_begin, _read, _autocommit_on], ids=["BEGIN", "a read", "autocommit on"])
async def test_what_a_configure_hook_leaves_is_ended_before_the_connection_is_handed_out(
    make_pool: PoolFactory, leaves: Any
) -> None:
    # Only a release is checked for what a user left: what a hook leaves would reach the next acquirer unseen.
    pool = await make_pool(minsize=1, maxsize=1, configure=leaves)
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT @@in_transaction, @@autocommit")
        assert await cur.fetchone() == (0, 0)  # no transaction, and the pool's autocommit (off)


@pytest.mark.parametrize("leaves", [_begin, _read], ids=["BEGIN", "a read"])
async def test_a_check_hook_that_leaves_a_transaction_keeps_its_connection_rolled_back(
    make_pool: PoolFactory, leaves: Any
) -> None:
    pool = await make_pool(minsize=1, maxsize=1, check=leaves, pre_ping_window=0)
    async with pool.acquire() as conn:
        first = conn.thread_id()
    await asyncio.sleep(0.01)  # outside the (zero) window: the next acquire pre-pings and checks
    async with pool.acquire() as conn:
        assert conn.thread_id() == first  # checked, rolled back, handed out: not discarded
        assert await _in_transaction(conn) == 0
    assert pool.stats()["closed_total"]["broken"] == 0


@pytest.mark.parametrize("session_reset", ["rollback", "always"])
@pytest.mark.parametrize("leaves", [_begin, _read], ids=["BEGIN", "a read"])
async def test_a_reset_hook_that_leaves_a_transaction_keeps_its_connection_rolled_back(
    make_pool: PoolFactory, session_reset: str, leaves: Any
) -> None:
    pool = await make_pool(minsize=1, maxsize=1, reset=leaves, session_reset=session_reset)
    async with pool.acquire() as conn:
        first = conn.thread_id()
    async with pool.acquire() as conn:
        assert conn.thread_id() == first
        assert await _in_transaction(conn) == 0
    assert pool.stats()["closed_total"]["reset_failed"] == 0


async def test_a_reset_hook_that_hangs_is_bounded_by_reset_timeout(make_pool: PoolFactory) -> None:
    async def hang(conn: aiomysql.Connection) -> None:
        await asyncio.sleep(30)

    pool = await make_pool(minsize=0, maxsize=1, reset=hang, reset_timeout=0.2)
    async with pool.acquire():
        pass

    async def acquire_again() -> None:
        async with pool.acquire():
            pass

    await asyncio.wait_for(acquire_again(), 5)
    assert pool.stats()["closed_total"]["reset_failed"] >= 1


async def test_a_configure_hook_that_loses_its_connection_is_a_transient_connect_error(
    make_pool: PoolFactory, admin: pymysql.connections.Connection
) -> None:
    calls = 0

    async def configure(conn: aiomysql.Connection) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            query(admin, f"KILL CONNECTION {conn.thread_id()}")  # the server drops it during the hook
        async with conn.cursor() as cur:
            await cur.execute("SET time_zone = '+02:00'")

    # The first connect's hook met a dead connection: retried as any lost connect is, and the open succeeds.
    pool = await make_pool(minsize=1, maxsize=1, configure=configure, backoff_max=0.05)
    assert calls == 2 and pool.size == 1
    stats = pool.stats()
    assert stats["connect_errors_total"] == 1 and "configure hook" in stats["last_error"]
    async with pool.acquire() as conn:
        assert await _time_zone(conn) == "+02:00"


def test_a_hook_error_is_classified_by_its_cause() -> None:
    lost = mp.HookError("configure hook f failed")
    lost.__cause__ = pymysql.err.OperationalError(2013, "Lost connection to server during query")
    own = mp.HookError("configure hook f failed")
    own.__cause__ = RuntimeError("no such zone")
    assert is_transient_connect_error(lost)
    assert not is_transient_connect_error(own)
    assert not is_transient_connect_error(mp.HookError("check hook f rejected the connection"))
