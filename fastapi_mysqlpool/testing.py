"""Throwaway MariaDB/MySQL servers for tests: yours and ours.

`MySQLServer` starts a private server from the binaries on ``PATH``: a temporary
datadir, ``--no-defaults``, a free port on 127.0.0.1 and its own unix socket, utf8mb4, a
user with a password and rights on its own empty database only. No docker, no root
account of the machine's server, nothing left behind::

    from fastapi_mysqlpool.testing import MySQLServer

    with MySQLServer() as server:
        pool = await create_pool(dsn=server.dsn)

For fault tests it can also `kill()` (SIGKILL), `pause()`/`resume()` (SIGSTOP/SIGCONT:
a hung server) and `restart()` on the same port and datadir.

`ReplicaSet` (a primary and GTID replicas) and `GaleraCluster` (a 3-node Galera cluster)
are built of such servers, with the same faults and more (promotion, lag, quorum loss).

Installing the package registers a pytest plugin with the fixtures ``mysql_server``,
``mysql_dsn`` and ``private_mysql_server``, ``replica_set`` and ``private_replica_set``,
``galera_cluster`` and ``private_galera_cluster``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, MutableMapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pymysql

if TYPE_CHECKING:
    import httpx

    from ._clusters import GaleraCluster, ReplicaSet, galera_provider

__all__ = [
    "EXTERNAL_DSN_ENV",
    "AppStartupFailed",
    "ExternalServer",
    "GaleraCluster",
    "MySQLServer",
    "MySQLServerError",
    "ReplicaSet",
    "galera_provider",
    "lifespan_client",
    "server_binaries",
]

_CLUSTERS = ("GaleraCluster", "ReplicaSet", "galera_provider")


def __getattr__(name: str) -> Any:
    # The clusters are built of MySQLServer nodes: imported on first use, so that either module may be imported
    # first without a circular import.
    if name in _CLUSTERS:
        from . import _clusters

        return getattr(_clusters, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


EXTERNAL_DSN_ENV = "FASTAPI_MYSQLPOOL_TEST_DSN"
"""The environment variable that points the shared ``mysql_server`` fixture at an existing server (by DSN)
instead of starting one."""

_INSTALL_HINT = (
    "No MariaDB or MySQL server binary was found on PATH (looked for mariadbd, mysqld). Install one:\n"
    "  Debian/Ubuntu: sudo apt-get install -y mariadb-server\n"
    "  macOS:         brew install mariadb\n"
    f"or point the tests at an existing server: export {EXTERNAL_DSN_ENV}=mysql://user:password@host:3306/db"
)
_PR_SET_PDEATHSIG = 1


class MySQLServerError(RuntimeError):
    """The throwaway server could not be found, initialised or started."""


def server_binaries() -> tuple[str, str | None, str]:
    """Return ``(server, install_db, flavor)`` for the server found on ``PATH``.

    ``install_db`` is ``None`` for MySQL, which initialises with ``--initialize-insecure``.
    Raises `MySQLServerError` with installation hints when there is none.
    """
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/usr/local/mysql/bin"])
    mariadbd = shutil.which("mariadbd", path=search)
    if mariadbd:
        install_db = shutil.which("mariadb-install-db", path=search) or shutil.which("mysql_install_db", path=search)
        if install_db is None:
            raise MySQLServerError(f"found {mariadbd} but not mariadb-install-db.\n{_INSTALL_HINT}")
        return mariadbd, install_db, "mariadb"
    mysqld = shutil.which("mysqld", path=search)
    if mysqld is None:
        raise MySQLServerError(_INSTALL_HINT)
    version = subprocess.run([mysqld, "--version"], capture_output=True, text=True, check=False).stdout
    if "mariadb" in version.lower():
        install_db = shutil.which("mysql_install_db", path=search) or shutil.which("mariadb-install-db", path=search)
        if install_db is None:
            raise MySQLServerError(f"found {mysqld} (MariaDB) but not mysql_install_db.\n{_INSTALL_HINT}")
        return mysqld, install_db, "mariadb"
    return mysqld, None, "mysql"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    # Linux only: the kernel kills the server if the process that started it dies,
    # even by SIGKILL, so a crashed test run cannot leave an orphan behind.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _preexec() -> Callable[[], None] | None:
    # PR_SET_PDEATHSIG fires when the *thread* that forked exits, not the process: a server started from a worker
    # thread (asyncio.to_thread, an executor) would die with that thread. Only the main thread lives as long as the
    # process; servers started elsewhere rely on stop() and the finalizer.
    if sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread():
        return _die_with_parent
    return None


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # The group's other members are not our children, so nothing can wait for them: poll until they are gone.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)


class ExternalServer:
    """An existing server given by DSN, with the read-only part of `MySQLServer`'s surface."""

    def __init__(self, dsn: str) -> None:
        from ._config import parse_dsn

        self.dsn = dsn
        self.connect_kwargs: dict[str, Any] = parse_dsn(dsn).connect_kwargs
        self.host: str = self.connect_kwargs.get("host", "127.0.0.1")
        self.port: int = self.connect_kwargs.get("port", 3306)
        self.user: str = self.connect_kwargs.get("user", "")
        self.password: str = self.connect_kwargs.get("password", "")
        self.db: str = self.connect_kwargs.get("db", "")

    def __repr__(self) -> str:
        return f"ExternalServer({self.host}:{self.port}/{self.db})"

    def root_connect_kwargs(self) -> dict[str, Any]:
        """Administrative access: on an external server, the configured user."""
        return dict(self.connect_kwargs)


