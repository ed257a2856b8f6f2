"""Helpers for tests against real clusters: the app's account on one node, and the role probe's query callable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiomysql

from fastapi_mysqlpool._roles import Query, ServerRole, probe_role
from fastapi_mysqlpool.testing import MySQLServer


@asynccontextmanager
async def app_conn(node: MySQLServer, **options: Any) -> AsyncIterator[aiomysql.Connection]:
    """The app's account on ``node`` over TCP, as a pool would connect; autocommit unless told otherwise."""
    conn = await aiomysql.connect(**{**node.connect_kwargs, "autocommit": True, "connect_timeout": 5, **options})
    try:
        yield conn
    finally:
        conn.close()


def runner(conn: aiomysql.Connection) -> Query:
    async def run(sql: str) -> list[dict[str, Any]]:
        async with conn.cursor(aiomysql.DictCursor) as cur:
            await cur.execute(sql)
            return list(await cur.fetchall())

    return run


async def probe(node: MySQLServer, **options: Any) -> ServerRole:
    """`probe_role` on ``node`` with the app's account (or the one given in ``options``)."""
    async with app_conn(node, **options) as conn:
        return await probe_role(runner(conn), conn.get_server_info())


async def scalar(conn: aiomysql.Connection, sql: str, *args: Any) -> Any:
    async with conn.cursor() as cur:
        await cur.execute(sql, args or None)
        row = await cur.fetchone()
        return row[0] if row else None
