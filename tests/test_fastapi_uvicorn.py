"""The FastAPI integration through a real uvicorn: disconnects, failed commits, load, exhaustion, health, startup.

One uvicorn process serves ``tests/_fastapi_app.py`` for the module; its ``proxied`` pool goes through a fault
proxy that the health test blackholes.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pymysql
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from fastapi_mysqlpool.testing import ExternalServer, MySQLServer
from tests._fastapi_support import closed_port
from tests._proxy import FaultProxy
from tests._uvicorn import ROOT, free_port, uvicorn_server
from tests.conftest import proxied_dsn, query

# Generous: only a hang fails on it; the figures the tests are about are measured separately.
CLIENT_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def module_proxy(mysql_server: MySQLServer | ExternalServer) -> Iterator[FaultProxy]:
    with FaultProxy(mysql_server.host, mysql_server.port) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def base_url(mysql_server: MySQLServer | ExternalServer, module_proxy: FaultProxy, app_driver: str) -> Iterator[str]:
    admin = pymysql.connect(**mysql_server.root_connect_kwargs(), database=mysql_server.db, autocommit=True)
    try:
        query(admin, "DROP TABLE IF EXISTS fastapi_uvicorn_notes")
        query(admin, "CREATE TABLE fastapi_uvicorn_notes (id INT AUTO_INCREMENT PRIMARY KEY, text VARCHAR(100))")
        env = {
            "DATABASE_URL": mysql_server.dsn,
            "PROXIED_DATABASE_URL": proxied_dsn(mysql_server, module_proxy),
            "MYSQLPOOL_DRIVER": app_driver,
        }
        with uvicorn_server("tests._fastapi_app:app", env, ready="/pool/live") as url:
            yield url
    finally:
        query(admin, "DROP TABLE IF EXISTS fastapi_uvicorn_notes")
        admin.close()


def client(base_url: str, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=CLIENT_TIMEOUT, **kwargs)


async def pool_stats(http: httpx.AsyncClient, name: str) -> dict[str, Any]:
    response = await http.get("/pool/stats")
    assert response.status_code == 200
    stats: dict[str, Any] = response.json()["pools"][name]
    return stats


async def wait_for_stats(http: httpx.AsyncClient, name: str, key: str, value: int) -> None:
    """Poll ``/pool/stats`` until ``key`` of pool ``name`` equals ``value``; fail after 15 s."""
    deadline = time.monotonic() + 15
    while (stats := await pool_stats(http, name))[key] != value:
        assert time.monotonic() < deadline, f"pool {name!r}: {key} stayed at {stats[key]}, expected {value}"
        await asyncio.sleep(0.05)


async def assert_echoes_are_correct(http: httpx.AsyncClient, count: int) -> None:
    responses = await asyncio.gather(*(http.get("/echo", params={"value": i}) for i in range(count)))
    assert [r.status_code for r in responses] == [200] * count
    assert [r.json()["value"] for r in responses] == list(range(count))


async def test_client_disconnect_mid_query_leaves_no_poisoned_connection(base_url: str) -> None:
    async with client(base_url) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get("/sleep", params={"seconds": 1}, timeout=0.3)
        # A stream that reads from the database, abandoned after its first line: the server cancels the
        # generator while it holds a connection with most of a large unbuffered result still unread.
        async with http.stream("GET", "/stream", params={"rows": 1000}) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                assert line == "1"
                break
        await wait_for_stats(http, "default", "in_use", 0)
        await assert_echoes_are_correct(http, 30)
        stats = await pool_stats(http, "default")
    assert stats["size"] <= 3 and stats["timeouts_total"] == 0


async def test_failed_commit_is_never_2xx(base_url: str, mysql_server: MySQLServer | ExternalServer) -> None:
    async with client(base_url) as http:
        response = await http.post("/notes/commit-fails", params={"text": "lost"})
    assert response.status_code >= 500
    async with client(base_url) as http:
        assert (await http.post("/notes", params={"text": "kept"})).status_code == 200
        await wait_for_stats(http, "default", "in_use", 0)
    admin = pymysql.connect(**mysql_server.root_connect_kwargs(), database=mysql_server.db)
    try:
        assert query(admin, "SELECT text FROM fastapi_uvicorn_notes ORDER BY id") == [("kept",)]
    finally:
        admin.close()


async def test_200_concurrent_requests_on_maxsize_3_all_succeed(base_url: str) -> None:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with client(base_url, limits=limits) as http:
        before = await pool_stats(http, "default")
        started = time.monotonic()
        await assert_echoes_are_correct(http, 200)
        elapsed = time.monotonic() - started
        after = await pool_stats(http, "default")
    assert after["maxsize"] == 3 and after["size"] <= 3
    assert after["in_use"] == 0 and after["waiting"] == 0
    assert after["timeouts_total"] == before["timeouts_total"]
    assert after["acquired_total"] - before["acquired_total"] == 200
    print(f"200 concurrent requests on maxsize=3: {elapsed:.2f} s")


async def test_exhausted_pool_answers_503_with_retry_after(base_url: str) -> None:
    async with client(base_url) as http, client(base_url) as waiter, client(base_url) as rejected_client:
        holder = asyncio.ensure_future(http.get("/tight/sleep", params={"seconds": 1}))
        await wait_for_stats(waiter, "tight", "in_use", 1)
        waiting = asyncio.ensure_future(waiter.get("/tight/sleep", params={"seconds": 0}))
        await wait_for_stats(rejected_client, "tight", "waiting", 1)
        rejected = await rejected_client.get("/tight/sleep", params={"seconds": 0})
        timed_out = await waiting
        assert (await holder).status_code == 200
    for response, reason in ((timed_out, "in time"), (rejected, "waiting")):
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert reason in response.json()["detail"]


def websocket_url(base_url: str, path: str) -> str:
    return "ws" + base_url.removeprefix("http") + path


async def test_a_websocket_holds_one_connection_for_its_session_and_gives_it_back_when_it_ends(
    base_url: str,
) -> None:
    async with client(base_url) as http:
        # The module's earlier tests break connections of this pool on purpose (a killed commit, a stream abandoned
        # mid-result): what counts is that the sessions break none.
        broken_before = (await pool_stats(http, "default"))["closed_total"]["broken"]
        for ending in ("close", "abort"):
            async with ws_connect(websocket_url(base_url, "/ws/echo"), open_timeout=CLIENT_TIMEOUT) as websocket:
                ids = []
                for text in ("one", "two", "three"):
                    await websocket.send(text)
                    assert await asyncio.wait_for(websocket.recv(), CLIENT_TIMEOUT) == text
                    ids.append((await pool_stats(http, "default"))["in_use"])
                assert ids == [1, 1, 1]  # the session's one connection, held between messages
                if ending == "abort":  # the client goes away without a closing handshake
                    websocket.transport.abort()
            await wait_for_stats(http, "default", "in_use", 0)
        assert (await pool_stats(http, "default"))["closed_total"]["broken"] == broken_before
        await assert_echoes_are_correct(http, 5)


async def test_a_websocket_that_gets_no_connection_is_denied_with_503(base_url: str) -> None:
    async with client(base_url) as http, client(base_url) as watcher:
        holder = asyncio.ensure_future(http.get("/tight/sleep", params={"seconds": 1}))
        await wait_for_stats(watcher, "tight", "in_use", 1)
        with pytest.raises(InvalidStatus) as denied:
            async with ws_connect(websocket_url(base_url, "/ws/tight"), open_timeout=CLIENT_TIMEOUT):
                pass
        assert (await holder).status_code == 200
        assert denied.value.response.status_code == 503
        assert denied.value.response.headers["retry-after"] == "1"
        async with ws_connect(websocket_url(base_url, "/ws/tight"), open_timeout=CLIENT_TIMEOUT) as websocket:
            assert await asyncio.wait_for(websocket.recv(), CLIENT_TIMEOUT) == "connected"


async def test_health_is_503_within_its_bound_when_blackholed_and_recovers(
    base_url: str, module_proxy: FaultProxy
) -> None:
    async with client(base_url) as http:
        assert (await http.get("/pool/health")).status_code == 200
        module_proxy.blackhole()
        try:
            started = time.monotonic()
            response = await http.get("/pool/health")
            elapsed = time.monotonic() - started
            assert response.status_code == 503
            checks = response.json()["checks"]
            assert checks["proxied:responseTime"][0]["status"] == "fail"
            assert checks["default:responseTime"][0]["status"] == "pass"
            assert (await http.get("/pool/live")).status_code == 200
        finally:
            module_proxy.heal()
        deadline = time.monotonic() + 15
        while (await http.get("/pool/health")).status_code != 200:
            assert time.monotonic() < deadline, "health did not recover within 15 s of the network healing"
    print(f"/pool/health answered 503 in {elapsed:.2f} s with the database blackholed")


@pytest.mark.parametrize("fault", ["unreachable", "wrong password"])
@pytest.mark.usefixtures("driver")
def test_startup_fails_clearly(fault: str, mysql_server: MySQLServer | ExternalServer) -> None:
    if fault == "unreachable":
        host, port, password = "127.0.0.1", closed_port(), "secret-pw"
    else:
        host, port, password = mysql_server.host, mysql_server.port, "wrong-pw"
    dsn = f"mysql://{mysql_server.user}:{password}@{host}:{port}/{mysql_server.db}"
    env = {**os.environ, "DATABASE_URL": dsn, "PROXIED_DATABASE_URL": dsn, "MYSQLPOOL_OPEN_TIMEOUT": "1"}
    command = [sys.executable, "-m", "uvicorn", "tests._fastapi_app:app", "--port", str(free_port())]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Application startup failed" in output
    assert f"cannot open MySQL pool 'proxied' at mysql://{mysql_server.user}:***@{host}:{port}/" in output
    assert ("PoolTimeout" if fault == "unreachable" else "Access denied") in output
    assert password not in output