class MySQLServer:
    """A throwaway MariaDB (or MySQL) server.

    - ``user``, ``password``, ``db``: the account and the empty database created at start.
      The password is random by default and contains characters that DSNs must escape. The account has
      every right on ``db`` and none beyond it, as an application's account in production: no ``KILL`` of
      other users' connections, no ``SET GLOBAL``, no bypass of ``read_only``. Administration goes
      through `root_connect_kwargs()`.
    - ``charset``: the server's default character set (``--character-set-server``), so of ``db`` and of
      the tables created in it; ``utf8mb4`` by default, as MySQL 8 and Debian's MariaDB have. The
      connections speak utf8mb4 (aiomysql's default) whatever it is.
    - ``port``: a free port on 127.0.0.1 unless given.
    - ``ready_timeout``: how long `start()` waits for the server to answer.
    - ``server_args``: extra server options, e.g. ``["--wait-timeout=2"]``.
    - ``os_user``: the operating-system account the server runs as (root only): the data directory is
      handed over to it and the server started under it. By default, the current account.

    The server, its datadir and its socket are removed by `stop()`, by the context
    manager, at interpreter exit, and (on Linux) by the kernel if the starting process dies.
    """

    def __init__(
        self,
        *,
        user: str = "app",
        password: str | None = None,
        db: str = "app",
        charset: str = "utf8mb4",
        port: int | None = None,
        ready_timeout: float = 30.0,
        server_args: list[str] | None = None,
        os_user: str | None = None,
    ) -> None:
        self.user = user
        self.password = password if password is not None else f"pw-{os.urandom(6).hex()}#@:/"
        self.db = db
        self.charset = charset
        self.host = "127.0.0.1"
        self.port = port or 0
        self.ready_timeout = ready_timeout
        self.server_args = list(server_args or [])
        self.os_user = os_user
        self.startup_seconds: float | None = None
        self._datadir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False
        self._has_account = False
        self._lock = threading.Lock()
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"MySQLServer({self.host}:{self.port}/{self.db}, {state})"

    # ----------------------------------------------------------------- properties

    @property
    def dsn(self) -> str:
        """``mysql://user:password@127.0.0.1:PORT/db``, user and password percent-encoded."""
        return f"mysql://{quote(self.user, safe='')}:{quote(self.password, safe='')}@{self.host}:{self.port}/{self.db}"

    @property
    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``aiomysql.connect``/``create_pool``."""
        return {"host": self.host, "port": self.port, "user": self.user, "password": self.password, "db": self.db}

    @property
    def socket_path(self) -> str:
        return str(self._require_datadir() / "mysqld.sock")

    @property
    def datadir(self) -> Path:
        return self._require_datadir()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def root_connect_kwargs(self) -> dict[str, Any]:
        """Root over the unix socket: for KILL, SET GLOBAL and other administration."""
        return {"unix_socket": self.socket_path, "user": "root", "password": ""}

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's error log."""
        if self._datadir is None:
            return ""
        try:
            text = (self._datadir / "error.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # ---------------------------------------------------------------- life cycle

    def initialise(self, *, like: MySQLServer | None = None) -> MySQLServer:
        """Create and initialise the data directory without starting the server; `start()` does it when needed.

        With ``like``, copy that server's data directory, initialised and never started, instead: a fraction of
        the time, for servers that start out identical (the nodes of a cluster). Initialising is most of a first
        start, so the servers of a cluster prepare this way before each is started from the thread that is to
        own it (the parent-death signal ties a server to the thread that started it).
        """
        if like is not None and (like._datadir is None or like._has_account or like._proc is not None):
            raise MySQLServerError(f"initialise(like={like!r}): that server must be initialised and never started")
        with self._lock:
            self._initialise_once(like)
        return self

    def start(self) -> MySQLServer:
        """Initialise a datadir (first time), start the server and wait until it answers."""
        with self._lock:
            if self.running:
                return self
            began = time.monotonic()
            first = not self._has_account
            self._initialise_once()
            fixed_port = self.port != 0
            for attempt in range(3):
                if not fixed_port:
                    self.port = _free_port()
                try:
                    self._spawn_and_wait()
                    break
                except MySQLServerError:
                    # Another process may have taken the free port between probe and bind.
                    if fixed_port or attempt == 2 or "already in use" not in self.log_tail(50).lower():
                        if first:
                            self._remove_datadir()
                        raise
            if first:
                try:
                    self._create_account()
                except BaseException:
                    self._terminate(graceful=False)
                    self._remove_datadir()
                    raise
                self._has_account = True
            self.startup_seconds = time.monotonic() - began
            return self

    def stop(self) -> None:
        """Shut the server down (SIGTERM, then SIGKILL) and delete its datadir."""
        with self._lock:
            self._terminate(graceful=True)
            self._remove_datadir()

    def kill(self) -> None:
        """SIGKILL the server: a crash. The datadir stays, so `restart()` recovers it."""
        with self._lock:
            self._terminate(graceful=False)

    def pause(self) -> None:
        """SIGSTOP the server: connections stay open but nothing answers. Returns once it has stopped."""
        proc = self._require_proc()
        proc.send_signal(signal.SIGSTOP)
        self._paused = True
        _wait_for_state(proc.pid, stopped=True)

    def resume(self) -> None:
        """SIGCONT a paused server. Returns once it runs again."""
        proc = self._require_proc()
        proc.send_signal(signal.SIGCONT)
        self._paused = False
        _wait_for_state(proc.pid, stopped=False)

    def restart(self, *, graceful: bool = True) -> None:
        """Stop (or kill) and start again on the same port and datadir."""
        with self._lock:
            self._terminate(graceful=graceful)
        self.start()

    def __enter__(self) -> MySQLServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------- internals

    def _require_datadir(self) -> Path:
        if self._datadir is None:
            raise MySQLServerError("the server has not been started")
        return self._datadir

    def _require_proc(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            raise MySQLServerError("the server is not running")
        return self._proc

    def _initialise_once(self, like: MySQLServer | None = None) -> None:
        if self._datadir is not None:
            return
        self._datadir = Path(tempfile.mkdtemp(prefix="mysqlpool-"))
        self._finalizer = weakref.finalize(self, _cleanup, self._datadir, None)
        try:
            if like is None:
                self._initialise()
            else:
                self._copy_datadir(like.datadir)
        except BaseException:
            self._remove_datadir()
            raise

    def _run_as(self) -> dict[str, Any]:
        """``Popen`` arguments that start a process under `os_user`."""
        if self.os_user is None:
            return {}
        try:
            account = pwd.getpwnam(self.os_user)
        except KeyError:
            raise MySQLServerError(f"os_user={self.os_user!r}: no such operating-system account") from None
        if os.geteuid() not in (0, account.pw_uid):
            raise MySQLServerError(f"os_user={self.os_user!r}: only root can start a server as another account")
        return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    def _copy_datadir(self, source: Path) -> None:
        datadir = self._require_datadir()
        shutil.copytree(source / "data", datadir / "data", copy_function=_copy_sparse)
        (datadir / "tmp").mkdir()
        run_as = self._run_as()
        if run_as:
            for directory, _, files in os.walk(datadir):
                for path in [directory, *(os.path.join(directory, name) for name in files)]:
                    os.chown(path, run_as["user"], run_as["group"])

    def _initialise(self) -> None:
        server, install_db, flavor = server_binaries()
        datadir = self._require_datadir()
        data = datadir / "data"
        # A private tmpdir: concurrent bootstraps sharing /tmp collide on temporary table names.
        (datadir / "tmp").mkdir(exist_ok=True)
        run_as = self._run_as()
        if run_as:
            for path in (datadir, datadir / "tmp"):
                os.chown(path, run_as["user"], run_as["group"])
        if install_db is not None:
            cmd = [
                install_db,
                "--no-defaults",
                f"--datadir={data}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
                f"--tmpdir={datadir / 'tmp'}",
            ]
        else:
            cmd = [server, "--no-defaults", "--initialize-insecure", f"--datadir={data}", f"--tmpdir={datadir / 'tmp'}"]
        if os.geteuid() == 0 and not run_as:
            cmd.append("--user=root")
        # Its own session, so that an interrupt kills the whole pipeline: mariadb-install-db is a shell script, and
        # killing it alone leaves its `mariadbd --bootstrap` writing into the datadir that start() then deletes.
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=_preexec(),
            **run_as,
        )
        try:
            output, _ = proc.communicate(timeout=120)
        except BaseException:
            _kill_group(proc)
            raise
        if proc.returncode != 0:
            tail = "\n".join(output.splitlines()[-20:])
            if run_as:
                tail += f"\n(it runs as {self.os_user}: every directory above {datadir} must be searchable by it)"
            raise MySQLServerError(f"{flavor} datadir initialisation failed ({' '.join(cmd)}):\n{tail}")

    def _server_command(self, *extra_args: str) -> list[str]:
        """The server's command line, `server_args` and then ``extra_args`` last (the last of an option wins)."""
        server, _, flavor = server_binaries()
        datadir = self._require_datadir()
        cmd = [
            server,
            "--no-defaults",
            f"--datadir={datadir / 'data'}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={datadir / 'mysqld.sock'}",
            f"--pid-file={datadir / 'mysqld.pid'}",
            f"--log-error={datadir / 'error.log'}",
            f"--tmpdir={datadir / 'tmp'}",
            "--skip-name-resolve",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=32M",
            "--max-connections=500",
            # --no-defaults leaves the compiled-in latin1; production servers default to utf8mb4.
            f"--character-set-server={self.charset}",
            *self.server_args,
        ]
        if flavor == "mysql":
            cmd += ["--mysqlx=OFF", "--innodb-redo-log-capacity=16M"]
        if os.geteuid() == 0 and self.os_user is None:
            cmd.append("--user=root")
        return [*cmd, *extra_args]

    def _spawn_and_wait(self) -> None:
        datadir = self._require_datadir()
        self._proc = subprocess.Popen(
            self._server_command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_preexec(),
            **self._run_as(),
        )
        self._paused = False
        if self._finalizer is not None:
            self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _cleanup, datadir, self._proc)
        self._wait_ready()

    def _wait_ready(self) -> None:
        proc = self._require_proc()
        deadline = time.monotonic() + self.ready_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise MySQLServerError(
                    f"the server exited with code {proc.returncode} during start-up. Log tail:\n{self.log_tail()}"
                )
            try:
                # A bare socket first: pymysql leaks its socket when the connect is refused.
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                    probe.settimeout(1)
                    probe.connect(self.socket_path)
                conn = pymysql.connect(**self.root_connect_kwargs(), connect_timeout=1)
            except (OSError, pymysql.err.MySQLError) as exc:
                last_error = exc
                time.sleep(0.02)
                continue
            conn.close()
            return
        self._terminate(graceful=False)
        raise MySQLServerError(
            f"the server did not answer within {self.ready_timeout:g} s (last error: {last_error}). "
            f"Log tail:\n{self.log_tail()}"
        )

    def _create_account(self) -> None:
        conn = pymysql.connect(**self.root_connect_kwargs(), connect_timeout=5, autocommit=True)
        try:
            with conn.cursor() as cur:
                # Every server creates the account for itself: kept out of a binary log, it never replicates, so
                # the nodes of a replica set start with the same, empty, GTID position.
                cur.execute("SET SESSION sql_log_bin = 0")
                cur.execute(f"CREATE DATABASE IF NOT EXISTS `{self.db}`")
                for host in ("%", "localhost"):
                    cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (self.user, host, self.password))
                    # An application's rights, not an administrator's: ALL ON *.* would also bypass read_only and
                    # take the connection MariaDB keeps for administrators (max_connections + 1).
                    cur.execute(f"GRANT ALL PRIVILEGES ON `{self.db}`.* TO %s@%s", (self.user, host))
        finally:
            conn.close()

    def _terminate(self, *, graceful: bool) -> None:
        proc = self._proc
        self._proc = None
        if proc is None:
            return
        _stop_process(proc, graceful=graceful, paused=self._paused)
        self._paused = False

    def _remove_datadir(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._datadir is not None:
            shutil.rmtree(self._datadir, ignore_errors=True)
            self._datadir = None


def _copy_sparse(source: str, target: str) -> str:
    # A fresh datadir is mostly the zeros of an empty redo log: seeking over them writes 6 MB of its 110 MB.
    chunk_size = 1 << 20
    with open(source, "rb") as src, open(target, "wb") as dst:
        while chunk := src.read(chunk_size):
            if chunk.count(0) == len(chunk):
                dst.seek(len(chunk), os.SEEK_CUR)
            else:
                dst.write(chunk)
        dst.truncate()
    shutil.copystat(source, target)
    return target


def _wait_for_state(pid: int, *, stopped: bool, timeout: float = 5.0) -> None:
    # Signals are delivered asynchronously: without this, a query sent right after pause()
    # may still be answered by a thread that has not stopped yet.
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            # The state follows the parenthesised command name, which may itself contain spaces.
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return  # no procfs (not Linux) or the process is gone: nothing to wait for
        if (state in ("T", "t")) == stopped:
            return
        time.sleep(0.002)


def _stop_process(proc: subprocess.Popen[bytes], *, graceful: bool, paused: bool = True) -> None:
    if proc.poll() is not None:
        return
    if paused:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)
    if graceful:
        proc.terminate()
        try:
            proc.wait(timeout=30)
            return
        except subprocess.TimeoutExpired:
            pass
    proc.kill()
    proc.wait(timeout=30)


