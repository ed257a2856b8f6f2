"""Throwaway clusters for tests: a primary with GTID replicas (`ReplicaSet`) and a MariaDB Galera cluster.

Every node is a `MySQLServer` (temporary datadir, ``--no-defaults``, free ports on 127.0.0.1, killed by the
kernel if the starting process dies), so a cluster cleans up exactly as one server does. The nodes share one
account (user, password, database): a cluster's `dsn` lists them all, ``mysql://user:pw@h1:p1,h2:p2/db``, and
each node's own `MySQLServer.dsn` reaches it alone.
"""

from __future__ import annotations

import abc
import os
import random
import re
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import pymysql
import pymysql.cursors

from .testing import MySQLServer, MySQLServerError, _preexec, server_binaries

__all__ = ["GaleraCluster", "ReplicaSet", "galera_provider"]

_C = TypeVar("_C", bound="_Cluster")
_GALERA_PROVIDERS = (
    "/usr/lib/galera/libgalera_smm.so",
    "/usr/lib/libgalera_smm.so",
    "/usr/lib64/galera-4/libgalera_smm.so",
)
_GALERA_HINT = (
    "Galera clusters need the galera-4 provider, rsync and socat:\n"
    "  Debian/Ubuntu: sudo apt-get install -y galera-4 rsync socat"
)
_READ_ONLY = "--read-only"


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _galera_ports(taken: set[int]) -> tuple[int, int, int]:
    """Three free ports for a node's group communication, IST and SST, below the ephemeral range.

    The kernel hands out ephemeral ports to every outgoing connection (the tests open thousands), so a port
    probed free there may be some socket's local port by the time a node binds it. Below the range only
    listeners compete; each port is bound once to check it, and a node that still loses one is started again on
    new ports (`GaleraCluster.start`).
    """
    high = _ephemeral_low() - 1
    ports: list[int] = []
    while len(ports) < 3:
        port = random.randint(max(1024, high - 12000), high)
        if port in taken or port in ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    taken.update(ports)
    return ports[0], ports[1], ports[2]


def galera_provider() -> str:
    """The path of ``libgalera_smm.so``; raises `MySQLServerError` with installation hints when there is none."""
    for path in _GALERA_PROVIDERS:
        if os.path.exists(path):
            return path
    raise MySQLServerError(f"no Galera provider (libgalera_smm.so) in {', '.join(_GALERA_PROVIDERS)}.\n{_GALERA_HINT}")


Statement = str | tuple[str, Sequence[Any]]


def _require_mariadb(what: str) -> None:
    _, _, flavor = server_binaries()
    if flavor != "mariadb":
        raise MySQLServerError(f"{what} needs MariaDB: its replication statements are MariaDB's; found {flavor}")


def _query(node: MySQLServer, *statements: Statement) -> list[dict[str, Any]]:
    """Run statements (SQL, or SQL and its arguments) as root over the node's unix socket, in one session.

    Returns the last one's rows.
    """
    conn = pymysql.connect(
        **node.root_connect_kwargs(), autocommit=True, connect_timeout=5, cursorclass=pymysql.cursors.DictCursor
    )
    try:
        with conn.cursor() as cur:
            for statement in statements:
                sql, args = (statement, None) if isinstance(statement, str) else statement
                cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()


def _wait_until(what: str, check: Callable[[], bool], timeout: float) -> None:
    """Poll ``check`` until it is true. A node that refuses the query for a moment (it restarts, changes view or
    receives a state transfer) is asked again; only the deadline fails the wait, naming the last error."""
    deadline = time.monotonic() + timeout
    last: str = "the condition was false"
    while True:
        try:
            if check():
                return
        except pymysql.err.MySQLError as exc:
            last = f"last error: {exc}"
        if time.monotonic() > deadline:
            raise MySQLServerError(f"timed out after {timeout:g} s waiting for {what} ({last})")
        time.sleep(0.05)


