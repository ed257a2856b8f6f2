"""Measure, against real clusters, what a single-host pool runs into beyond one server (issue 17's figures).

Run it by hand, not in CI: ``python -m tests.cluster_figures [starts|promotion|quorum|connections ...]`` (all of
them take a few minutes). It prints one line per figure:

- how long a `ReplicaSet` and a `GaleraCluster` take to start;
- a promoted replica set: what a client of the old primary sees while it is down (2003) and once it is back as a
  replica (1290 on writes);
- a Galera node without quorum: connect, ping and ``SELECT 1`` still work, every table answers 1047; an app on it
  with today's pool: what ``/pool/health``, a route reading a table and the pool's counters say;
- a write in flight on a node whose peers vanish: how long it hangs, and how it fails;
- stale reads on another Galera node, right after a write, without and with ``wsrep_sync_wait=1``;
- connections beyond ``max_connections``: the server refuses them with 1040;
- ``sizing``: four worker processes of an app with ``maxsize=10`` against ``max_connections=25``, then with the
  ``maxsize`` the sizing WARNING recommends: WARNING lines, 503 answers, and each worker's pool size;
- ``failover``: this package's pool, default options, on each driver: the time from a promotion to the first
  committed write, from a Galera node's loss (killed, paused) and from quorum loss to the first query on another
  node, and every error the callers saw meanwhile.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiomysql
import pymysql
from fastapi import FastAPI

import fastapi_mysqlpool as mp
from fastapi_mysqlpool.testing import GaleraCluster, MySQLServer, ReplicaSet, lifespan_client
from tests._clusters import app_conn, scalar

__all__ = ["main"]

STALE_TRIES = 300


def report(name: str, value: str) -> None:
    print(f"{name:<48} {value}", flush=True)


async def error_of(action: Callable[[], Awaitable[Any]]) -> str:
    try:
        await action()
    except pymysql.err.MySQLError as exc:
        return f"{exc.args[0]} {exc.args[1] if len(exc.args) > 1 else ''}".strip()
    return "no error"


def start_times(factory: Callable[[], ReplicaSet | GaleraCluster], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        with factory() as cluster:
            assert cluster.startup_seconds is not None
            times.append(cluster.startup_seconds)
    return times


def summary(times: list[float]) -> str:
    return f"median {statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f}, n={len(times)})"


async def promotion() -> None:
    with ReplicaSet() as rs:
        rs.query(0, "CREATE TABLE app.figures (id INT AUTO_INCREMENT PRIMARY KEY)")
        old = rs.primary
        rs.kill(0)

        async def connect_and_write(node: MySQLServer = old) -> None:
            async with app_conn(node) as conn:
                await scalar(conn, "INSERT INTO app.figures VALUES (NULL)")

        report("old primary while down: write", await error_of(connect_and_write))
        began = time.monotonic()
        rs.promote(1)
        rs.restart(0)
        report("promote(1) + old primary back as replica", f"{time.monotonic() - began:.2f} s")
        report("old primary, back as a replica: write", await error_of(connect_and_write))


async def quorum_loss() -> None:
    with GaleraCluster() as cluster:
        cluster.query(0, "CREATE TABLE app.figures (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(20))")
        began = time.monotonic()
        cluster.isolate(2)
        report("isolate(2): non-Primary after", f"{time.monotonic() - began:.2f} s")
        node = cluster.nodes[2]
        connects, failures, deadline = 0, 0, time.monotonic() + 2
        while time.monotonic() < deadline:
            async with app_conn(node) as conn:
                await conn.ping()
                connects += await scalar(conn, "SELECT 1")
                failures += "1047" in await error_of(lambda conn=conn: scalar(conn, "SELECT COUNT(*) FROM app.figures"))
        report("quorum-less node in 2 s: connect+ping+SELECT 1", f"{connects} ok; table reads refused: {failures}")
        await app_on(node)
        cluster.rejoin(2)

        # The write in flight: node 0's peers vanish (SIGSTOP) just as it commits.
        async with app_conn(cluster.nodes[0]) as conn:
            cluster.pause(1)
            cluster.pause(2)
            began = time.monotonic()
            failed = await error_of(lambda: scalar(conn, "INSERT INTO app.figures (note) VALUES ('in flight')"))
            report("write when both peers vanish", f"{failed} after {time.monotonic() - began:.2f} s")
        cluster.resume(1)
        cluster.resume(2)
        cluster.wait_synced(timeout=60)

        for sync_wait in (0, 1):
            stale = 0
            async with app_conn(cluster.nodes[1]) as writer, app_conn(cluster.nodes[2]) as reader:
                await scalar(reader, f"SET SESSION wsrep_sync_wait = {sync_wait}")
                for i in range(STALE_TRIES):
                    note = f"w{sync_wait}-{i}"
                    await scalar(writer, "INSERT INTO app.figures (note) VALUES (%s)", note)
                    stale += await scalar(reader, "SELECT COUNT(*) FROM app.figures WHERE note = %s", note) == 0
            report(f"stale reads on node 2, wsrep_sync_wait={sync_wait}", f"{stale} of {STALE_TRIES}")


async def app_on(node: MySQLServer) -> None:
    """Today's single-host pool, in an app, on a quorum-less node: what health, a table route and stats say."""
    app = FastAPI(lifespan=mp.mysql_lifespan(node.dsn, maxsize=5))
    app.include_router(mp.pool_router)

    @app.get("/rows")
    async def rows(cur: mp.CursorDep) -> int:
        await cur.execute("SELECT COUNT(*) FROM app.figures")
        (count,) = await cur.fetchone()
        return int(count)

    async with lifespan_client(app) as client:
        health = await client.get("/pool/health")
        statuses: dict[int, int] = {}
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            status = (await client.get("/rows")).status_code
            statuses[status] = statuses.get(status, 0) + 1
        stats = (await client.get("/pool/stats")).json()["pools"]["default"]
    report("quorum-less node: /pool/health", f"{health.status_code} {health.json().get('status', '')}")
    report("quorum-less node: table route for 5 s", ", ".join(f"{n} x {code}" for code, n in sorted(statuses.items())))
    report(
        "quorum-less node: pool over those 5 s",
        f"created_total {stats['created_total']}, connect_errors_total {stats['connect_errors_total']}",
    )


