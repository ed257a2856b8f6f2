"""The throwaway-server harness keeps its promises: a real server at ``.dsn``, faults on demand, nothing left behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomysql
import pymysql
import pytest

from fastapi_mysqlpool import parse_dsn
from fastapi_mysqlpool.testing import (
    EXTERNAL_DSN_ENV,
    ExternalServer,
    MySQLServer,
    MySQLServerError,
    server_binaries,
)

pytest_plugins = ["pytester"]

# Bounds a wait for something that must happen; never a measure of speed.
PATIENCE = 30.0
# Resolved once: some tests empty PATH.
PS = shutil.which("ps") or "ps"
INSTALL_HINTS = ("apt-get install -y mariadb-server", "brew install mariadb", EXTERNAL_DSN_ENV)


def server_processes(root: Path) -> dict[int, str]:
    """Live (non-zombie) processes whose command line mentions ``root``: servers with a datadir under it."""
    listing = subprocess.run([PS, "-A", "-ww", "-o", "pid=,stat=,args="], capture_output=True, text=True, check=True)
    found = {}
    for line in listing.stdout.splitlines():
        pid, stat, args = line.split(None, 2)
        if str(root) in args and not stat.startswith("Z"):
            found[int(pid)] = args
    return found


def assert_nothing_left(root: Path) -> None:
    assert server_processes(root) == {}
    assert list(root.iterdir()) == []


def assert_process_gone(pid: int) -> None:
    # The harness reaps its server, so the pid must not even exist as a zombie.
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def pymysql_kwargs(connect_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The harness speaks aiomysql's ``db``; pymysql deprecates it for ``database``."""
    kwargs = dict(connect_kwargs)
    kwargs["database"] = kwargs.pop("db")
    return kwargs


