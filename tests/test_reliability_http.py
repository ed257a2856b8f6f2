"""Reliability over HTTP: the FastAPI integration under the same faults, and a graceful shutdown under uvicorn.

Scenarios 1, 4, 7 and 8 at the HTTP level, and scenario 9, of docs/reliability.md. The in-process scenarios run
the app with its lifespan through httpx's ASGI transport; the shutdown scenario needs a real server process, so it
runs uvicorn and stops it with SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pymysql
import pytest

import fastapi_mysqlpool as mp
from fastapi_mysqlpool.testing import ExternalServer, MySQLServer
from tests._fastapi_support import serve
from tests._proxy import FaultProxy
from tests._reliability import (
    ACCOUNTS,
    FAST,
    QUERY_TIMEOUT,
    Bank,
    KillCount,
    Load,
    ServiceUnavailable,
    UnexpectedStatus,
    failures_after,
    kill_connections,
    percentile,
    record_figure,
    recovery_seconds,
    reliability_app,
    unclean,
)
from tests._uvicorn import free_port
from tests.conftest import proxied_dsn

pytestmark = pytest.mark.usefixtures("driver")

RECOVERY_BOUND = 2.0
DEADLINE = FAST["acquire_timeout"] + QUERY_TIMEOUT + 1.0
ROOT = Path(__file__).resolve().parent.parent


async def _get_sleep(client: httpx.AsyncClient) -> None:
    response = await client.get("/sleep", params={"seconds": 0.01})
    if response.status_code == 503:
        assert response.headers["retry-after"]
        raise ServiceUnavailable(response.text)
    if response.status_code != 200:
        raise UnexpectedStatus(f"{response.status_code}: {response.text}")


@pytest.mark.fault
async def test_http_server_killed_and_restarted_answers_only_200_or_503_and_recovers(
    private_mysql_server: MySQLServer, request: pytest.FixtureRequest
) -> None:
    server = private_mysql_server
    async with serve(reliability_app(server.dsn, minsize=5, maxsize=10, **FAST)) as client:
        load = Load(client, 24, DEADLINE, _get_sleep).start()
        await asyncio.sleep(0.5)
        killed = time.monotonic()
        await asyncio.to_thread(server.kill)
        await asyncio.sleep(1.5)
        await asyncio.to_thread(server.start)
        ready = time.monotonic()
        await asyncio.sleep(RECOVERY_BOUND + 1.0)
        ops = await load.stop()
        health = await client.get("/pool/health")

    assert unclean(ops) == []
    assert any(op.outcome == "ServiceUnavailable" for op in ops), "the crash went unnoticed over HTTP"
    assert [op for op in ops if not op.ok and op.ended < killed] == []
    assert failures_after(ops, ready + RECOVERY_BOUND) == []
    assert health.status_code == 200
    record_figure(request, "1-server-killed-http", "recovery_seconds", recovery_seconds(ops, ready), "s")
    record_figure(request, "1-server-killed-http", "503_during_outage", sum(not op.ok for op in ops), "responses")


@pytest.mark.fault
async def test_http_health_says_503_within_its_bound_while_blackholed_and_200_after(
    mysql_server: MySQLServer | ExternalServer, proxy: FaultProxy, request: pytest.FixtureRequest
) -> None:
    async with serve(reliability_app(proxied_dsn(mysql_server, proxy), minsize=2, maxsize=4, **FAST)) as client:
        assert (await client.get("/pool/health")).status_code == 200
        proxy.blackhole()
        worst = 0.0
        for _ in range(3):
            started = time.monotonic()
            response = await asyncio.wait_for(client.get("/pool/health"), DEADLINE)
            worst = max(worst, time.monotonic() - started)
            assert response.status_code == 503
        started = time.monotonic()
        data = await asyncio.wait_for(client.get("/sleep"), DEADLINE)
        assert data.status_code == 503
        record_figure(request, "4-blackhole-http", "worst_health_seconds", worst, "s")
        record_figure(request, "4-blackhole-http", "request_503_seconds", time.monotonic() - started, "s")
        proxy.heal()
        healed = time.monotonic()

        async def healthy() -> bool:
            return (await client.get("/pool/health")).status_code == 200

        while not await healthy():
            assert time.monotonic() - healed < 10, "health never came back after the network did"
            await asyncio.sleep(0.05)
        record_figure(request, "4-blackhole-http", "health_recovery_seconds", time.monotonic() - healed, "s")


async def test_http_overload_rejects_the_excess_with_503_and_serves_the_rest(
    mysql_dsn: str, request: pytest.FixtureRequest
) -> None:
    app = reliability_app(mysql_dsn, minsize=10, maxsize=10, max_waiting=50, acquire_timeout=10.0)
    async with serve(app) as client:

        async def one() -> tuple[int, float, str]:
            started = time.monotonic()
            response = await client.get("/sleep", params={"seconds": 0.01})
            return response.status_code, time.monotonic() - started, response.headers.get("retry-after", "")

        results = await asyncio.gather(*(one() for _ in range(1000)))
        stats = (await client.get("/pool/stats")).json()
        health = await client.get("/pool/health")

    served = [seconds for status, seconds, _ in results if status == 200]
    rejected = [seconds for status, seconds, retry in results if status == 503 and retry]
    record_figure(request, "7-overload-http", "served", len(served), "requests")
    record_figure(request, "7-overload-http", "rejected", len(rejected), "requests")
    record_figure(request, "7-overload-http", "served_p99_seconds", percentile(served, 0.99), "s")
    record_figure(request, "7-overload-http", "rejected_p99_seconds", percentile(rejected, 0.99), "s")
    assert len(served) + len(rejected) == 1000
    # Requests made in-process arrive as fast as one CPU parses them, not all at once: at least a pool's worth
    # is served, the excess is refused, and nobody is left to time out in the queue.
    assert len(served) >= 10
    assert rejected
    # Most 503s are the pool's max_waiting refusals; the rest are the app's own query bound, which on a saturated
    # event loop also counts the time the loop spent on other requests.
    assert 0 < stats["pools"]["default"]["rejected_total"] <= len(rejected)
    assert stats["pools"]["default"]["timeouts_total"] == 0
    assert health.status_code == 200


@pytest.mark.fault
async def test_http_2xx_always_means_committed_while_connections_are_killed(
    mysql_server: MySQLServer | ExternalServer,
    admin: pymysql.connections.Connection,
    request: pytest.FixtureRequest,
) -> None:
    bank = Bank(f"rel_{os.urandom(4).hex()}")
    try:
        async with serve(reliability_app(mysql_server.dsn, bank=bank.prefix, minsize=4, maxsize=8, **FAST)) as client:
            async with mp.create_pool(dsn=mysql_server.dsn, minsize=1) as setup:
                await bank.open(setup)
            rng = random.Random(88)
            stop = asyncio.Event()
            killed = KillCount()
            killing = asyncio.create_task(kill_connections(admin, mysql_server.user, stop, seed=88, killed=killed))

            async def client_loop(first: int) -> None:
                # 40 transfers each, and more (up to 400) until enough connections have been killed under them.
                for transfer in range(first, first + 400):
                    if transfer >= first + 40 and killed.value >= 15:
                        break
                    src, dst = rng.sample(range(ACCOUNTS), 2)
                    params = {"transfer": transfer, "src": src, "dst": dst, "amount": rng.randint(1, 50)}
                    response = await client.post("/transfer", params=params)
                    if 200 <= response.status_code < 300:
                        bank.committed.add(transfer)
                    else:
                        # Over HTTP the client cannot tell a lost commit from an early failure: no claim either way.
                        bank.failed(transfer, str(response.status_code), commit_sent=True)

            await asyncio.gather(*(client_loop(c * 1000) for c in range(16)))
            stop.set()
            kills = await killing
        record_figure(request, "8-integrity-http", "kills", kills, "connections")
        record_figure(request, "8-integrity-http", "2xx", len(bank.committed), "transfers")
        record_figure(request, "8-integrity-http", "non_2xx", len(bank.ambiguous), "transfers")
        assert kills > 10
        assert bank.ambiguous, "no transfer failed: the scenario tested nothing"
        # 503: no connection, or one lost before the commit; 500: one lost during the commit, which may have
        # committed (CommitOutcomeUnknown), so it is not a 503 that invites a retry.
        assert set(bank.errors) <= {"503", "500"}, bank.errors
        bank.assert_books_balance(admin)
    finally:
        for table in ("accounts", "ledger"):
            with admin.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS app.{bank.prefix}_{table}")


def _aborted_clients(server: MySQLServer) -> int:
    conn = pymysql.connect(**server.root_connect_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE 'Aborted_clients'")
            return int(cur.fetchone()[1])
    finally:
        conn.close()


@pytest.mark.fault
async def test_graceful_shutdown_completes_requests_in_flight_and_closes_every_connection_cleanly(
    private_mysql_server: MySQLServer, request: pytest.FixtureRequest
) -> None:
    server = private_mysql_server
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": server.dsn,
        "MYSQLPOOL_MINSIZE": "4",
        "MYSQLPOOL_MAXSIZE": "10",
        "MYSQLPOOL_CLOSE_TIMEOUT": "3",
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "tests._reliability:reliability_app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    pipe = subprocess.PIPE
    proc = await asyncio.to_thread(
        subprocess.Popen, command, cwd=ROOT, env=env, stdout=pipe, stderr=subprocess.STDOUT, text=True
    )
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=DEADLINE + 5) as client:

            async def up() -> bool:
                try:
                    return (await client.get("/pool/health")).status_code == 200
                except httpx.TransportError:
                    return False

            deadline = time.monotonic() + 30
            while not await up():
                assert proc.poll() is None and time.monotonic() < deadline, "uvicorn did not start"
                await asyncio.sleep(0.1)
            aborted_before = await asyncio.to_thread(_aborted_clients, server)

            in_flight = [asyncio.create_task(client.get("/sleep", params={"seconds": 0.8})) for _ in range(10)]
            # Let the requests reach their queries before the signal.
            await asyncio.sleep(0.3)
            stopped = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            responses = await asyncio.gather(*in_flight, return_exceptions=True)
            exit_code = await asyncio.to_thread(proc.wait, 20)
            drained = time.monotonic() - stopped
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = proc.stdout.read() if proc.stdout else ""
    if proc.stdout:
        proc.stdout.close()

    record_figure(request, "9-graceful-shutdown", "drain_seconds", drained, "s")
    statuses = [r.status_code if isinstance(r, httpx.Response) else type(r).__name__ for r in responses]
    assert statuses == [200] * 10
    # uvicorn re-raises the SIGTERM once its graceful shutdown is done, so the exit status reports that signal.
    assert exit_code in (0, -signal.SIGTERM), output
    for symptom in ("Event loop is closed", "Traceback", "Task was destroyed", "Unclosed"):
        assert symptom not in output, output
    aborted_after = await asyncio.to_thread(_aborted_clients, server)
    record_figure(
        request, "9-graceful-shutdown", "aborted_clients_growth", aborted_after - aborted_before, "connections"
    )
    assert aborted_after == aborted_before, (aborted_before, aborted_after, server.log_tail(20))
