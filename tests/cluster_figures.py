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
- connections beyond ``max_connections``: the server refuses them with 1040.
"""

from __future__ import annotations

import asyncio
import statistics
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


def starts() -> None:
    report("ReplicaSet() start", summary(start_times(ReplicaSet, 5)))
    report("GaleraCluster() start", summary(start_times(GaleraCluster, 3)))


SECTIONS: dict[str, Callable[[], None]] = {
    "starts": starts,
    "promotion": lambda: asyncio.run(promotion()),
    "quorum": lambda: asyncio.run(quorum_loss()),
    "connections": lambda: asyncio.run(too_many_connections()),
}


def main(sections: list[str]) -> None:
    """Measure the named sections (`SECTIONS`), or all of them."""
    for name in sections or list(SECTIONS):
        if name not in SECTIONS:
            raise SystemExit(f"unknown section {name!r}; choose from {', '.join(SECTIONS)}")
        SECTIONS[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