async def too_many_connections() -> None:
    with MySQLServer(server_args=["--max-connections=25"]) as server:
        conns, refused = [], 0
        for _ in range(4 * 10):  # four workers with maxsize=10
            try:
                conns.append(await aiomysql.connect(**server.connect_kwargs, connect_timeout=10))
            except pymysql.err.OperationalError as exc:
                refused += exc.args[0] == 1040
        for conn in conns:
            conn.close()
        report("4 x 10 connections, max_connections=25", f"{len(conns)} opened, {refused} refused with 1040")


# ---------------------------------------------------------------------------------------------------- sizing

WORKERS = 4
REQUESTS_PER_WORKER = 75  # 300 in all


async def sizing_worker(dsn: str, maxsize: int, driver: str, start_at: float) -> None:
    """One worker process: its own pool and app, 75 requests at once from ``start_at``; prints a JSON line."""
    lines: collections.Counter[str] = collections.Counter()

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                lines[str(getattr(record, "event", "other"))] += 1

    logging.getLogger("fastapi_mysqlpool").addHandler(Count())
    app = FastAPI(lifespan=mp.mysql_lifespan(dsn, maxsize=maxsize, acquire_timeout=2, driver=driver))
    app.include_router(mp.pool_router)

    @app.get("/hold")
    async def hold(cur: mp.CursorDep) -> int:
        await cur.execute("SELECT SLEEP(0.05)")
        return 1

    sizes: list[int] = []
    async with lifespan_client(app) as client:
        await asyncio.sleep(max(0.0, start_at - time.time()))

        async def sample() -> None:
            while True:
                stats = (await client.get("/pool/stats")).json()["pools"]["default"]
                sizes.append(stats["free"] + stats["in_use"])  # open connections, not those being opened
                await asyncio.sleep(0.1)

        sampler = asyncio.create_task(sample())
        answers = await asyncio.gather(*(client.get("/hold") for _ in range(REQUESTS_PER_WORKER)))
        sampler.cancel()
    statuses = collections.Counter(answer.status_code for answer in answers)
    print(json.dumps({"statuses": statuses, "warnings": lines, "max_size": max(sizes), "sizes": sizes}), flush=True)


def sizing_run(server: MySQLServer, maxsize: int, driver: str) -> list[dict[str, Any]]:
    start_at = time.time() + 6  # every worker's pool is open by then
    env = {**os.environ, "WEB_CONCURRENCY": str(WORKERS)}
    command = [sys.executable, "-m", "tests.cluster_figures", "_sizing_worker", server.dsn, str(maxsize), driver]
    workers = [
        subprocess.Popen([*command, str(start_at)], stdout=subprocess.PIPE, env=env, text=True) for _ in range(WORKERS)
    ]
    return [json.loads(worker.communicate(timeout=120)[0].strip().splitlines()[-1]) for worker in workers]


