"""Background work on idle connections, against a real server: server-closed ones retired, keepalive pings."""

from __future__ import annotations

import ast
import asyncio
import time
from pathlib import Path
from typing import Any

import fastapi_mysqlpool
from tests.conftest import PoolFactory, query
from tests.test_pool import conn_id


def server_ids(admin: Any) -> set[int]:
    return {int(row[0]) for row in query(admin, "SELECT ID FROM information_schema.PROCESSLIST")}


async def test_killed_idle_connections_are_replaced_in_the_background(make_pool: PoolFactory, admin: Any) -> None:
    pool = await make_pool(minsize=2, maxsize=4)
    async with pool.acquire() as a, pool.acquire() as b:
        killed = {await conn_id(a), await conn_id(b)}
    before = pool.stats()
    for cid in killed:
        query(admin, f"KILL {cid}")
    started = time.monotonic()
    # No acquire: the socket's EOF alone tells the pool, whose maintenance retires and replaces them.
    while (now := pool.stats())["created_total"] < before["created_total"] + 2 or now["free"] < 2:
        assert time.monotonic() - started < 5, pool.stats()
        await asyncio.sleep(0.05)
    after = pool.stats()
    assert after["acquired_total"] == before["acquired_total"]
    assert after["closed_total"]["broken"] == before["closed_total"]["broken"] + 2
    assert (after["size"], after["free"]) == (2, 2)
    # What stats() counts exists on the server, and the killed sessions are gone from both.
    live = server_ids(admin)
    async with pool.acquire() as c, pool.acquire() as d:
        ids = {await conn_id(c), await conn_id(d)}
    assert ids <= live
    assert not ids & killed


async def test_keepalive_pings_idle_connections(make_pool: PoolFactory, admin: Any) -> None:
    pool = await make_pool(minsize=1, maxsize=1, keepalive_interval=0.2, pre_ping_window=60)
    async with pool.acquire() as conn:
        cid = await conn_id(conn)
    await asyncio.sleep(1.5)
    # The server's own clock of the session's last command: a ping every ~0.2 s keeps it far below 1.5 s.
    (idle_ms,) = query(admin, "SELECT TIME_MS FROM information_schema.PROCESSLIST WHERE ID = %s", cid)[0]
    assert idle_ms < 1000, idle_ms
    assert pool.stats()["closed_total"]["broken"] == 0


async def test_no_keepalive_by_default(make_pool: PoolFactory, admin: Any) -> None:
    pool = await make_pool(minsize=1, maxsize=1, pre_ping_window=60)
    async with pool.acquire() as conn:
        cid = await conn_id(conn)
    await asyncio.sleep(1.2)
    (idle_ms,) = query(admin, "SELECT TIME_MS FROM information_schema.PROCESSLIST WHERE ID = %s", cid)[0]
    assert idle_ms >= 1000, idle_ms


async def test_keepalive_is_not_a_use_for_max_idle(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=0, maxsize=1, max_idle=0.6, keepalive_interval=0.1)
    async with pool.acquire():
        pass
    started = time.monotonic()
    while pool.stats()["closed_total"]["idle"] == 0:
        assert time.monotonic() - started < 5, pool.stats()
        await asyncio.sleep(0.05)
    assert pool.size == 0


def test_the_modules_around_the_pool_do_not_import_it() -> None:
    # Only the pool changes its free list and counts: the modules it delegates to see it through a
    # Protocol of the operations it exposes, so none of them imports it back, not even for typing.
    package = Path(fastapi_mysqlpool.__file__).parent
    around = [
        "_maintenance",
        "_resize",
        "_connector",
        "_waiters",
        "_entry",
        "_acquire",
        "_tasks",
        "_reconnect",
        "_stats",
    ]
    importers = []
    for name in around:
        tree = ast.parse((package / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module == "_pool":
                importers.append(name)
    assert importers == []