def _cleanup(datadir: Path, proc: subprocess.Popen[bytes] | None) -> None:
    # Runs at garbage collection or interpreter exit for servers nobody stopped.
    if proc is not None:
        _stop_process(proc, graceful=False)
    shutil.rmtree(datadir, ignore_errors=True)


class AppStartupFailed(RuntimeError):
    """The app's lifespan failed at startup (``lifespan.startup.failed``); the message is the server's."""


@contextlib.asynccontextmanager
async def lifespan_client(app: Any, *, base_url: str = "http://testserver") -> AsyncIterator[httpx.AsyncClient]:
    """``async with lifespan_client(app) as client:``: an httpx client for ``app`` with its lifespan running.

    httpx's ``ASGITransport`` sends no lifespan events, so this runs the startup and the
    shutdown itself and hands the lifespan state (where `mysql_lifespan` keeps its pools)
    to every request, exactly as uvicorn does. Unhandled exceptions in the app become
    500 responses, as they would behind a server. Raises `AppStartupFailed` when the
    startup fails, e.g. because the database is unreachable. Needs ``httpx``.
    """
    import httpx

    state: dict[str, Any] = {}
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": state}
    task = asyncio.ensure_future(app(scope, to_app.get, from_app.put))
    await to_app.put({"type": "lifespan.startup"})
    message = await from_app.get()
    if message["type"] == "lifespan.startup.failed":
        # Starlette re-raises the startup error after reporting it; the message is what a server shows.
        await asyncio.gather(task, return_exceptions=True)
        raise AppStartupFailed(message.get("message", ""))

    async def with_state(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        await app({**scope, "state": dict(state)}, receive, send)

    transport = httpx.ASGITransport(app=with_state, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        message = await from_app.get()
        await task
        if message["type"] != "lifespan.shutdown.complete":
            raise RuntimeError(f"the app's lifespan shutdown failed: {message.get('message', message)}")
