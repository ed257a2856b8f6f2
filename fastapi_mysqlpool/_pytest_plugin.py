"""pytest plugin: real MariaDB/MySQL servers as fixtures.

Registered through the ``pytest11`` entry point when the package is installed:

- ``mysql_server`` (session): one throwaway server shared by the whole run, or the
  server named by ``FASTAPI_MYSQLPOOL_TEST_DSN`` when that variable is set.
- ``mysql_dsn`` (session): its DSN, ``mysql://user:password@127.0.0.1:PORT/db``.
- ``private_mysql_server`` (function): a server of the test's own, for tests that kill,
  pause or restart it.
- ``replica_set`` (session) and ``private_replica_set`` (function): a primary with two GTID
  replicas (`ReplicaSet`).
- ``galera_cluster`` (session) and ``private_galera_cluster`` (function): a 3-node Galera
  cluster (`GaleraCluster`).

Tests that break a shared cluster (kill, pause, promote, isolate a node) take the private
fixture, or put the cluster back as they found it before they end.

When no server binary is installed the fixtures fail the test with instructions; they
never skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TypeVar

import pytest

from .testing import EXTERNAL_DSN_ENV, ExternalServer, GaleraCluster, MySQLServer, MySQLServerError, ReplicaSet

__all__ = [
    "galera_cluster",
    "mysql_dsn",
    "mysql_server",
    "private_galera_cluster",
    "private_mysql_server",
    "private_replica_set",
    "replica_set",
]

_S = TypeVar("_S", MySQLServer, ReplicaSet, GaleraCluster)


def _started(server: _S) -> _S:
    try:
        return server.start()
    except MySQLServerError as exc:
        what = "server" if isinstance(server, MySQLServer) else type(server).__name__
        pytest.fail(f"could not start a throwaway MySQL/MariaDB {what}: {exc}", pytrace=False)


def _running(server: _S) -> Iterator[_S]:
    _started(server)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[MySQLServer | ExternalServer]:
    """A server shared by the whole test session."""
    external = os.environ.get(EXTERNAL_DSN_ENV)
    if external:
        yield ExternalServer(external)
        return
    yield from _running(MySQLServer())


@pytest.fixture(scope="session")
def mysql_dsn(mysql_server: MySQLServer | ExternalServer) -> str:
    """The shared server's DSN."""
    return mysql_server.dsn


@pytest.fixture
def private_mysql_server() -> Iterator[MySQLServer]:
    """A server for this test alone; kill, pause and restart it at will."""
    yield from _running(MySQLServer())


@pytest.fixture(scope="session")
def replica_set() -> Iterator[ReplicaSet]:
    """A primary and two GTID replicas shared by the whole test session; leave them as you found them."""
    yield from _running(ReplicaSet())


@pytest.fixture
def private_replica_set() -> Iterator[ReplicaSet]:
    """A replica set for this test alone: kill, pause, promote and lag its nodes at will."""
    yield from _running(ReplicaSet())


@pytest.fixture(scope="session")
def galera_cluster() -> Iterator[GaleraCluster]:
    """A 3-node Galera cluster shared by the whole test session; leave it as you found it."""
    yield from _running(GaleraCluster())


@pytest.fixture
def private_galera_cluster() -> Iterator[GaleraCluster]:
    """A 3-node Galera cluster for this test alone: kill, pause, restart and isolate its nodes at will."""
    yield from _running(GaleraCluster())
