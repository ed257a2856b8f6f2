"""FastAPI over a replica set: read routing, read-your-writes, a demoted primary as 503, health naming hosts."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from fastapi import FastAPI, Response

import fastapi_mysqlpool as mp
from fastapi_mysqlpool.testing import GaleraCluster, ReplicaSet
from tests._fastapi_support import serve

PATIENCE = 30.0


def replica_app(dsn: str, **options: Any) -> tuple[FastAPI, mp.MySQLLifespan]:
    lifespan = mp.mysql_lifespan(dsn, **options)
    app = FastAPI(lifespan=lifespan)
    app.include_router(mp.pool_router)

    @app.get("/read")
    async def read(cur: mp.ReadCursorDep, hold: float = 0.0) -> dict[str, Any]:
        await cur.execute("SELECT @@port, (SELECT COUNT(*) FROM notes), SLEEP(%s)", (hold,))
        port, count, _ = await cur.fetchone()
        return {"port": port, "count": count}

    @app.post("/write")
    async def write(conn: mp.ConnDep, response: Response) -> dict[str, Any]:
        async with conn.cursor() as cur:
            await cur.execute("INSERT INTO notes (text) VALUES ('x')")
        await conn.commit()
        ryw = options.get("read_your_writes")
        if ryw is not None:
            ryw.set(response, await mp.session_gtid(conn))
        return {}

    @app.post("/write-then-read")
    async def write_then_read(conn: mp.ConnDep, cur: mp.ReadCursorDep) -> dict[str, Any]:
        async with conn.cursor() as wcur:
            await wcur.execute("INSERT INTO notes (text) VALUES ('y')")
        await cur.execute("SELECT @@port, (SELECT COUNT(*) FROM notes WHERE text = 'y')")
        port, count = await cur.fetchone()
        await conn.commit()
        return {"port": port, "count": count}

    return app, lifespan


def _primary_dsn(rs: ReplicaSet) -> str:
    return rs.dsn.replace(rs.dsn.split("@")[1].split("/")[0], f"{rs.primary.host}:{rs.primary.port}")


def notes_table(rs: ReplicaSet) -> None:
    rs.query(rs.primary_index, f"CREATE TABLE IF NOT EXISTS {rs.db}.notes (id INT AUTO_INCREMENT PRIMARY KEY, "
             "text VARCHAR(10))")  # fmt: skip
    rs.sync()


async def test_reads_go_to_replicas_and_a_writing_handler_reads_its_own_write(
    driver: str, replica_set: ReplicaSet
) -> None:
    notes_table(replica_set)
    app, _ = replica_app(_primary_dsn(replica_set), replicas=replica_set.replicas_dsn, maxsize=2)
    replica_ports = {node.port for node in replica_set.replicas}
    async with serve(app) as client:
        # Two reads at once hold two connections, opened on the replicas in turn.
        answers = await asyncio.gather(*(client.get("/read?hold=0.2") for _ in range(2)))
        assert {answer.json()["port"] for answer in answers} == replica_ports
        answer = (await client.post("/write-then-read")).json()
        assert answer == {"port": replica_set.primary.port, "count": 1}
        stats = (await client.get("/pool/stats")).json()["pools"]
        assert set(stats) == {"default", "default.replicas"}
        assert replica_set.password not in str(stats)
        health = (await client.get("/pool/health")).json()
        hosts = health["checks"]["default.replicas:responseTime"][0]["hosts"]
        assert {h["host"] for h in hosts} == {f"127.0.0.1:{n.port}" for n in replica_set.nodes}
    replica_set.query(replica_set.primary_index, f"DELETE FROM {replica_set.db}.notes")


async def test_a_gtid_token_makes_the_next_read_see_the_write(driver: str, private_replica_set: ReplicaSet) -> None:
    rs = private_replica_set
    notes_table(rs)
    ryw = mp.ReadYourWrites(header="X-Read-After", wait=0.5)
    app, _ = replica_app(_primary_dsn(rs), replicas=rs.replicas_dsn, read_your_writes=ryw, maxsize=2)
    async with serve(app) as client:
        rs.lag(1, 30)
        rs.lag(2, 30)
        written = await client.post("/write")
        token = written.headers["X-Read-After"]
        assert token.count("-") == 2  # a MariaDB GTID, domain-server-sequence
        # Both replicas are 30 s behind: the read waits 0.5 s on one, then goes to the primary, which has it.
        started = time.monotonic()
        answer = (await client.get("/read", headers={"X-Read-After": token})).json()
        assert answer == {"port": rs.primary.port, "count": 1}
        assert time.monotonic() - started < PATIENCE
        rs.lag(1, 0)
        rs.lag(2, 0)
        rs.sync()
        caught_up = (await client.get("/read", headers={"X-Read-After": token})).json()
        assert caught_up["port"] != rs.primary.port and caught_up["count"] == 1


async def test_a_demoted_primary_answers_503_with_retry_after_then_writes_succeed(
    driver: str,
    private_replica_set: ReplicaSet,
) -> None:
    rs = private_replica_set
    notes_table(rs)
    app, _ = replica_app(rs.dsn, maxsize=2, host_check_interval=60)
    async with serve(app) as client:
        assert (await client.post("/write")).status_code == 200
        # The pool was given every host, primary first, so it can find the new one.
        rs.promote(1)
        statuses = []
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            response = await client.post("/write")
            statuses.append(response.status_code)
            if response.status_code == 200:
                break
            assert response.status_code == 503 and response.headers["Retry-After"] == "1"
            await asyncio.sleep(0.05)
        assert statuses[-1] == 200 and 500 not in statuses


async def test_health_fails_only_when_no_galera_node_can_serve(
    driver: str, private_galera_cluster: GaleraCluster
) -> None:
    gc = private_galera_cluster
    lifespan = mp.mysql_lifespan(gc.dsn, maxsize=2, host_check_interval=0.2, connect_timeout=1)
    app = FastAPI(lifespan=lifespan)
    app.include_router(mp.pool_router)
    async with serve(app) as client:
        gc.isolate(0)
        body = (await client.get("/pool/health")).json()
        deadline = time.monotonic() + PATIENCE
        while body["status"] != "pass" and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            body = (await client.get("/pool/health")).json()
        assert body["status"] == "pass"
        for i in (1, 2):
            gc.kill(i)
        deadline = time.monotonic() + PATIENCE
        while body["status"] != "fail" and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            body = (await client.get("/pool/health")).json()
        assert body["status"] == "fail"
        hosts = body["checks"]["default:responseTime"][0]["hosts"]
        assert {h["host"] for h in hosts} == {f"127.0.0.1:{n.port}" for n in gc.nodes}
        assert gc.password not in str(body)


async def test_a_token_the_replica_cannot_wait_for_reads_on_the_primary_not_a_500(
    driver: str, replica_set: ReplicaSet, caplog: pytest.LogCaptureFixture
) -> None:
    notes_table(replica_set)
    ryw = mp.ReadYourWrites(header="X-Read-After", wait=0.5)
    app, _ = replica_app(_primary_dsn(replica_set), replicas=replica_set.replicas_dsn, read_your_writes=ryw)
    async with serve(app) as client:
        # Shaped like a GTID list, but a domain id past 2^32: MariaDB refuses to parse it (1941).
        with caplog.at_level(logging.WARNING, logger="fastapi_mysqlpool"):
            answer = await client.get("/read", headers={"X-Read-After": "9999999999-1-1"})
        assert answer.status_code == 200 and answer.json()["port"] == replica_set.primary.port
        assert [r for r in caplog.records if getattr(r, "event", None) == "gtid_wait_failed"]
        # Not a GTID list at all: ignored, the read goes to a replica as without a token.
        answer = await client.get("/read", headers={"X-Read-After": "x'); DO SLEEP(5) -- "})
        assert answer.status_code == 200 and answer.json()["port"] != replica_set.primary.port


async def test_health_fails_when_no_host_can_write_though_select_1_still_answers(
    driver: str, replica_set: ReplicaSet
) -> None:
    rs = replica_set
    # No probe between the change and the check: only the health check itself can find it out.
    lifespan = mp.mysql_lifespan(rs.dsn, minsize=2, maxsize=2, host_check_interval=600)
    app = FastAPI(lifespan=lifespan)
    app.include_router(mp.pool_router)
    async with serve(app) as client:
        assert (await client.get("/pool/health")).json()["status"] == "pass"
        rs.query(rs.primary_index, "SET GLOBAL read_only = ON")  # every host is read-only now
        try:
            response = await client.get("/pool/health")
        finally:
            rs.query(rs.primary_index, "SET GLOBAL read_only = OFF")
        body = response.json()
        assert response.status_code == 503 and body["status"] == "fail"
        (check,) = body["checks"]["default:responseTime"]
        assert "no host can serve role 'primary'" in check["output"]
        primary = {h["host"]: h for h in check["hosts"]}[f"127.0.0.1:{rs.primary.port}"]
        assert primary["role"] == "replica"
        assert rs.password not in str(body)
        # Once it accepts writes again, the next probe finds it and health passes.
        deadline = time.monotonic() + PATIENCE
        while (await client.get("/pool/health")).status_code != 200:
            assert time.monotonic() < deadline, "health did not pass again"
            await asyncio.sleep(0.1)
