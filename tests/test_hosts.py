"""Several hosts per pool: role routing, failover and replica lag, against a real replica set and Galera cluster."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import fastapi_mysqlpool as mp
from fastapi_mysqlpool._hosts import parse_hosts
from fastapi_mysqlpool.testing import GaleraCluster, ReplicaSet
from tests._clusters import scalar
from tests._drivers import db_errors
from tests._proxy import FaultProxy

# Bounds a wait for something that must happen; never a measure of speed.
PATIENCE = 30.0


async def server_port(pool: mp.Pool) -> int:
    async with pool.acquire() as conn:
        return int(await scalar(conn, "SELECT @@port"))


async def until(what: str, check: Callable[[], Awaitable[bool]]) -> float:
    """Seconds until ``check()`` is true; fails after PATIENCE."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > PATIENCE:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def test_host_lists_parse_from_strings_and_pairs() -> None:
    assert parse_hosts("a:1,b:2,c") == [("a", 1), ("b", 2), ("c", 3306)]
    assert parse_hosts([("a", 1), "b:2"]) == [("a", 1), ("b", 2)]
    with pytest.raises(ValueError, match="invalid port 'x' for host 'b'"):
        parse_hosts("a,b:x")
    with pytest.raises(ValueError, match="invalid port 70000"):
        parse_hosts([("a", 70000)])
    parsed = mp.parse_dsn("mysql://u:p%40w@h1:3307,h2:3308,h3/db?role=replica")
    assert parsed.connect_kwargs["host"] == [("h1", 3307), ("h2", 3308), ("h3", 3306)]
    assert parsed.pool_options == {"role": "replica"}
    with pytest.raises(ValueError, match=r"invalid value for pool option 'role': 'master'"):
        mp.PoolOptions(role="master")


async def test_primary_role_finds_the_primary_wherever_it_is_listed(driver: str, replica_set: ReplicaSet) -> None:
    hosts = [(n.host, n.port) for n in (*replica_set.replicas, replica_set.primary)]
    async with mp.create_pool(dsn=replica_set.dsn, host=hosts, minsize=2) as pool:
        assert await server_port(pool) == replica_set.primary.port
        async with pool.acquire() as conn:
            assert await scalar(conn, "SELECT @@read_only") == 0
        stats = pool.stats()
        by_host = {h["host"]: h for h in stats["hosts"]}
        primary = by_host[f"127.0.0.1:{replica_set.primary.port}"]
        assert primary["role"] == "primary" and primary["state"] == "up" and primary["connections"] == 2
        assert replica_set.password not in repr(stats)
        assert stats["limits"]["max_connections"] > 0


async def test_replica_role_reads_from_replicas_in_turn(driver: str, replica_set: ReplicaSet) -> None:
    async with mp.create_pool(dsn=replica_set.dsn, role="replica", minsize=0, maxsize=4) as pool:
        conns = [await pool.acquire() for _ in range(4)]
        ports = {int(await scalar(conn, "SELECT @@port")) for conn in conns}
        for conn in conns:
            await pool.release(conn)
        assert ports == {node.port for node in replica_set.replicas}


async def test_a_demoted_primarys_1290_leads_to_the_new_primary(driver: str, private_replica_set: ReplicaSet) -> None:
    rs = private_replica_set
    async with mp.create_pool(dsn=rs.dsn, minsize=2, host_check_interval=60) as pool:
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute("CREATE TABLE t (id INT PRIMARY KEY)")
            await conn.commit()
        rs.promote(1)
        # The pool has not probed since: its idle connections still go to the old primary, now read-only.
        errors: list[int] = []
        promoted = time.monotonic()

        async def writes() -> bool:
            try:
                async with pool.acquire() as conn, conn.cursor() as cur:
                    await cur.execute("INSERT INTO t VALUES (%s)", (len(errors) + 100,))
                    await conn.commit()
                    return int(await scalar(conn, "SELECT @@port")) == rs.primary.port
            except db_errors.OperationalError as exc:
                errors.append(exc.args[0])
                return False

        await until("a write on the new primary", writes)
        assert errors and set(errors) <= {1290, 1836}, errors
        assert len(errors) == 1  # the one 1290 sent every other idle connection to the old primary away
        assert time.monotonic() - promoted < PATIENCE
        assert pool.stats()["closed_total"]["rerouted"] >= 1


