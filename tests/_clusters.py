"""Helpers for tests against real clusters: the app's account on one node, and the role probe's query callable.

The connections are the driver's own (aiomysql, or asyncmy when the test takes the ``driver`` fixture on it),
not the pool's, so that what a server answers the probe is checked as each driver decodes it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiomysql

from fastapi_mysqlpool._roles import Query, ServerRole, probe_role
from fastapi_mysqlpool.testing import MySQLServer
from tests import _drivers


@asynccontextmanager
async def app_conn(node: MySQLServer, **options: Any) -> AsyncIterator[Any]:
    """The app's account on ``node`` over TCP, as a pool would connect; autocommit unless told otherwise."""
    kwargs = {**node.connect_kwargs, "autocommit": True, "connect_timeout": 5, **options}
    if _drivers.current() == "asyncmy":
        import asyncmy

        conn = await asyncmy.connect(**kwargs)
    else:
        conn = await aiomysql.connect(**kwargs)
    try:
        yield conn
    finally:
        conn.close()


def runner(conn: Any) -> Query:
    async def run(sql: str) -> list[dict[str, Any]]:
        async with conn.cursor(_dict_cursor()) as cur:
            await cur.execute(sql)
            return list(await cur.fetchall())

    return run


def _dict_cursor() -> type[Any]:
    if _drivers.current() == "asyncmy":
        from asyncmy.cursors import DictCursor

        return DictCursor  # type: ignore[no-any-return]
    return aiomysql.DictCursor  # type: ignore[no-any-return]


async def probe(node: MySQLServer, **options: Any) -> ServerRole:
    """`probe_role` on ``node`` with the app's account (or the one given in ``options``)."""
    async with app_conn(node, **options) as conn:
        return await probe_role(runner(conn), conn.get_server_info())


async def scalar(conn: Any, sql: str, *args: Any) -> Any:
    async with conn.cursor() as cur:
        await cur.execute(sql, args or None)
        row = await cur.fetchone()
        return row[0] if row else None