class _Cluster(abc.ABC):
    """What both kinds of cluster share: their nodes, the faults on one node, the DSNs and the life cycle."""

    def __init__(self, *, user: str, password: str | None, db: str) -> None:
        self.user = user
        self.password = password if password is not None else f"pw-{os.urandom(6).hex()}#@:/"
        self.db = db
        self.nodes: list[MySQLServer] = []
        self.startup_seconds: float | None = None
        self._paused: set[int] = set()

    def __repr__(self) -> str:
        hosts = ", ".join(f"{node.host}:{node.port}" for node in self.nodes)
        return f"{type(self).__name__}([{hosts}]/{self.db})"

    @property
    def dsn(self) -> str:
        """Every node, in order: ``mysql://user:password@127.0.0.1:P1,127.0.0.1:P2,.../db``."""
        return self._dsn(self.nodes)

    def _dsn(self, nodes: Sequence[MySQLServer]) -> str:
        hosts = ",".join(f"{node.host}:{node.port}" for node in nodes)
        return f"mysql://{quote(self.user, safe='')}:{quote(self.password, safe='')}@{hosts}/{self.db}"

    def node(self, i: int) -> MySQLServer:
        """Node ``i`` (0-based, in start order)."""
        if not 0 <= i < len(self.nodes):
            raise IndexError(f"{type(self).__name__} has nodes 0..{len(self.nodes) - 1}, not {i}")
        return self.nodes[i]

    def query(self, i: int, sql: str, args: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """Run ``sql`` on node ``i`` as root (for administration and assertions) and return its rows as dicts."""
        return _query(self.node(i), (sql, args) if args is not None else sql)

    def kill(self, i: int) -> None:
        """SIGKILL node ``i``: a crash. `restart()` brings it back."""
        self.node(i).kill()
        self._paused.discard(i)

    def pause(self, i: int) -> None:
        """SIGSTOP node ``i``: its sockets stay open and nothing answers, the others see it vanish."""
        self.node(i).pause()
        self._paused.add(i)

    def resume(self, i: int) -> None:
        """SIGCONT a paused node."""
        self.node(i).resume()
        self._paused.discard(i)

    def _alive(self, i: int) -> bool:
        return self.nodes[i].running and i not in self._paused

    def _new_node(self, server_args: list[str], os_user: str | None, ready_timeout: float) -> MySQLServer:
        return MySQLServer(
            user=self.user,
            password=self.password,
            db=self.db,
            server_args=server_args,
            os_user=os_user,
            ready_timeout=ready_timeout,
        )

    def _start_nodes(self, start: Callable[[], None]) -> None:
        began = time.monotonic()
        try:
            # Initialising a datadir is most of a server's start: once, and the other nodes start from copies.
            first = self.nodes[0].initialise()
            for node in self.nodes[1:]:
                node.initialise(like=first)
            start()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Stop every node and delete its datadir, even when one of them fails to stop."""
        errors: list[BaseException] = []
        for node in self.nodes:
            try:
                # The data goes with the datadir: a clean shutdown, node by node leaving the cluster, is only slower.
                node.kill()
                node.stop()
            except Exception as exc:  # stop the others first, then report
                errors.append(exc)
        self._paused.clear()
        if errors:
            raise errors[0]

    @abc.abstractmethod
    def start(self: _C) -> _C:
        """Start every node; returns the cluster once it is ready."""

    def __enter__(self: _C) -> _C:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class ReplicaSet(_Cluster):
    """A MariaDB primary and ``replicas`` GTID replicas, all on 127.0.0.1.

    - ``replicas``: how many replicas (default 2).
    - ``user``, ``password``, ``db``: the account and database, created on the primary and replicated.
    - ``server_args``: extra server options for every node.
    - ``ready_timeout``: how long each node may take to start.

    Node 0 starts as the primary. Every node writes a binary log with ``log_slave_updates`` and GTID strict mode,
    so any replica can be promoted; replicas run with ``read_only``. Faults: `kill()`, `pause()`, `resume()`,
    `restart()`, `promote()`, `lag()` (``MASTER_DELAY``) and `stop_sql_thread()` (``Seconds_Behind_Master``
    becomes NULL).
    """

    def __init__(
        self,
        replicas: int = 2,
        *,
        user: str = "app",
        password: str | None = None,
        db: str = "app",
        server_args: list[str] | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        if replicas < 1:
            raise ValueError(f"replicas={replicas!r}: a replica set needs at least one replica")
        super().__init__(user=user, password=password, db=db)
        self._replica_count = replicas
        self._server_args = list(server_args or [])
        self._ready_timeout = ready_timeout
        self._primary = 0
        # The replication account's password goes into CHANGE MASTER only; SHOW SLAVE STATUS never shows it.
        self._repl_password = os.urandom(12).hex()

    # ----------------------------------------------------------------- properties

    @property
    def primary(self) -> MySQLServer:
        """The node that currently takes writes."""
        return self.nodes[self._primary]

    @property
    def primary_index(self) -> int:
        """The primary's index in `nodes`."""
        return self._primary

    @property
    def replicas(self) -> list[MySQLServer]:
        """Every other node, in node order."""
        return [node for i, node in enumerate(self.nodes) if i != self._primary]

    @property
    def dsn(self) -> str:
        """The primary first, then the replicas: ``mysql://user:password@127.0.0.1:P,127.0.0.1:R1,.../db``."""
        return self._dsn([self.primary, *self.replicas])

    @property
    def replicas_dsn(self) -> str:
        """The replicas only, e.g. for ``mysql_lifespan(dsn, replicas=...)``."""
        return self._dsn(self.replicas)

    # ---------------------------------------------------------------- life cycle

    def start(self) -> ReplicaSet:
        """Start the primary and the replicas, and return once every replica has replicated the account."""
        if self.nodes:
            return self
        _require_mariadb("ReplicaSet")
        self.nodes = [
            self._new_node(self._node_args(i, read_only=i != 0), None, self._ready_timeout)
            for i in range(self._replica_count + 1)
        ]

        def start() -> None:
            for node in self.nodes:
                # The app's account has rights on its database only, so it obeys read_only, as a real
                # application's account does; and it may read a replica's lag, as a pool routing reads
                # must. Every node creates it outside its binary log.
                node.start()
                _query(
                    node,
                    "SET SESSION sql_log_bin = 0",
                    ("GRANT SLAVE MONITOR ON *.* TO %s@'%%', %s@'localhost'", (self.user, self.user)),
                )
            # Replicated, so that any node can be a primary later: the replicas start from this transaction.
            _query(
                self.nodes[0],
                ("CREATE USER 'repl'@'%%' IDENTIFIED BY %s", (self._repl_password,)),
                "GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'",
            )
            for i in range(1, len(self.nodes)):
                self._replicate(i)
            self.sync()

        self._start_nodes(start)
        return self

    def _node_args(self, i: int, *, read_only: bool) -> list[str]:
        return [
            f"--server-id={i + 1}",
            "--log-bin=mysql-bin",
            "--log-slave-updates",
            "--binlog-format=ROW",
            "--gtid-strict-mode=ON",
            "--relay-log=relay-bin",
            # Throwaway data: no fsync per commit.
            "--sync-binlog=0",
            "--innodb-flush-log-at-trx-commit=2",
            *self._server_args,
            f"{_READ_ONLY}={'ON' if read_only else 'OFF'}",
        ]

    # ------------------------------------------------------------------- faults

    def restart(self, i: int, *, graceful: bool = True) -> None:
        """Stop (or kill) node ``i`` and start it again; a replica resumes replicating from the primary."""
        node = self.node(i)
        self._paused.discard(i)
        node.restart(graceful=graceful)
        if i != self._primary and not self.query(i, "SHOW SLAVE STATUS"):
            # A former primary, demoted while it was down: it joins as a replica now.
            self._demote(i)

    def promote(self, i: int, *, demote_old: bool = True, timeout: float = 30.0) -> None:
        """Make replica ``i`` the primary: ``read_only`` off, replication off; the other replicas follow it.

        When the old primary is up (running, not paused), it is first made read-only and the new primary waits,
        up to ``timeout`` seconds, until it has applied everything the old one wrote; with ``demote_old`` the old
        primary then replicates from the new one. An old primary that is down becomes a read-only replica of the
        new primary when it is restarted.
        """
        self.node(i)
        old = self._primary
        if i == old:
            return
        old_up = self._alive(old)
        if old_up:
            self._set_read_only(old, True)
            (position,) = self.query(old, "SELECT @@gtid_binlog_pos AS pos")
            self._wait_gtid(i, position["pos"], timeout)
        else:
            self._set_read_only_on_restart(old, True)
        _query(self.nodes[i], "STOP SLAVE", "RESET SLAVE ALL")
        self._set_read_only(i, False)
        self._primary = i
        for j in range(len(self.nodes)):
            if j not in (i, old) and self._alive(j):
                self._replicate(j)
        if old_up and demote_old:
            self._demote(old)

    def lag(self, i: int, seconds: int) -> None:
        """Delay replica ``i`` by ``seconds`` (``MASTER_DELAY``; 0 removes the delay).

        ``Seconds_Behind_Master`` then grows up to ``seconds`` after each write on the primary.
        """
        self._require_replica(i)
        _query(self.nodes[i], "STOP SLAVE", f"CHANGE MASTER TO MASTER_DELAY = {int(seconds)}", "START SLAVE")

    def stop_sql_thread(self, i: int) -> None:
        """Stop replica ``i``'s SQL thread: it keeps receiving, applies nothing, and its lag is unknown (NULL)."""
        self._require_replica(i)
        self.query(i, "STOP SLAVE SQL_THREAD")

    def start_sql_thread(self, i: int) -> None:
        """Start replica ``i``'s SQL thread again."""
        self._require_replica(i)
        self.query(i, "START SLAVE SQL_THREAD")

    def sync(self, *replicas: int, timeout: float = 30.0) -> None:
        """Wait until the given replicas (by default every running one) have applied all the primary wrote."""
        (position,) = self.query(self._primary, "SELECT @@gtid_binlog_pos AS pos")
        for i in replicas or [j for j in range(len(self.nodes)) if j != self._primary and self._alive(j)]:
            self._require_replica(i)
            self._wait_gtid(i, position["pos"], timeout)

    # ----------------------------------------------------------------- internals

    def _require_replica(self, i: int) -> None:
        self.node(i)
        if i == self._primary:
            raise ValueError(f"node {i} is the primary, not a replica")

    def _replicate(self, i: int) -> None:
        primary = self.primary
        _query(
            self.nodes[i],
            "STOP SLAVE",
            (
                "CHANGE MASTER TO MASTER_HOST = %s, MASTER_PORT = %s, MASTER_USER = 'repl', MASTER_PASSWORD = %s, "
                "MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1",
                (primary.host, primary.port, self._repl_password),
            ),
            "START SLAVE",
        )

    def _demote(self, i: int) -> None:
        # A primary's own transactions are in its binary log, not in its replication position.
        self._set_read_only(i, True)
        _query(self.nodes[i], "STOP SLAVE", "SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos")
        self._replicate(i)

    def _wait_gtid(self, i: int, position: str, timeout: float) -> None:
        (row,) = self.query(i, "SELECT MASTER_GTID_WAIT(%s, %s) AS waited", (position, timeout))
        if row["waited"] != 0:
            raise MySQLServerError(f"node {i} did not reach GTID position {position!r} within {timeout:g} s")

    def _set_read_only(self, i: int, read_only: bool) -> None:
        self.query(i, f"SET GLOBAL read_only = {'ON' if read_only else 'OFF'}")
        self._set_read_only_on_restart(i, read_only)

    def _set_read_only_on_restart(self, i: int, read_only: bool) -> None:
        args = [arg for arg in self.nodes[i].server_args if not arg.startswith(f"{_READ_ONLY}=")]
        self.nodes[i].server_args = [*args, f"{_READ_ONLY}={'ON' if read_only else 'OFF'}"]


class GaleraCluster(_Cluster):
    """A MariaDB Galera cluster of ``size`` nodes (default 3), every address on 127.0.0.1.

    - ``size``: how many nodes (at least 1; 3 for a quorum that survives one node's loss).
    - ``user``, ``password``, ``db``: the account and database, created on node 0 and replicated.
    - ``server_args``: extra server options for every node.
    - ``provider_options``: extra ``wsrep_provider_options``, e.g. ``"evs.suspect_timeout=PT2S"``.
    - ``os_user``: the operating-system account the nodes run as. As root the default is ``mysql``: the rsync
      state transfer's daemon drops root to ``nobody``, which cannot write the joiner's datadir.
    - ``ready_timeout``: how long each node may take to start, its state transfer included.

    Node 0 bootstraps the cluster (``--wsrep-new-cluster``), the others join it one at a time by a full state
    transfer (SST, rsync). Faults: `kill()`, `pause()`, `resume()`, `restart()` (a node that crashed rejoins by an
    incremental transfer, IST, from the position ``--wsrep-recover`` finds), and `isolate()`/`rejoin()`: a node
    cut off from the others loses quorum.
    """

    def __init__(
        self,
        size: int = 3,
        *,
        user: str = "app",
        password: str | None = None,
        db: str = "app",
        server_args: list[str] | None = None,
        provider_options: str = "",
        os_user: str | None = None,
        ready_timeout: float = 60.0,
    ) -> None:
        if size < 1:
            raise ValueError(f"size={size!r}: a Galera cluster needs at least one node")
        super().__init__(user=user, password=password, db=db)
        self._size = size
        self._server_args = list(server_args or [])
        self._provider_options = provider_options
        self._os_user = os_user if os_user is not None else ("mysql" if os.geteuid() == 0 else None)
        self._ready_timeout = ready_timeout
        self.cluster_name = f"mysqlpool-{os.urandom(4).hex()}"
        self._isolated: set[int] = set()
        self._provider = ""
        self._ports: list[tuple[int, int, int]] = []

    def start(self) -> GaleraCluster:
        """Bootstrap node 0, join the others one by one, and return once every node is synced."""
        if self.nodes:
            return self
        self._provider = galera_provider()
        _require_mariadb("GaleraCluster")
        # Three ports per node besides the client port: group communication, IST and SST.
        taken: set[int] = set()
        self._ports = [_galera_ports(taken) for _ in range(self._size)]
        for i in range(self._size):
            self.nodes.append(self._new_node(self._node_args(i), self._os_user, self._ready_timeout))

        def start() -> None:
            # Only the very first start bootstraps: a restarted node 0 joins the cluster that is there.
            self._start_node(0, "--wsrep-new-cluster", taken)
            self.wait_synced(0)
            for i in range(1, len(self.nodes)):
                self._start_node(i, None, taken)  # returns once its SST is done and it answers
                self.wait_synced(i)

        self._start_nodes(start)
        return self

    def _node_args(self, i: int) -> list[str]:
        gcomm, ist, sst = self._ports[i]
        members = ",".join(f"127.0.0.1:{port}" for port, _, _ in self._ports)
        options = f"gmcast.listen_addr=tcp://127.0.0.1:{gcomm};ist.recv_addr=127.0.0.1:{ist};gcache.size=64M"
        if self._provider_options:
            options = f"{options};{self._provider_options}"
        return [
            "--wsrep-on=ON",
            f"--wsrep-provider={self._provider}",
            f"--wsrep-cluster-name={self.cluster_name}",
            f"--wsrep-cluster-address=gcomm://{members}",
            f"--wsrep-node-name=node{i}",
            f"--wsrep-node-address=127.0.0.1:{gcomm}",
            f"--wsrep-provider-options={options}",
            "--wsrep-sst-method=rsync",
            f"--wsrep-sst-receive-address=127.0.0.1:{sst}",
            # Donors in start order, then any (the trailing comma): node 0's write-set cache reaches back to the
            # cluster's start, so a crashed node rejoins by IST; a later joiner's begins only where it joined,
            # and a donor that cannot serve the IST sends a full SST instead.
            f"--wsrep-sst-donor={','.join(f'node{j}' for j in range(len(self._ports)) if j != i)},",
            "--binlog-format=ROW",
            "--default-storage-engine=InnoDB",
            "--innodb-autoinc-lock-mode=2",
            "--innodb-flush-log-at-trx-commit=2",
            *self._server_args,
        ]

    def _start_node(self, i: int, extra: str | None, taken: set[int]) -> None:
        """First start of node ``i``; on new Galera ports when another process took one of its own meanwhile."""
        node = self.nodes[i]
        for attempt in range(3):
            node.server_args = self._node_args(i) + ([extra] if extra else [])
            try:
                node.start()
            except MySQLServerError as exc:
                # The server's start already retries its client port; a Galera port lost to another listener
                # (gcomm, IST, or the SST's rsync daemon) fails the start the same way, with this in the log.
                if attempt == 2 or "in use" not in str(exc).lower():
                    raise
                self._ports[i] = _galera_ports(taken)
                continue
            break
        # Every node's address list names the ports in use now, for its later starts and restarts.
        for j, other in enumerate(self.nodes):
            other.server_args = self._node_args(j)

    # ------------------------------------------------------------------- state

    def status(self, i: int) -> dict[str, str]:
        """Node ``i``'s ``wsrep_ready``, ``wsrep_local_state``, ``wsrep_cluster_status``, ``wsrep_cluster_size``
        and ``wsrep_cluster_conf_id`` (the view it is in)."""
        rows = self.query(
            i,
            "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_ready', 'wsrep_local_state', "
            "'wsrep_cluster_status', 'wsrep_cluster_size', 'wsrep_cluster_conf_id')",
        )
        return {row["Variable_name"].lower(): str(row["Value"]) for row in rows}

    def wait_synced(self, *nodes: int, timeout: float | None = None) -> None:
        """Wait until the given nodes (by default every one up) are Synced members of the cluster's current view,
        at most ``timeout`` seconds each (default: the cluster's ``ready_timeout``).

        The view matters: a node resumed after a pause still believes in the view it was paused in, until it
        learns that the others went on without it and rejoins.
        """
        members = [j for j in range(len(self.nodes)) if self._alive(j) and j not in self._isolated]
        for i in nodes or members:

            def synced(i: int = i) -> bool:
                views = {j: self.status(j) for j in {i, *members}}
                state = views[i]
                return (
                    state.get("wsrep_local_state") == "4"
                    and state.get("wsrep_cluster_status") == "Primary"
                    and state.get("wsrep_cluster_size") == str(len(members))
                    and len({view.get("wsrep_cluster_conf_id") for view in views.values()}) == 1
                )

            _wait_until(f"node {i} to be synced", synced, timeout or self._ready_timeout)

    def wait_status(self, i: int, cluster_status: str, *, timeout: float | None = None) -> None:
        """Wait until node ``i``'s ``wsrep_cluster_status`` is ``cluster_status`` (``Primary``, ``non-Primary``)."""
        _wait_until(
            f"node {i} to be {cluster_status}",
            lambda: self.status(i).get("wsrep_cluster_status") == cluster_status,
            timeout or self._ready_timeout,
        )

    # ------------------------------------------------------------------- faults

    def restart(self, i: int, *, graceful: bool = True) -> None:
        """Stop (or kill) node ``i`` and start it again; it rejoins by IST and this returns once it is synced."""
        node = self.node(i)
        self._paused.discard(i)
        self._isolated.discard(i)  # a new process starts with the configured provider options
        if node.running and graceful:
            # A clean shutdown leaves the position in grastate.dat: nothing to recover.
            node.restart()
            self.wait_synced(i)
            return
        node.kill()
        position = self._recover_position(node)
        extra = [f"--wsrep-start-position={position}"] if position else []
        node.server_args.extend(extra)
        try:
            node.start()
        finally:
            for arg in extra:
                node.server_args.remove(arg)
        self.wait_synced(i)

    def isolate(self, i: int) -> None:
        """Cut node ``i`` off from the others (``gmcast.isolate``): it loses quorum and answers 1047 on tables.
        Returns once it is non-Primary and the others are synced in a view without it."""
        self.query(i, "SET GLOBAL wsrep_provider_options = 'gmcast.isolate=1'")
        self._isolated.add(i)
        self.wait_status(i, "non-Primary")
        # The node sees itself alone first; the others drop it only after their suspect timeout.
        if any(self._alive(j) and j not in self._isolated for j in range(len(self.nodes))):
            self.wait_synced()

    def rejoin(self, i: int) -> None:
        """Undo `isolate()`; returns once node ``i`` is synced again."""
        self.query(i, "SET GLOBAL wsrep_provider_options = 'gmcast.isolate=0'")
        self._isolated.discard(i)
        self.wait_synced(i)

    # ----------------------------------------------------------------- internals

    def _recover_position(self, node: MySQLServer) -> str | None:
        # A clean shutdown saves the node's position in grastate.dat; after a crash it says seqno -1, and only
        # --wsrep-recover (reading InnoDB) finds it. Without it the node would ask for a full SST.
        grastate = node.datadir / "data" / "grastate.dat"
        try:
            if not re.search(r"^seqno:\s+-1\s*$", grastate.read_text(), re.MULTILINE):
                return None
        except OSError:
            return None
        log = node.datadir / "data" / "wsrep-recover.log"
        subprocess.run(
            node._server_command("--wsrep-recover", f"--log-error={log}"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_preexec(),
            timeout=self._ready_timeout,
            check=False,
            **node._run_as(),
        )
        found = re.findall(r"WSREP: Recovered position: (\S+)", _read(log))
        return found[-1] if found else None


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