async def test_the_pool_follows_a_promotion_without_an_error_from_its_probes(
    driver: str, private_replica_set: ReplicaSet
) -> None:
    rs = private_replica_set
    async with mp.create_pool(dsn=rs.dsn, minsize=1, host_check_interval=0.2) as pool:
        assert await server_port(pool) == rs.primary.port
        rs.promote(2)

        async def on_new_primary() -> bool:
            return await server_port(pool) == rs.nodes[2].port

        await until("the pool to write to node 2", on_new_primary)


async def test_a_lagging_replica_is_skipped_and_reads_return_once_it_catches_up(
    driver: str,
    private_replica_set: ReplicaSet,
) -> None:
    rs = private_replica_set
    lagging, healthy = rs.nodes[1], rs.nodes[2]
    async with mp.create_pool(
        dsn=rs.dsn, role="replica", minsize=0, maxsize=2, max_replica_lag=1, host_check_interval=0.2
    ) as pool:
        rs.stop_sql_thread(2)  # lag unknown: never qualifies

        async def reads_from(port: int) -> bool:
            return await server_port(pool) == port

        rs.lag(1, 30)
        rs.query(rs.primary_index, "CREATE TABLE app.tick (id INT)")

        async def lag_seen() -> bool:
            rows = rs.query(1, "SHOW SLAVE STATUS")
            return bool(rows and (rows[0]["Seconds_Behind_Master"] or 0) > 1)

        await until("replica 1 to lag", lag_seen)
        # Neither replica qualifies: the primary serves, as a fallback.
        await until("a fallback read on the primary", lambda: reads_from(rs.primary.port))
        states = {h["host"]: h["state"] for h in pool.stats()["hosts"]}
        assert states[f"127.0.0.1:{lagging.port}"] == "lagging"
        assert states[f"127.0.0.1:{healthy.port}"] == "lagging"
        rs.start_sql_thread(2)
        # The fallback connection is retired as soon as a replica qualifies, not at its lifetime.
        await until("reads back on replica 2", lambda: reads_from(healthy.port))
        rs.lag(1, 0)


async def test_without_fallback_no_qualifying_replica_is_a_timeout(
    driver: str, private_replica_set: ReplicaSet
) -> None:
    rs = private_replica_set
    for i in (1, 2):
        rs.stop_sql_thread(i)
    async with mp.create_pool(dsn=rs.dsn, role="replica", replica_fallback=False, minsize=0, acquire_timeout=1) as pool:
        with pytest.raises(mp.PoolTimeout, match="no host can serve role 'replica'"):
            await pool.acquire()


async def test_a_killed_or_quorumless_galera_node_is_avoided(
    driver: str, private_galera_cluster: GaleraCluster
) -> None:
    gc = private_galera_cluster
    async with mp.create_pool(dsn=gc.dsn, minsize=1, maxsize=3, host_check_interval=0.2, connect_timeout=1) as pool:
        assert await server_port(pool) == gc.nodes[0].port
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute("CREATE TABLE g (id INT PRIMARY KEY)")
            await conn.commit()
        seen: list[int] = []

        async def query_elsewhere(avoid: int) -> bool:
            try:
                async with pool.acquire(timeout=2) as conn, conn.cursor() as cur:
                    await cur.execute("SELECT COUNT(*) FROM g")
                    return int(await scalar(conn, "SELECT @@port")) != gc.nodes[avoid].port
            except (db_errors.MySQLError, mp.PoolError) as exc:
                seen.append(exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0)
                return False

        gc.isolate(0)
        await until("a query off the quorum-less node 0", lambda: query_elsewhere(0))

        async def node_0_seen_without_quorum() -> bool:
            # A 1047 on one of its connections marks it "recheck" first; the next probe says what it is.
            states = {h["host"]: h["state"] for h in pool.stats()["hosts"]}
            return states[f"127.0.0.1:{gc.nodes[0].port}"] == "not_synced"

        await until("node 0 probed as not synced", node_0_seen_without_quorum)
        gc.rejoin(0)
        gc.kill(1)

        async def not_on(i: int) -> bool:
            return await query_elsewhere(i) and await server_port(pool) != gc.nodes[i].port

        await until("queries off the killed node 1", lambda: not_on(1))
        assert set(seen) <= {0, 1047, 1180, 2003, 2006, 2013}, seen


