"""Passwords outside Latin-1: accepted where the server accepts them, and never shown."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pymysql
import pytest

import fastapi_mysqlpool as mp
from fastapi_mysqlpool.testing import ExternalServer, MySQLServer
from tests.conftest import query
from tests.test_logging import logs  # noqa: F401 (a fixture)
from tests.test_pool import fetch

PASSWORD = "Zq€9-日本語-ß-🔑"


@pytest.fixture
def unicode_user(mysql_server: MySQLServer | ExternalServer, admin: Any) -> Iterator[str]:
    if isinstance(mysql_server, ExternalServer):
        pytest.fail("this test creates a user; it needs the throwaway server, not an external one")
    admin.set_character_set("utf8mb4")
    query(admin, "CREATE OR REPLACE USER 'uni'@'%%' IDENTIFIED BY %s", PASSWORD)
    query(admin, f"GRANT ALL ON `{mysql_server.db}`.* TO 'uni'@'%'")
    yield f"{mysql_server.host}:{mysql_server.port}/{mysql_server.db}"
    query(admin, "DROP USER 'uni'@'%'")


async def test_a_password_outside_latin1_connects(unicode_user: str) -> None:
    dsn = f"mysql://uni:{quote(PASSWORD, safe='')}@{unicode_user}"
    async with mp.create_pool(dsn=dsn, minsize=1) as pool, pool.acquire() as conn:
        assert await fetch(conn, "SELECT CURRENT_USER()") == [("uni@%",)]
    async with mp.create_pool(dsn=f"mysql://uni@{unicode_user}", password=PASSWORD, minsize=1) as pool:
        assert pool.size == 1


async def test_a_wrong_password_outside_latin1_is_never_shown(
    unicode_user: str,
    logs: Callable[..., list[logging.LogRecord]],  # noqa: F811
) -> None:
    wrong = "Wr€ng-ü-secret-🔒"
    dsn = f"mysql://uni:{quote(wrong, safe='')}@{unicode_user}"
    with pytest.raises(pymysql.err.OperationalError, match="Access denied") as failed:
        await mp.create_pool(dsn=dsn, minsize=1)
    texts = [str(failed.value), repr(failed.value)]
    pool = await mp.create_pool(dsn=dsn, minsize=0, wait_open=False)
    try:
        with pytest.raises(pymysql.err.OperationalError, match="Access denied") as waited:
            await pool.acquire(timeout=1)
        texts += [str(waited.value), repr(waited.value), repr(pool), str(pool.stats())]
    finally:
        pool.close()
        await pool.wait_closed()
    texts += [record.getMessage() for record in logs()] + [str(vars(record)) for record in logs()]
    for text in texts:
        for part in ("Wr€ng", "secret", "🔒", quote(wrong, safe="")):
            assert part not in text, text
