"""``create_pool``'s result is a real coroutine, as aiomysql's is: awaitable, a task, and an async context manager."""

from __future__ import annotations

import asyncio
import collections.abc
import gc
import importlib
import time
from typing import Any

import pytest

import fastapi_mysqlpool as mp
from fastapi_mysqlpool.testing import ExternalServer, MySQLServer
from tests._proxy import FaultProxy
from tests.conftest import proxied_dsn, query


async def test_create_pool_can_be_awaited_scheduled_gathered_or_entered(mysql_dsn: str) -> None:
    opener = mp.create_pool(dsn=mysql_dsn, minsize=1, maxsize=2)
    assert isinstance(opener, collections.abc.Coroutine) and asyncio.iscoroutine(opener)
    pools = [
        await asyncio.create_task(opener),
        await asyncio.ensure_future(mp.create_pool(dsn=mysql_dsn, minsize=1)),
        *await asyncio.gather(mp.create_pool(dsn=mysql_dsn, minsize=1)),
    ]
    try:
        for pool in pools:
            async with pool.acquire() as conn, conn.cursor() as cur:
                await cur.execute("SELECT 1")
                assert await cur.fetchone() == (1,)
    finally:
        for pool in pools:
            pool.close()
            await pool.wait_closed()
    async with mp.create_pool(dsn=mysql_dsn, minsize=1) as pool:
        assert pool.size == 1
    assert pool.closed


async def test_an_opening_task_can_be_cancelled(mysql_dsn: str) -> None:
    task = asyncio.create_task(mp.create_pool(dsn=mysql_dsn, minsize=1))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_an_opener_never_used_leaves_no_coroutine_unawaited(mysql_dsn: str) -> None:
    # Warnings are errors here: a coroutine made and never awaited would fail the test when it is collected.
    opener = mp.create_pool(dsn=mysql_dsn)
    opener.close()
    del opener
    gc.collect()


@pytest.mark.parametrize(
    ("scheme", "driver", "module"),
    [
        ("mysql+asyncmy", "asyncmy", "asyncmy"),
        ("mariadb+asyncmy", "asyncmy", "asyncmy"),
        ("mysql+aiomysql", "aiomysql", "aiomysql"),
        ("mariadb+aiomysql", "aiomysql", "aiomysql"),
    ],
)
async def test_a_scheme_that_names_a_driver_opens_the_pool_on_it(
    mysql_dsn: str, scheme: str, driver: str, module: str
) -> None:
    dsn = scheme + mysql_dsn[mysql_dsn.index("://") :]
    assert mp.parse_dsn(dsn).pool_options["driver"] == driver
    async with mp.create_pool(dsn=dsn, minsize=1) as pool, pool.acquire() as conn:
        assert pool.driver.name == driver
        assert isinstance(conn, importlib.import_module(module).Connection)
        async with conn.cursor() as cur:
            await cur.execute("SELECT 1")
            assert await cur.fetchone() == (1,)


def test_a_scheme_and_a_query_that_name_two_drivers_are_refused() -> None:
    with pytest.raises(
        ValueError, match=r"scheme mysql\+asyncmy:// names the driver 'asyncmy'.*driver= names 'aiomysql'"
    ):
        mp.parse_dsn("mysql+asyncmy://app:pw@h/db?driver=aiomysql")
    # The same driver twice is no conflict, and a keyword argument still wins over the DSN.
    assert mp.parse_dsn("mysql+asyncmy://app:pw@h/db?driver=asyncmy").pool_options["driver"] == "asyncmy"
    assert "driver" not in mp.parse_dsn("mysql://app:pw@h/db").pool_options


# ---------------------------------------------------------------- a create_pool cancelled while it opens


