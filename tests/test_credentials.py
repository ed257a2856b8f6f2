"""Rotating credentials against the real server: a callable password or connect_args, and the 1045 retry."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

import fastapi_mysqlpool as mp
from fastapi_mysqlpool.testing import ExternalServer, MySQLServer
from tests.conftest import query


@pytest.fixture
def rotating_user(
    admin: pymysql.connections.Connection, mysql_server: MySQLServer | ExternalServer
) -> Iterator[dict[str, Any]]:
    """An account of its own, whose password the test rotates with ALTER USER."""
    user = f"rot_{os.urandom(3).hex()}"
    password = f"first-{os.urandom(4).hex()}"
    query(admin, f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s", password)
    query(admin, f"GRANT ALL ON `{mysql_server.db}`.* TO '{user}'@'%'")
    kwargs = {"host": mysql_server.host, "port": mysql_server.port, "user": user, "db": mysql_server.db}
    yield {"kwargs": kwargs, "password": password, "user": user}
    query(admin, f"DROP USER '{user}'@'%'")


def _rotate(admin: pymysql.connections.Connection, user: str) -> str:
    password = f"next-{os.urandom(4).hex()}"
    query(admin, f"ALTER USER '{user}'@'%%' IDENTIFIED BY %s", password)
    return password


async def test_a_callable_password_is_called_for_each_new_connection_and_rotation_needs_no_restart(
    rotating_user: dict[str, Any], admin: pymysql.connections.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "fastapi_mysqlpool")
    current = {"password": rotating_user["password"]}
    calls = 0

    async def token() -> str:
        nonlocal calls
        calls += 1
        return current["password"]

    async with mp.create_pool(**rotating_user["kwargs"], password=token, minsize=1, maxsize=3) as pool:
        assert calls == 1
        old = [current["password"]]
        current["password"] = _rotate(admin, rotating_user["user"])
        old.append(current["password"])
        await pool.clear()  # new connections from here on: they must use the new password
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute("SELECT CURRENT_USER()")
            (who,) = await cur.fetchone()
        assert who.startswith(rotating_user["user"] + "@")
        assert calls >= 2
        exposed = repr(pool) + str(pool.stats()) + caplog.text
    for secret in old:
        assert secret not in exposed


async def test_access_denied_after_a_rotation_asks_for_fresh_credentials_once(
    rotating_user: dict[str, Any], admin: pymysql.connections.Connection
) -> None:
    stale = rotating_user["password"]
    fresh = _rotate(admin, rotating_user["user"])
    answers = [stale, fresh]  # a cache that still held the revoked password, then refreshed

    def password() -> str:
        return answers.pop(0)

    async with mp.create_pool(**rotating_user["kwargs"], password=password, minsize=1) as pool:
        assert answers == [] and pool.stats()["connect_errors_total"] == 0


async def test_credentials_that_stay_wrong_fail_after_one_retry_without_the_password_in_the_error(
    rotating_user: dict[str, Any],
) -> None:
    calls = 0

    def password() -> str:
        nonlocal calls
        calls += 1
        return "wrong-secret-value"

    with pytest.raises(pymysql.err.OperationalError) as caught:
        await mp.create_pool(**rotating_user["kwargs"], password=password, minsize=1)
    assert caught.value.args[0] == 1045 and calls == 2
    assert "wrong-secret-value" not in str(caught.value)


async def test_connect_args_callable_supplies_user_and_password(
    rotating_user: dict[str, Any], mysql_server: MySQLServer | ExternalServer
) -> None:
    kwargs = dict(rotating_user["kwargs"])
    user = kwargs.pop("user")

    async def connect_args() -> dict[str, Any]:
        return {"user": user, "password": rotating_user["password"]}

    async with mp.create_pool(**kwargs, connect_args=connect_args, minsize=1) as pool:
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute("SELECT CURRENT_USER()")
            (who,) = await cur.fetchone()
        assert who.startswith(user + "@")


async def test_bad_credential_sources_are_rejected_before_connecting(mysql_dsn: str) -> None:
    with pytest.raises(ValueError, match="invalid password: a int"):
        mp.create_pool(dsn=mysql_dsn, password=1234)
    with pytest.raises(ValueError, match="invalid connect_args: a dict"):
        mp.create_pool(dsn=mysql_dsn, connect_args={"user": "x"})

    def misspelt() -> dict[str, Any]:
        return {"usr": "x"}

    with pytest.raises(TypeError, match="unknown connect argument 'usr'"):
        await mp.create_pool(dsn=mysql_dsn, connect_args=misspelt, minsize=1)

    def own_autocommit() -> dict[str, Any]:
        return {"user": "app", "autocommit": True}

    with pytest.raises(TypeError, match="returned autocommit: set it once, as the pool's option"):
        await mp.create_pool(dsn=mysql_dsn, connect_args=own_autocommit, minsize=1)
