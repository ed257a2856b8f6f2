"""Connect failures: one attempt at a time while the server is down, permanent errors at once,
``fail_fast`` only when nothing can serve, a log that does not flood, and connections judged by
their own state rather than by the exceptions that pass through a block."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest

import fastapi_mysqlpool as mp
from fastapi_mysqlpool.testing import ExternalServer, MySQLServer
from tests import _drivers
from tests._drivers import db_errors
from tests.conftest import PoolFactory, query
from tests.test_logging import logs  # noqa: F401 (a fixture)
from tests.test_pool import conn_id, fetch

pytestmark = pytest.mark.usefixtures("driver")

LOGGER = "fastapi_mysqlpool"


def refusing_port() -> int:
    """A port on 127.0.0.1 where nothing listens: every connect is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def refused_dsn(**params: Any) -> str:
    query_string = "&".join(f"{k}={v}" for k, v in params.items())
    return f"mysql://app:pw@127.0.0.1:{refusing_port()}/app?{query_string}"


@pytest.mark.parametrize("how", ["10 waiters", "minsize=10"])
async def test_one_connect_at_a_time_while_the_server_is_down(how: str) -> None:
    dsn = refused_dsn(wait_open="false", maxsize=10, backoff_max=0.2, connect_timeout=1)
    pool = await mp.create_pool(dsn=dsn, minsize=10 if how == "minsize=10" else 0)
    try:
        waiters = [asyncio.create_task(pool.acquire(timeout=2)) for _ in range(10 if how == "10 waiters" else 0)]
        opening = []
        for _ in range(40):
            await asyncio.sleep(0.05)
            opening.append(pool.stats()["opening"])
        await asyncio.gather(*waiters, return_exceptions=True)
        attempts = pool.stats()["connect_errors_total"]
        # The first burst (one connect per waiter, before anything is known to be down) fails at once;
        # then one retrier with pauses of 0.1-0.2 s makes at most 20 more in 2 s. A retry loop per
        # connect made 131-135.
        assert 0 < attempts <= 10 + 20, attempts
        assert max(opening) <= 1, opening
        assert pool.size <= 1
    finally:
        pool.close()
        await pool.wait_closed()


async def test_open_retries_one_connect_at_a_time() -> None:
    dsn = refused_dsn(maxsize=10, backoff_max=0.2, connect_timeout=1, open_timeout=2)
    with pytest.raises(mp.PoolTimeout, match="could not open 10 connection"):
        await mp.create_pool(dsn=dsn, minsize=10)


async def test_open_retry_attempts_are_bounded(logs: Callable[..., list[logging.LogRecord]]) -> None:  # noqa: F811
    dsn = refused_dsn(maxsize=10, backoff_max=0.2, connect_timeout=1, open_timeout=2)
    with pytest.raises(mp.PoolTimeout):
        await mp.create_pool(dsn=dsn, minsize=10)
    failed = logs("connect_failed")
    # 10 attempts at the first try, then one at a time: about 20 in all over 2 s; and the log
    # says it once, not once per attempt.
    assert len(failed) == 1, [r.getMessage() for r in failed]
    assert failed[0].attempt <= 30  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("unknown host", "Can't connect"),
        ("wrong password", "Access denied"),
        ("unknown database", "Unknown database|Access denied for user .* to database"),
    ],
)
async def test_permanent_connect_errors_fail_at_once(
    mysql_server: MySQLServer | ExternalServer,
    target: str,
    message: str,
    logs: Callable[..., list[logging.LogRecord]],  # noqa: F811
) -> None:
    user, password, host, port, db = "app", "pw", mysql_server.host, mysql_server.port, "app"
    kwargs = mysql_server.connect_kwargs
    if target == "unknown host":
        host = "no-such-host.invalid"
    elif target == "wrong password":
        user, password = kwargs["user"], "certainly-not-the-password"
    else:
        user, password, db = kwargs["user"], kwargs["password"], "no_such_database"
    dsn = f"mysql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{db}"
    started = time.monotonic()
    with pytest.raises(db_errors.OperationalError, match=message):
        await mp.create_pool(dsn=dsn, minsize=2, open_timeout=10)
    assert time.monotonic() - started < 5  # not the 10 s of open_timeout
    assert not logs("connect_failed")  # failed at once: no retry was announced


async def test_permanent_error_fails_waiters_when_nothing_can_serve(mysql_server: MySQLServer | ExternalServer) -> None:
    dsn = f"mysql://app:pw@no-such-host.invalid:{mysql_server.port}/app"
    pool = await mp.create_pool(dsn=dsn, minsize=0, wait_open=False)
    try:
        with pytest.raises(db_errors.OperationalError, match="Can't connect"):
            await pool.acquire(timeout=10)
        assert pool.stats()["connect_errors_total"] == 1
    finally:
        pool.close()
        await pool.wait_closed()