def sizing() -> None:
    with MySQLServer(server_args=["--max-connections=25"]) as server:
        for driver in ("aiomysql", "asyncmy"):
            for maxsize in (10, 25 // WORKERS):
                results = sizing_run(server, maxsize, driver)
                statuses: collections.Counter[str] = collections.Counter()
                warnings: collections.Counter[str] = collections.Counter()
                for result in results:
                    statuses.update(result["statuses"])
                    warnings.update(result["warnings"])
                report(
                    f"{driver}: {WORKERS} workers x maxsize {maxsize}, max_connections 25",
                    f"answers {dict(sorted(statuses.items()))}; WARNING lines {dict(warnings)}; "
                    f"pool size per worker while busy: largest {[r['max_size'] for r in results]}, "
                    f"median {[statistics.median(r['sizes']) for r in results]}",
                )


# -------------------------------------------------------------------------------------------------- failover


def _code(exc: BaseException) -> str:
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    return f"{type(exc).__name__} {code}" if code is not None else type(exc).__name__


async def until_success(
    pool: mp.Pool, statement: str, good: Callable[[int], bool], callers: int = 4
) -> tuple[float, collections.Counter[str]]:
    """Run ``statement`` from ``callers`` tasks until one succeeds on a host ``good`` accepts (by its port):
    seconds until then, and the errors the callers saw meanwhile."""
    errors: collections.Counter[str] = collections.Counter()
    began = time.monotonic()
    done = asyncio.Event()

    async def caller() -> None:
        while not done.is_set():
            try:
                async with pool.acquire() as conn, conn.cursor() as cur:
                    await cur.execute(statement)
                    await cur.execute("SELECT @@port")
                    (port,) = await cur.fetchone()
                    await conn.commit()
                if good(int(port)):
                    done.set()
            except Exception as exc:
                errors[_code(exc)] += 1
                await asyncio.sleep(0.01)

    await asyncio.wait_for(asyncio.gather(*(caller() for _ in range(callers))), 120)
    return time.monotonic() - began, errors


def _errors(errors: collections.Counter[str]) -> str:
    return ", ".join(f"{n} x {name}" for name, n in errors.most_common()) or "none"


async def failover_promotion(driver: str) -> None:
    with ReplicaSet() as rs:
        rs.query(0, "CREATE TABLE app.figures (id INT AUTO_INCREMENT PRIMARY KEY)")
        async with mp.create_pool(dsn=rs.dsn, driver=driver, minsize=4) as pool:
            await until_success(pool, "INSERT INTO figures VALUES (NULL)", lambda port: True)
            rs.promote(1)
            seconds, errors = await until_success(
                pool, "INSERT INTO figures VALUES (NULL)", lambda port: port == rs.nodes[1].port
            )
        report(f"{driver}: promote(1) -> first write on node 1", f"{seconds:.3f} s; callers saw {_errors(errors)}")


async def failover_galera(driver: str) -> None:
    with GaleraCluster() as gc:
        gc.query(0, "CREATE TABLE app.figures (id INT AUTO_INCREMENT PRIMARY KEY)")
        read = "SELECT COUNT(*) FROM figures"
        for fault, undo in (("kill", "restart"), ("pause", "resume"), ("isolate", "rejoin")):
            async with mp.create_pool(dsn=gc.dsn, driver=driver, minsize=4) as pool:
                await until_success(pool, read, lambda port: True)
                began = time.monotonic()
                getattr(gc, fault)(0)
                returned = time.monotonic() - began
                seconds, errors = await until_success(pool, read, lambda port: port != gc.nodes[0].port)
            report(
                f"{driver}: Galera {fault}(0) -> first query elsewhere",
                f"{seconds:.3f} s after {fault}() returned ({returned:.2f} s in it); callers saw {_errors(errors)}",
            )
            getattr(gc, undo)(0)
            gc.wait_synced()


def failover() -> None:
    for driver in ("aiomysql", "asyncmy"):
        asyncio.run(failover_promotion(driver))
        asyncio.run(failover_galera(driver))


def starts() -> None:
    report("ReplicaSet() start", summary(start_times(ReplicaSet, 5)))
    report("GaleraCluster() start", summary(start_times(GaleraCluster, 3)))


SECTIONS: dict[str, Callable[[], None]] = {
    "starts": starts,
    "promotion": lambda: asyncio.run(promotion()),
    "quorum": lambda: asyncio.run(quorum_loss()),
    "connections": lambda: asyncio.run(too_many_connections()),
    "sizing": sizing,
    "failover": failover,
}


def main(sections: list[str]) -> None:
    """Measure the named sections (`SECTIONS`), or all of them."""
    for name in sections or list(SECTIONS):
        if name not in SECTIONS:
            raise SystemExit(f"unknown section {name!r}; choose from {', '.join(SECTIONS)}")
        SECTIONS[name]()


if __name__ == "__main__":
    if sys.argv[1:2] == ["_sizing_worker"]:
        dsn, maxsize, driver, start_at = sys.argv[2:6]
        asyncio.run(sizing_worker(dsn, int(maxsize), driver, float(start_at)))
    else:
        main(sys.argv[1:])