async def _sessions_gone(admin: Any, user: str, proxy: FaultProxy) -> tuple[int, int]:
    """Poll (bounded) until the server holds no session of ``user`` and the proxy no client connection: the server
    and the proxy notice a closed socket a moment after the client closed it. Returns what is left."""
    left = (-1, -1)
    for _ in range(100):
        sessions = query(admin, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s", user)[0][0]
        left = (int(sessions), proxy.active_connections)
        if left == (0, 0):
            break
        await asyncio.sleep(0.05)
    return left


@pytest.mark.parametrize("how", ["wait_for", "cancel"])
async def test_a_create_pool_cancelled_while_it_opens_leaves_no_session_task_or_socket(
    driver: str, mysql_server: MySQLServer | ExternalServer, proxy: FaultProxy, admin: Any, how: str
) -> None:
    # Each round trip takes 30 ms through the proxy, and opening the five connections about 0.17 s: the cancels,
    # 6 ms apart, land at every step of the connects (the TCP connect, the handshake, the session settings, the
    # first connection's probe) and between them.
    proxy.set_latency(0.015)
    dsn = proxied_dsn(mysql_server, proxy)
    for step in range(30):
        after = step * 0.006
        before = asyncio.all_tasks()
        opening = mp.create_pool(dsn=dsn, minsize=5, maxsize=5, connect_timeout=5)
        try:
            if how == "wait_for":
                pool = await asyncio.wait_for(opening, after)
            else:
                task = asyncio.create_task(opening)
                await asyncio.sleep(after)
                task.cancel()
                pool = await task
        except (asyncio.CancelledError, asyncio.TimeoutError):
            pass
        else:
            pool.close()  # opened before the cancel: a pool like any other
            await pool.wait_closed()
        # Nothing of the pool runs once its create_pool has raised: every connect task it started has ended.
        assert asyncio.all_tasks() - before == set(), after
        assert await _sessions_gone(admin, mysql_server.user, proxy) == (0, 0), after
        gc.collect()  # a socket left for the garbage collector fails the test here (ResourceWarning is an error)


async def test_open_timeout_bounds_create_pool_even_when_one_connect_may_take_longer(
    driver: str, mysql_server: MySQLServer | ExternalServer, proxy: FaultProxy
) -> None:
    proxy.blackhole()  # accepts the TCP connection, then never answers the handshake
    before = asyncio.all_tasks()
    started = time.monotonic()
    with pytest.raises(mp.PoolTimeout) as info:
        await mp.create_pool(dsn=proxied_dsn(mysql_server, proxy), minsize=2, connect_timeout=10, open_timeout=0.5)
    # About open_timeout, not connect_timeout; the bound only guards against a hang.
    assert time.monotonic() - started < 5
    assert "could not open 2 connection(s) within 0.5 s (open_timeout); last error" in str(info.value)
    assert "connect timed out at open_timeout=0.5 s" in str(info.value)
    assert asyncio.all_tasks() - before == set()


async def test_a_host_that_never_answers_leaves_open_timeout_to_the_hosts_after_it(
    driver: str, mysql_server: MySQLServer | ExternalServer, proxy: FaultProxy
) -> None:
    """Several hosts: open_timeout is shared among the hosts left to try, so the one listed first, which
    accepts the TCP connection and then never answers, cannot use it all up before the one that serves."""
    proxy.blackhole()
    hosts = [(proxy.host, proxy.port), (mysql_server.host, mysql_server.port)]
    started = time.monotonic()
    async with mp.create_pool(dsn=mysql_server.dsn, host=hosts, minsize=2, connect_timeout=10, open_timeout=2) as pool:
        assert time.monotonic() - started < 8  # only a hang fails here; 10 s is the connect_timeout
        async with pool.acquire() as conn, conn.cursor() as cursor:
            await cursor.execute("SELECT @@port")
            assert (await cursor.fetchone())[0] == mysql_server.port
        states = {h["host"]: h["state"] for h in pool.stats()["hosts"]}
    assert states == {f"{proxy.host}:{proxy.port}": "down", f"{mysql_server.host}:{mysql_server.port}": "up"}


async def test_every_host_is_tried_before_open_timeout_fails_create_pool(
    driver: str, mysql_server: MySQLServer | ExternalServer, proxy: FaultProxy
) -> None:
    with FaultProxy(mysql_server.host, mysql_server.port) as second:
        for silent in (proxy, second):
            silent.blackhole()
        hosts = [(proxy.host, proxy.port), (second.host, second.port)]
        with pytest.raises(mp.PoolTimeout) as info:
            await mp.create_pool(dsn=mysql_server.dsn, host=hosts, minsize=1, connect_timeout=10, open_timeout=1)
        # Neither host is reported down without an attempt of its own.
        assert proxy.total_connections >= 1
        assert second.total_connections >= 1
    assert "within 1 s (open_timeout)" in str(info.value)