def query(connect_kwargs: dict[str, Any], sql: str, *, read_timeout: float | None = None) -> list[tuple[Any, ...]]:
    conn = pymysql.connect(
        **pymysql_kwargs(connect_kwargs), connect_timeout=5, read_timeout=read_timeout, autocommit=True
    )
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def scratch(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short temporary directory for the harness's datadirs, so that any leftover is ours to find."""
    root = Path(tempfile.mkdtemp(prefix="harness-"))
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    yield root
    # A failed test must not leak what it failed to clean up into the next one.
    for pid in server_processes(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def child_env(monkeypatch: pytest.MonkeyPatch, scratch: Path) -> None:
    """Child processes start their servers under ``scratch`` and never use an external one."""
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.delenv(EXTERNAL_DSN_ENV, raising=False)


async def test_start_answers_select_1_at_dsn_and_stop_leaves_nothing(scratch: Path) -> None:
    server = MySQLServer().start()
    try:
        assert server.running
        assert set("#@:/") <= set(server.password)
        assert server.password not in server.dsn
        assert server.password not in repr(server)
        # The password holds '#', '@', ':' and '/': connecting through the parsed DSN proves the encoding round-trips.
        conn = await aiomysql.connect(**parse_dsn(server.dsn).connect_kwargs)
        try:
            async with conn.cursor() as cur:
                await cur.execute("SELECT 1, CURRENT_USER(), DATABASE(), @@port")
                assert await cur.fetchone() == (1, f"{server.user}@%", server.db, server.port)
        finally:
            await conn.ensure_closed()
        pid = server.pid
        assert pid is not None
    finally:
        server.stop()
    assert not server.running
    assert_process_gone(pid)
    assert_nothing_left(scratch)


def test_data_survives_restart_and_crash(scratch: Path) -> None:
    server = MySQLServer().start()
    try:
        port = server.port
        query(server.connect_kwargs, "CREATE TABLE kept (id INT PRIMARY KEY) ENGINE=InnoDB")
        query(server.connect_kwargs, "INSERT INTO kept VALUES (1)")
        server.restart()
        assert server.port == port
        query(server.connect_kwargs, "INSERT INTO kept VALUES (2)")

        crashed = server.pid
        assert crashed is not None
        server.kill()
        assert not server.running
        assert_process_gone(crashed)
        with pytest.raises(pymysql.err.OperationalError):
            query(server.connect_kwargs, "SELECT 1")

        server.restart()
        assert server.port == port
        assert server.pid != crashed
        assert query(server.connect_kwargs, "SELECT id FROM kept ORDER BY id") == [(1,), (2,)]
    finally:
        server.stop()
    assert_nothing_left(scratch)


def test_server_started_from_a_worker_thread_outlives_the_thread(scratch: Path) -> None:
    # What `await asyncio.to_thread(server.start)` does: the executor's thread may exit long before the server stops.
    server = MySQLServer()
    try:
        worker = threading.Thread(target=server.start)
        worker.start()
        worker.join()
        assert query(server.connect_kwargs, "SELECT 1") == [(1,)]
    finally:
        server.stop()
    assert_nothing_left(scratch)


def test_paused_server_hangs_queries_until_resumed(scratch: Path) -> None:
    server = MySQLServer().start()
    try:
        conn = pymysql.connect(**pymysql_kwargs(server.connect_kwargs), read_timeout=0.5)
        try:
            server.pause()
            began = time.monotonic()
            with pytest.raises(pymysql.err.OperationalError), conn.cursor() as cur:
                cur.execute("SELECT 1")
            assert time.monotonic() - began >= 0.5
        finally:
            conn.close()
        server.resume()
        assert query(server.connect_kwargs, "SELECT 1", read_timeout=5) == [(1,)]
        # A paused server must still stop: SIGTERM alone would wait on a stopped process.
        server.pause()
    finally:
        server.stop()
    assert_nothing_left(scratch)


def test_two_servers_run_side_by_side(scratch: Path) -> None:
    with MySQLServer() as first, MySQLServer() as second:
        assert first.port != second.port
        assert first.datadir != second.datadir
        query(first.connect_kwargs, "CREATE TABLE only_in_first (id INT)")
        assert query(first.connect_kwargs, "SHOW TABLES") == [("only_in_first",)]
        assert query(second.connect_kwargs, "SHOW TABLES") == []
        second.kill()
        assert query(first.connect_kwargs, "SELECT 1") == [(1,)]
    assert_nothing_left(scratch)


def test_context_manager_stops_the_server_even_when_the_body_raises(scratch: Path) -> None:
    pids = []

    def use_and_fail() -> None:
        with MySQLServer() as server:
            pids.append(server.pid)
            assert query(server.connect_kwargs, "SELECT 1") == [(1,)]
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        use_and_fail()
    [pid] = pids
    assert pid is not None
    assert_process_gone(pid)
    assert_nothing_left(scratch)


def test_failed_start_raises_with_the_log_tail_and_leaves_nothing(scratch: Path) -> None:
    server = MySQLServer(server_args=["--no-such-option"])
    with pytest.raises(MySQLServerError, match="no-such-option") as info:
        server.start()
    assert "Log tail:" in str(info.value)
    assert server.password not in str(info.value)
    assert not server.running
    assert_nothing_left(scratch)


@pytest.fixture
def no_server_binary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Make this machine look like one without MariaDB or MySQL installed."""
    # The harness also searches /usr/sbin and similar directories that PATH lacks, and this machine has a server
    # there: only a PATH-bound `which` can hide it.
    real_which = shutil.which
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(shutil, "which", lambda cmd, mode=os.F_OK | os.X_OK, path=None: real_which(cmd, mode))


@pytest.mark.usefixtures("no_server_binary")
def test_missing_binary_error_says_how_to_install(scratch: Path) -> None:
    with pytest.raises(MySQLServerError) as info:
        server_binaries()
    for hint in INSTALL_HINTS:
        assert hint in str(info.value)
    with pytest.raises(MySQLServerError, match="brew install mariadb"):
        MySQLServer().start()
    assert_nothing_left(scratch)


@pytest.mark.usefixtures("child_env")
def test_fixtures_fail_instead_of_skipping_without_a_server_binary(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, scratch: Path
) -> None:
    pytester.makeconftest(
        """
        import os
        import shutil

        _which = shutil.which

        def _which_on_path_only(cmd, mode=os.F_OK | os.X_OK, path=None):
            return _which(cmd, mode)

        shutil.which = _which_on_path_only
        """
    )
    pytester.makepyfile(
        """
        def test_shared(mysql_dsn):
            pass

        def test_private(private_mysql_server):
            pass
        """
    )
    monkeypatch.setenv("PATH", str(pytester.mkdir("empty-path")))
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(errors=2)
    assert result.ret != 0
    for hint in INSTALL_HINTS:
        result.stdout.fnmatch_lines([f"*{hint}*"])
    assert_nothing_left(scratch)


@pytest.mark.usefixtures("child_env")
def test_external_dsn_points_the_shared_fixture_at_that_server(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mysql_server: MySQLServer | ExternalServer
) -> None:
    token = f"t_{uuid.uuid4().hex}"
    query(mysql_server.connect_kwargs, f"CREATE TABLE {token} (id INT)")
    try:
        monkeypatch.setenv(EXTERNAL_DSN_ENV, mysql_server.dsn)
        pytester.makepyfile(
            f"""
            import os

            import pymysql

            from fastapi_mysqlpool import parse_dsn
            from fastapi_mysqlpool.testing import ExternalServer

            def test_uses_the_external_server(mysql_server, mysql_dsn):
                assert isinstance(mysql_server, ExternalServer)
                assert mysql_dsn == os.environ["{EXTERNAL_DSN_ENV}"]
                conn = pymysql.connect(**parse_dsn(mysql_dsn).connect_kwargs)
                try:
                    with conn.cursor() as cur:
                        assert cur.execute("SHOW TABLES LIKE '{token}'") == 1
                finally:
                    conn.close()
            """
        )
        result = pytester.runpytest_subprocess()
        result.assert_outcomes(passed=1)
    finally:
        query(mysql_server.connect_kwargs, f"DROP TABLE {token}")


@pytest.mark.usefixtures("child_env")
def test_interrupted_test_run_leaves_no_server_and_no_datadir(pytester: pytest.Pytester, scratch: Path) -> None:
    ready = pytester.path / "ready"
    test_file = pytester.makepyfile(
        f"""
        import pathlib
        import time

        def test_waits_for_ctrl_c(mysql_server, private_mysql_server):
            pathlib.Path({str(ready)!r}).write_text("started")
            time.sleep({PATIENCE})
        """
    )
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(test_file)],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: ready.exists() or run.poll() is not None, "the inner test to start its servers")
        assert run.poll() is None, run.communicate()[0]
        assert len(server_processes(scratch)) == 2
        run.send_signal(signal.SIGINT)
        output = run.communicate(timeout=PATIENCE)[0]
    finally:
        run.kill()
        run.wait()
    assert run.returncode == pytest.ExitCode.INTERRUPTED, output
    assert "KeyboardInterrupt" in output
    assert_nothing_left(scratch)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG exists on Linux only")
@pytest.mark.usefixtures("child_env")
def test_sigkill_of_the_starting_process_takes_its_server_along(scratch: Path) -> None:
    script = textwrap.dedent(
        f"""
        import time
        from fastapi_mysqlpool.testing import MySQLServer

        server = MySQLServer().start()
        print(server.pid, flush=True)
        time.sleep({PATIENCE})
        """
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as parent:
        try:
            assert parent.stdout is not None
            assert parent.stdout.readline().strip().isdigit()
            assert len(server_processes(scratch)) == 1
        finally:
            parent.kill()
    wait_for(lambda: not server_processes(scratch), "the orphaned server to die")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG exists on Linux only")
@pytest.mark.usefixtures("child_env")
@pytest.mark.parametrize("cluster", ["ReplicaSet(1)", "GaleraCluster(1)"])
def test_sigkill_of_the_starting_process_takes_its_cluster_along(scratch: Path, cluster: str) -> None:
    # Galera nodes run as the mysql user when started by root: the signal must survive the change of account.
    scratch.chmod(0o755)  # which must reach its datadir in here
    script = textwrap.dedent(
        f"""
        import time
        from fastapi_mysqlpool.testing import GaleraCluster, ReplicaSet

        cluster = {cluster}.start()
        print(len(cluster.nodes), flush=True)
        time.sleep({PATIENCE * 3})
        """
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as parent:
        try:
            assert parent.stdout is not None
            nodes = int(parent.stdout.readline())
            assert len(server_processes(scratch)) == nodes
        finally:
            parent.kill()
    wait_for(lambda: not server_processes(scratch), "the orphaned cluster nodes to die")


@pytest.mark.usefixtures("child_env")
def test_interrupt_during_datadir_initialisation_leaves_nothing(scratch: Path) -> None:
    # The datadir's mysql/ appears while mariadb-install-db's bootstrap server is still writing into it.
    script = textwrap.dedent(
        """
        import os, pathlib, signal, tempfile, threading, time
        from fastapi_mysqlpool.testing import MySQLServer

        def interrupt_during_initialisation():
            root = pathlib.Path(tempfile.gettempdir())
            while not any(root.glob("mysqlpool-*/data/mysql")):
                time.sleep(0.005)
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=interrupt_during_initialisation, daemon=True).start()
        MySQLServer().start()
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=PATIENCE)
    assert "KeyboardInterrupt" in run.stderr
    assert server_processes(scratch) == {}
    # An orphaned bootstrap would keep writing for a moment after its parent is gone.
    time.sleep(1)
    assert_nothing_left(scratch)