async def test_causal_reads_set_wsrep_sync_wait(driver: str, galera_cluster: GaleraCluster) -> None:
    async with mp.create_pool(dsn=galera_cluster.dsn, role="any", causal_reads=True, minsize=0, maxsize=1) as pool:
        async with pool.acquire() as conn:
            assert int(await scalar(conn, "SELECT @@session.wsrep_sync_wait")) == 1
            first = await scalar(conn, "SELECT CONNECTION_ID()")
            await scalar(conn, "SELECT @changed := 1")  # a session change: the release runs the full reset
        async with pool.acquire() as conn:
            assert await scalar(conn, "SELECT CONNECTION_ID()") == first
            assert await scalar(conn, "SELECT @changed") is None  # reset
            assert int(await scalar(conn, "SELECT @@session.wsrep_sync_wait")) == 1  # and set again


async def test_maxsize_times_workers_over_max_connections_warns_once(
    driver: str, replica_set: ReplicaSet, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    (row,) = replica_set.query(0, "SELECT @@max_connections AS n")
    maxsize = int(row["n"]) // 4 + 1
    with caplog.at_level(logging.WARNING, logger="fastapi_mysqlpool"):
        async with mp.create_pool(dsn=replica_set.dsn, minsize=2, maxsize=maxsize) as pool:
            await pool.clear()
            async with pool.acquire():
                pass
            limits: dict[str, Any] = pool.stats()["limits"]
    lines = [r.getMessage() for r in caplog.records if getattr(r, "event", None) == "capacity"]
    assert len(lines) == 1, lines
    assert f"maxsize {maxsize} x 4 worker(s) (WEB_CONCURRENCY) = {maxsize * 4} connections" in lines[0]
    assert "max_connections" in lines[0] and "Lower maxsize" in lines[0]
    assert limits["workers"] == 4 and limits["demand"] == maxsize * 4


async def test_the_workers_option_beats_detection_and_a_fitting_pool_is_quiet(
    driver: str, mysql_dsn: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "1000")
    with caplog.at_level(logging.WARNING, logger="fastapi_mysqlpool"):
        async with mp.create_pool(dsn=mysql_dsn, maxsize=2, workers=2) as pool:
            limits = pool.stats()["limits"]
    assert limits["workers"] == 2 and limits["workers_source"] == "the workers option"
    assert not [r for r in caplog.records if getattr(r, "event", None) == "capacity"]


async def test_a_replica_that_stopped_answering_is_tried_last_until_it_is_probed(
    driver: str, replica_set: ReplicaSet
) -> None:
    rs = replica_set
    silent, other = rs.replicas
    with FaultProxy(silent.host, silent.port) as proxy:
        hosts = [(proxy.host, proxy.port), (other.host, other.port)]
        async with mp.create_pool(
            dsn=rs.dsn, host=hosts, role="replica", minsize=0, maxsize=2, read_timeout=0.5, connect_timeout=20
        ) as pool:
            async with pool.acquire() as conn:  # unknown hosts are learnt in order: the proxied one first
                assert int(await scalar(conn, "SELECT @@port")) == silent.port
                proxy.blackhole()
                with pytest.raises(db_errors.OperationalError, match="read_timeout"):
                    await scalar(conn, "SELECT 1")
            # The next connection goes to the replica that answers, not first to the silent one (whose
            # connect would wait connect_timeout): the silent one waits for its re-check.
            async with pool.acquire() as conn:
                assert int(await scalar(conn, "SELECT @@port")) == other.port
            state = {h["host"]: h["state"] for h in pool.stats()["hosts"]}[f"{proxy.host}:{proxy.port}"]
            assert state == "recheck"


async def test_a_probe_begun_before_a_wrong_host_error_does_not_undo_it(driver: str, replica_set: ReplicaSet) -> None:
    rs = replica_set
    with FaultProxy(rs.primary.host, rs.primary.port) as proxy:
        async with mp.create_pool(
            dsn=rs.dsn, host=[(proxy.host, proxy.port)], role="any", minsize=0, host_check_interval=600
        ) as pool:
            hosts = pool._hosts
            conn = await pool.acquire()
            proxy.set_latency(0.5)  # the probe's connect takes a few round trips of 0.5 s each
            probe = asyncio.create_task(pool._probe_all_hosts())
            await asyncio.sleep(0.1)
            conn.wrong_host = True  # as a 1290 or a read timeout on it marks it
            await pool.release(conn, discard=True)
            assert hosts.hosts[0].state == "recheck"
            await probe
            # The probe saw the host as it was before the error: its answer is dropped, the re-check stands.
            assert hosts.hosts[0].state == "recheck" and hosts.hosts[0].role is None
