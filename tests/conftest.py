"""Shared fixtures: pools on the session's throwaway server, and root access for KILL and SET GLOBAL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pymysql
import pytest

import fastapi_mysqlpool as mp
from fastapi_mysqlpool._seam import get_driver
from fastapi_mysqlpool.testing import ExternalServer, MySQLServer
from tests import _drivers
from tests._proxy import FaultProxy

# Both drivers' modules are imported here, at collection, rather than on a test's first pool: the pytest plugin
# makes pytest rewrite the package's modules as it imports them, and CPython 3.11.7's compiler can fail with
# "AST constructor recursion depth mismatch" when that happens deep inside a running test's stack.
for _name in _drivers.DRIVER_NAMES:
    get_driver(_name)

PoolFactory = Callable[..., Awaitable[mp.Pool]]

# The fixtures that start a replica set or a Galera cluster, and what a docs example (tests/test_docs.py) that
# starts one contains. Their tests exercise the servers' side of failover rather than the client libraries, so
# the run on the lowest supported versions (`make test-lowest`) leaves out the `cluster` marker they get here;
# `make test`, on the newest versions, runs them with everything else.
CLUSTER_FIXTURES = frozenset({"replica_set", "private_replica_set", "galera_cluster", "private_galera_cluster"})
CLUSTER_CODE = (*CLUSTER_FIXTURES, "ReplicaSet(", "GaleraCluster(")


def _uses_a_cluster(item: pytest.Item) -> bool:
    if CLUSTER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    code = getattr(callspec.params.get("example"), "code", "") if callspec is not None else ""
    return any(word in code for word in CLUSTER_CODE)


# Run first: after an upgrade of a driver or of FastAPI, the first failure then names the private it changed.
FIRST_MODULE = "test_driver_privates.py"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Under pytest-xdist (`make test` runs two workers, each with its own throwaway server), the cluster tests
    # share one worker and run one after another: at most one replica set or Galera cluster runs at a time.
    grouped = config.pluginmanager.hasplugin("xdist")
    for item in items:
        if _uses_a_cluster(item):
            item.add_marker(pytest.mark.cluster)
            if grouped:
                item.add_marker(pytest.mark.xdist_group("cluster"))
    items.sort(key=lambda item: item.path.name != FIRST_MODULE)  # stable: the rest keep their order


@pytest.fixture(params=_drivers.DRIVER_NAMES)
def driver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test once per driver: every pool it creates (``mp.create_pool``, `make_pool`, a lifespan
    reading ``MYSQLPOOL_DRIVER``) uses that driver unless the test names one itself."""
    name: str = request.param
    create_pool = mp.create_pool

    def create_pool_on_driver(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("driver", name)
        return create_pool(*args, **kwargs)

    monkeypatch.setenv("MYSQLPOOL_DRIVER", name)
    monkeypatch.setattr(mp, "create_pool", create_pool_on_driver)
    _drivers.select(name)
    try:
        yield name
    finally:
        _drivers.select("aiomysql")


@pytest.fixture(scope="module", params=_drivers.DRIVER_NAMES)
def app_driver(request: pytest.FixtureRequest) -> Iterator[str]:
    """The driver of an app that a module serves under uvicorn for all its tests (``MYSQLPOOL_DRIVER`` in the
    app's environment): the module's tests run once per driver, the server started once for each."""
    name: str = request.param
    _drivers.select(name)
    try:
        yield name
    finally:
        _drivers.select("aiomysql")


@pytest.fixture
async def make_pool(mysql_dsn: str) -> AsyncIterator[PoolFactory]:
    """``await make_pool(maxsize=3, ...)``: a pool on the shared server, closed after the test."""
    pools: list[mp.Pool] = []

    async def factory(dsn: str | None = None, **options: Any) -> mp.Pool:
        pool = await mp.create_pool(dsn=dsn or mysql_dsn, **options)
        pools.append(pool)
        return pool

    yield factory
    for pool in pools:
        pool.close()
        await pool.wait_closed()


@pytest.fixture
def admin(mysql_server: MySQLServer | ExternalServer) -> Iterator[pymysql.connections.Connection]:
    """A root (or, on an external server, the configured user's) connection for administration."""
    conn = pymysql.connect(**mysql_server.root_connect_kwargs(), autocommit=True)
    try:
        yield conn
    finally:
        conn.close()


async def raw_connect(cls: type[Any], dsn: str, **kwargs: Any) -> Any:
    """An aiomysql connection of class ``cls`` (aiomysql's own, or the pool's), open on ``dsn``, in autocommit."""
    conn = cls(**{**mp.parse_dsn(dsn).connect_kwargs, "autocommit": True, **kwargs})
    await conn._connect()
    return conn


def query(conn: pymysql.connections.Connection, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, args or None)
        return list(cur.fetchall())


@pytest.fixture
def proxy(mysql_server: MySQLServer | ExternalServer) -> Iterator[FaultProxy]:
    """A fault-injection proxy in front of the shared server."""
    with FaultProxy(mysql_server.host, mysql_server.port) as p:
        yield p


def proxied_dsn(server: MySQLServer | ExternalServer, proxy: FaultProxy) -> str:
    return server.dsn.replace(f"@{server.host}:{server.port}/", f"@{proxy.host}:{proxy.port}/")
