"""pytest plugin: real MariaDB/MySQL servers as fixtures.

Registered through the ``pytest11`` entry point when the package is installed:

- ``mysql_server`` (session): one throwaway server shared by the whole run, or the
  server named by ``FASTAPI_MYSQLPOOL_TEST_DSN`` when that variable is set.
- ``mysql_dsn`` (session): its DSN, ``mysql://user:password@127.0.0.1:PORT/db``.
- ``private_mysql_server`` (function): a server of the test's own, for tests that kill,
  pause or restart it.

When no server binary is installed the fixtures fail the test with instructions; they
never skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .testing import EXTERNAL_DSN_ENV, ExternalServer, MySQLServer, MySQLServerError

__all__ = ["mysql_dsn", "mysql_server", "private_mysql_server"]


def _started(server: MySQLServer) -> MySQLServer:
    try:
        return server.start()
    except MySQLServerError as exc:
        pytest.fail(f"could not start a throwaway MySQL/MariaDB server: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[MySQLServer | ExternalServer]:
    """A server shared by the whole test session."""
    external = os.environ.get(EXTERNAL_DSN_ENV)
    if external:
        yield ExternalServer(external)
        return
    server = MySQLServer()
    _started(server)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mysql_dsn(mysql_server: MySQLServer | ExternalServer) -> str:
    """The shared server's DSN."""
    return mysql_server.dsn


@pytest.fixture
def private_mysql_server() -> Iterator[MySQLServer]:
    """A server for this test alone; kill, pause and restart it at will."""
    server = MySQLServer()
    _started(server)
    try:
        yield server
    finally:
        server.stop()