def _connect(server: MySQLServer, **kwargs: Any) -> pymysql.connections.Connection:
    """pymysql on the app's account (connect_kwargs are aiomysql's, which still say ``db``)."""
    params = dict(server.connect_kwargs)
    params["database"] = params.pop("db")
    return pymysql.connect(**params, **kwargs)


def _own_server(mysql_server: MySQLServer | ExternalServer) -> MySQLServer:
    if not isinstance(mysql_server, MySQLServer):
        pytest.fail("this test checks the throwaway server's own set-up: run it without FASTAPI_MYSQLPOOL_TEST_DSN")
    return mysql_server


def test_the_throwaway_server_runs_utf8mb4_like_production(mysql_server: MySQLServer | ExternalServer) -> None:
    server = _own_server(mysql_server)
    conn = _connect(server)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@character_set_server, @@character_set_database, @@character_set_connection")
            assert cur.fetchone() == ("utf8mb4", "utf8mb4", "utf8mb4")
            cur.execute("CREATE TEMPORARY TABLE testing_unicode (text VARCHAR(20))")
            cur.execute("INSERT INTO testing_unicode VALUES (%s)", ("日本語 📚",))
            cur.execute("SELECT text FROM testing_unicode")
            assert cur.fetchone() == ("日本語 📚",)
    finally:
        conn.close()


