"""The role probe tells a primary, a replica, a lagging or stopped replica and a quorum-less Galera node apart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pymysql
import pytest

from fastapi_mysqlpool._roles import GaleraState, ReplicationState, ServerRole, probe_role
from fastapi_mysqlpool.testing import GaleraCluster, MySQLServer, ReplicaSet
from tests._clusters import app_conn, probe, runner

# Bounds a wait for something that must happen; never a measure of speed.
PATIENCE = 30.0


async def probe_counting(node: MySQLServer) -> tuple[ServerRole, list[str]]:
    """The probe, and the statements it sent: one per round trip."""
    sent: list[str] = []
    async with app_conn(node) as conn:
        run = runner(conn)

        async def counted(sql: str) -> Sequence[Mapping[str, Any]]:
            sent.append(sql)
            return await run(sql)

        return await probe_role(counted, conn.get_server_info()), sent


async def probe_until(node: MySQLServer, condition: Any, what: str) -> ServerRole:
    deadline = time.monotonic() + PATIENCE
    while True:
        role = await probe(node)
        if condition(role):
            return role
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; last probe: {role}")
        await asyncio.sleep(0.1)


async def test_a_primary_takes_one_round_trip(driver: str, replica_set: ReplicaSet) -> None:
    role, sent = await probe_counting(replica_set.primary)
    assert len(sent) == 1
    assert role == ServerRole(
        role="primary",
        read_only=False,
        innodb_read_only=False,
        galera=None,
        replication=None,
        lag_error=None,
        max_connections=500,
        max_user_connections=0,
    )
    assert (role.lag, role.can_write, role.can_read) == (0, True, True)


async def test_a_caught_up_replica_takes_two_round_trips(driver: str, replica_set: ReplicaSet) -> None:
    replica_set.sync()
    role, sent = await probe_counting(replica_set.replicas[0])
    assert len(sent) == 2 and sent[1] == "SHOW SLAVE STATUS"
    assert (role.role, role.read_only, role.can_write, role.can_read) == ("replica", True, False, True)
    assert role.replication == ReplicationState(io_running=True, sql_running=True, seconds_behind=0)
    assert role.lag == 0 and role.lag_error is None


async def test_an_account_without_slave_monitor_gets_a_clear_lag_error(driver: str, replica_set: ReplicaSet) -> None:
    replica_set.query(
        replica_set.primary_index,
        "CREATE USER IF NOT EXISTS 'probe_limited'@'%' IDENTIFIED BY 'limited-pw' WITH MAX_USER_CONNECTIONS 7",
    )
    replica_set.query(replica_set.primary_index, "GRANT SELECT ON *.* TO 'probe_limited'@'%'")
    replica_set.sync()
    role = await probe(replica_set.replicas[0], user="probe_limited", password="limited-pw", db=None)
    assert role.role == "replica" and role.replication is None and role.lag is None
    assert role.lag_error is not None and "SLAVE MONITOR" in role.lag_error
    assert role.max_user_connections == 7  # the account's own limit, not the server's 0


async def test_a_lagging_replica_and_a_stopped_one(driver: str, private_replica_set: ReplicaSet) -> None:
    rs = private_replica_set
    rs.query(0, "CREATE TABLE app.probe_lag (id INT AUTO_INCREMENT PRIMARY KEY)")
    rs.sync()
    rs.lag(1, 60)
    rs.stop_sql_thread(2)
    rs.query(0, "INSERT INTO app.probe_lag VALUES (NULL)")
    lagging = await probe_until(
        rs.nodes[1], lambda role: (role.lag or 0) >= 2, "the delayed replica to fall 2 s behind"
    )
    assert lagging.replication is not None and lagging.replication.sql_running
    stopped = await probe(rs.nodes[2])
    assert stopped.replication == ReplicationState(io_running=True, sql_running=False, seconds_behind=None)
    assert stopped.lag is None and stopped.lag_error is None  # unknown lag, and the probe says why: the thread


async def test_a_read_only_server_that_replicates_nothing_has_unknown_lag(
    driver: str, private_mysql_server: MySQLServer
) -> None:
    admin = pymysql.connect(**private_mysql_server.root_connect_kwargs(), autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute("SET GLOBAL read_only = ON")
            cur.execute("GRANT SLAVE MONITOR ON *.* TO 'app'@'%', 'app'@'localhost'")
    finally:
        admin.close()
    role = await probe(private_mysql_server)
    assert role.role == "replica" and role.replication is None and role.lag is None
    assert role.lag_error is not None and "not replicating" in role.lag_error


async def test_galera_nodes_synced_and_without_quorum(driver: str, galera_cluster: GaleraCluster) -> None:
    synced, sent = await probe_counting(galera_cluster.nodes[0])
    assert len(sent) == 1
    assert synced.galera == GaleraState(ready=True, local_state=4, cluster_status="Primary")
    assert (synced.role, synced.can_write, synced.can_read) == ("primary", True, True)
    galera_cluster.isolate(1)
    try:
        # The node answers the probe (information_schema) though it refuses every table.
        lost = await probe(galera_cluster.nodes[1])
    finally:
        galera_cluster.rejoin(1)
    assert lost.galera is not None and not lost.galera.synced
    assert (lost.galera.ready, lost.galera.cluster_status) == (False, "non-Primary")
    assert (lost.role, lost.can_write, lost.can_read) == ("primary", False, False)


# MySQL names the statement and its columns differently; no MySQL server runs here, so a recorded answer stands in.
@pytest.mark.parametrize(
    ("version", "statement", "status"),
    [
        ("8.0.36", "SHOW REPLICA STATUS", {"Replica_IO_Running": "Yes", "Replica_SQL_Running": "Yes"}),
        ("5.7.44-log", "SHOW SLAVE STATUS", {"Slave_IO_Running": "Yes", "Slave_SQL_Running": "Yes"}),
    ],
)
async def test_mysql_replica_status_by_version(version: str, statement: str, status: dict[str, str]) -> None:
    sent: list[str] = []
    behind = "Seconds_Behind_Source" if statement == "SHOW REPLICA STATUS" else "Seconds_Behind_Master"

    async def recorded(sql: str) -> list[dict[str, Any]]:
        sent.append(sql)
        if sql.startswith("SHOW"):
            return [{**status, behind: 3}]
        assert "information_schema" not in sql  # MySQL 8 has no information_schema.GLOBAL_STATUS
        return [{"read_only": 1, "innodb_read_only": 0, "max_connections": 151, "max_user_connections": 0}]

    role = await probe_role(recorded, version)
    assert sent[1:] == [statement]
    assert (role.role, role.lag, role.galera) == ("replica", 3, None)