async def test_retries_are_logged_once_per_period_with_a_count(
    logs: Callable[..., list[logging.LogRecord]],  # noqa: F811
) -> None:
    pool = await mp.create_pool(dsn=refused_dsn(wait_open="false", backoff_max=0.05, connect_timeout=1), minsize=1)
    try:
        await asyncio.sleep(1.5)
        attempts = pool.stats()["connect_errors_total"]
        failed = logs("connect_failed")
        assert attempts >= 5
        assert len(failed) == 1, [r.getMessage() for r in failed]
        assert failed[0].levelno == logging.WARNING
    finally:
        pool.close()
        await pool.wait_closed()


@pytest.fixture
def capped_user(mysql_server: MySQLServer | ExternalServer, admin: Any) -> Iterator[str]:
    """A user the server lets open at most 3 connections at a time (error 1226 beyond)."""
    if isinstance(mysql_server, ExternalServer):
        pytest.fail("this test creates a user; it needs the throwaway server, not an external one")
    query(admin, "CREATE OR REPLACE USER 'capped'@'%' IDENTIFIED BY 'capped-pw' WITH MAX_USER_CONNECTIONS 3")
    query(admin, f"GRANT ALL ON `{mysql_server.db}`.* TO 'capped'@'%'")
    yield f"mysql://capped:capped-pw@{mysql_server.host}:{mysql_server.port}/{mysql_server.db}"
    query(admin, "DROP USER 'capped'@'%'")


async def test_fail_fast_does_not_fail_requests_that_live_connections_serve(capped_user: str) -> None:
    pool = await mp.create_pool(dsn=capped_user, minsize=1, maxsize=8, fail_fast=True, acquire_timeout=10)
    failures: list[BaseException] = []
    done = 0

    async def worker() -> None:
        nonlocal done
        for _ in range(50):
            try:
                async with pool.acquire() as conn:
                    await fetch(conn, "SELECT SLEEP(0.001)")
                done += 1
            except Exception as exc:
                failures.append(exc)

    try:
        await asyncio.gather(*(worker() for _ in range(12)))
        stats = pool.stats()
    finally:
        pool.close()
        await pool.wait_closed()
    assert stats["connect_errors_total"] > 0, "the server's connection cap was never reached"
    assert failures == [], f"{len(failures)} of 600 failed, e.g. {failures[0]!r}"
    assert done == 600


async def test_fail_fast_still_fails_at_once_when_nothing_can_serve() -> None:
    pool = await mp.create_pool(dsn=refused_dsn(wait_open="false", fail_fast="true"), minsize=0)
    try:
        started = time.monotonic()
        with pytest.raises(db_errors.OperationalError, match="Can't connect"):
            await pool.acquire(timeout=10)
        assert time.monotonic() - started < 5
    finally:
        pool.close()
        await pool.wait_closed()


async def test_an_idle_connection_whose_socket_was_reset_is_replaced(make_pool: PoolFactory) -> None:
    pool = await make_pool(minsize=1, maxsize=1)  # within the pre-ping window: no ping on the next checkout
    async with pool.acquire() as conn:
        before = await conn_id(conn)
    _drivers.reset_socket(conn)  # what asyncio does on a TCP reset
    async with pool.acquire() as again:
        assert await fetch(again, "SELECT 1") == [(1,)]
        assert await conn_id(again) != before
    assert pool.stats()["closed_total"]["broken"] == 1


@pytest.mark.parametrize(
    "error",
    [TimeoutError("someone else's timeout"), mp.PoolTimeout("from another pool"), ConnectionResetError("elsewhere")],
)
async def test_an_error_that_did_not_come_from_the_connection_keeps_it(
    make_pool: PoolFactory, error: Exception
) -> None:
    pool = await make_pool(minsize=1, maxsize=1)
    async with pool.acquire() as conn:
        before = await conn_id(conn)
    with pytest.raises(type(error)):
        async with pool.acquire() as conn:
            await fetch(conn, "SELECT 1")
            raise error
    async with pool.acquire() as again:
        assert await conn_id(again) == before
    assert pool.stats()["closed_total"]["broken"] == 0


async def test_an_error_of_the_connection_itself_still_discards_it(make_pool: PoolFactory, admin: Any) -> None:
    pool = await make_pool(minsize=1, maxsize=1)
    with pytest.raises(db_errors.OperationalError):
        async with pool.acquire() as conn:
            query(admin, f"KILL {await conn_id(conn)}")
            await fetch(conn, "SELECT 1")
    assert pool.stats()["closed_total"]["broken"] == 1
    async with pool.acquire() as again:
        assert await fetch(again, "SELECT 1") == [(1,)]