def test_another_character_set_can_be_chosen() -> None:
    with MySQLServer(charset="latin1") as server:
        conn = _connect(server)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@character_set_server, @@character_set_database")
                assert cur.fetchone() == ("latin1", "latin1")
        finally:
            conn.close()


def test_the_app_user_has_rights_on_its_own_database_only(mysql_server: MySQLServer | ExternalServer) -> None:
    server = _own_server(mysql_server)
    conn = _connect(server, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW GRANTS")
            grants = [row[0] for row in cur.fetchall()]
            assert any(f"ON `{server.db}`.*" in grant for grant in grants), grants
            assert not any("ON *.*" in grant and "USAGE" not in grant for grant in grants), grants
            # An administrator's powers stay with the administrator.
            for statement in ("SET GLOBAL max_connections = 501", "CREATE DATABASE testing_other"):
                with pytest.raises(pymysql.err.OperationalError) as denied:
                    cur.execute(statement)
                assert denied.value.args[0] in (1044, 1227), denied.value
            cur.execute("CREATE TABLE IF NOT EXISTS testing_own (id INT)")  # its own database: anything goes
            cur.execute("DROP TABLE testing_own")
    finally:
        conn.close()
    admin = pymysql.connect(**server.root_connect_kwargs(), autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT @@max_connections")
            assert cur.fetchone() == (500,)
    finally:
        admin.close()
