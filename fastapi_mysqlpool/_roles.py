"""Role probes: what a server can serve (writes, reads, how stale) and how many connections it allows.

`probe_role` needs no driver: it takes an async callable that runs one statement and returns its rows as
mappings (column name to value), and the server's version string from the handshake. A primary costs one round
trip, a read-only host two (its replication status too):

- ``@@read_only`` / ``@@innodb_read_only``: a host with either set is a replica, one without a primary;
- on Galera (``wsrep_on``): ``wsrep_ready``, ``wsrep_local_state`` (4 = Synced) and ``wsrep_cluster_status``
  (``Primary``). These are read from ``information_schema``, which a node without quorum still answers (its
  tables refuse with 1047);
- on a replica, ``SHOW SLAVE STATUS`` (``SHOW REPLICA STATUS`` on MySQL 8.0.22 and later):
  ``Seconds_Behind_Master``, NULL (lag unknown) when the SQL thread is stopped. It needs the ``SLAVE MONITOR``
  (MariaDB 10.5 and later; ``REPLICA MONITOR`` is its alias) or ``REPLICATION CLIENT`` (MySQL) privilege;
  without it the record says so in `ServerRole.lag_error` instead of failing;
- ``@@max_connections``, and the session's ``@@max_user_connections``: the account's own limit when it has one,
  the server's otherwise (0: none).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["GaleraState", "Query", "ReplicationState", "ServerRole", "probe_role"]

#: Runs one statement and returns its rows as mappings from column name to value.
Query = Callable[[str], Awaitable[Sequence[Mapping[str, Any]]]]

_SYNCED = 4
_ACCESS_DENIED = 1227
_LIMITS = "@@global.max_connections AS max_connections, @@session.max_user_connections AS max_user_connections"
_READ_ONLY = "@@global.read_only AS read_only, @@global.innodb_read_only AS innodb_read_only"


def _from_schema(schema: str, table: str, name: str) -> str:
    return f"(SELECT VARIABLE_VALUE FROM {schema}.{table} WHERE VARIABLE_NAME = '{name}')"


# One SELECT for everything but the replication status. MariaDB keeps the wsrep variables in information_schema
# (a missing one is NULL there, never an error, so servers built without wsrep answer the same query).
_MARIADB_PROBE = ", ".join(
    [
        f"SELECT {_READ_ONLY}",
        _LIMITS,
        f"{_from_schema('information_schema', 'GLOBAL_VARIABLES', 'WSREP_ON')} AS wsrep_on",
        f"{_from_schema('information_schema', 'GLOBAL_STATUS', 'WSREP_READY')} AS wsrep_ready",
        f"{_from_schema('information_schema', 'GLOBAL_STATUS', 'WSREP_LOCAL_STATE')} AS wsrep_local_state",
        f"{_from_schema('information_schema', 'GLOBAL_STATUS', 'WSREP_CLUSTER_STATUS')} AS wsrep_cluster_status",
    ]
)
_MYSQL_PROBE = f"SELECT {_READ_ONLY}, {_LIMITS}"
_LAG_PRIVILEGE = {"mariadb": "SLAVE MONITOR (or REPLICA MONITOR)", "mysql": "REPLICATION CLIENT"}


@dataclass(frozen=True, slots=True)
class GaleraState:
    """A Galera node's standing in its cluster."""

    ready: bool  # wsrep_ready: the node accepts queries on tables
    local_state: int  # wsrep_local_state: 1 Joining, 2 Donor, 3 Joined, 4 Synced
    cluster_status: str  # wsrep_cluster_status: Primary, non-Primary or Disconnected

    @property
    def synced(self) -> bool:
        """Ready, Synced and in the primary component: the node can serve reads and writes."""
        return self.ready and self.local_state == _SYNCED and self.cluster_status == "Primary"


@dataclass(frozen=True, slots=True)
class ReplicationState:
    """A replica's replication threads and lag, from ``SHOW SLAVE STATUS``."""

    io_running: bool  # Slave_IO_Running is Yes (not No or Connecting)
    sql_running: bool  # Slave_SQL_Running is Yes
    seconds_behind: int | None  # Seconds_Behind_Master; None when the server does not know (NULL)


@dataclass(frozen=True, slots=True)
class ServerRole:
    """What `probe_role` found on one server."""

    role: Literal["primary", "replica"]
    read_only: bool
    innodb_read_only: bool
    galera: GaleraState | None  # None unless wsrep is on
    replication: ReplicationState | None  # a replica's, when readable; None on a primary
    lag_error: str | None  # why a replica's lag could not be read (a missing privilege, no replication)
    max_connections: int
    max_user_connections: int  # the account's effective limit; 0 means none

    @property
    def lag(self) -> int | None:
        """Seconds behind the primary; ``0`` on a primary, `None` on a replica whose lag is unknown."""
        if self.role == "primary":
            return 0
        return self.replication.seconds_behind if self.replication is not None else None

    @property
    def can_write(self) -> bool:
        """A primary that, on Galera, is a synced member of the primary component."""
        return self.role == "primary" and (self.galera is None or self.galera.synced)

    @property
    def can_read(self) -> bool:
        """Any host but a Galera node that is not synced. Lag is the caller's judgement (`lag`)."""
        return self.galera is None or self.galera.synced


def _flavor(server_version: str) -> Literal["mariadb", "mysql"]:
    return "mariadb" if "mariadb" in server_version.lower() else "mysql"


def _replica_status_statement(server_version: str) -> str:
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", server_version)
    version = tuple(int(part) for part in match.groups()) if match else (0, 0, 0)
    # MySQL renamed the statement in 8.0.22 and removed the old name in 8.4; MariaDB knows the old name everywhere.
    if _flavor(server_version) == "mysql" and version >= (8, 0, 22):
        return "SHOW REPLICA STATUS"
    return "SHOW SLAVE STATUS"


def _flag(value: Any) -> bool:
    # Variables come back as 0/1, "0"/"1" or "ON"/"OFF" depending on the driver and the table they come from.
    if isinstance(value, (bytes, bytearray)):
        value = value.decode()
    return str(value).upper() in ("1", "ON", "YES", "TRUE")


def _int(value: Any) -> int:
    return int(value.decode() if isinstance(value, (bytes, bytearray)) else value)


def _error_code(exc: BaseException) -> int | None:
    # Both PyMySQL-style drivers (aiomysql) and asyncmy raise errors whose first argument is the server's code.
    code = exc.args[0] if exc.args else None
    return code if isinstance(code, int) else None


async def probe_role(query: Query, server_version: str) -> ServerRole:
    """Read a server's role, Galera state, replica lag and connection limits, in one or two round trips.

    - ``query``: runs one statement on the server and returns its rows as mappings.
    - ``server_version``: the version string from the handshake (e.g. ``10.11.6-MariaDB``): it picks the
      statements, so that no round trip goes to asking.

    Errors from ``query`` propagate, except a missing privilege for the replication status, which becomes
    `ServerRole.lag_error`.
    """
    flavor = _flavor(server_version)
    (row,) = await query(_MARIADB_PROBE if flavor == "mariadb" else _MYSQL_PROBE)
    read_only, innodb_read_only = _flag(row["read_only"]), _flag(row["innodb_read_only"])
    galera = None
    if row.get("wsrep_on") is not None and _flag(row["wsrep_on"]):
        galera = GaleraState(
            ready=_flag(row["wsrep_ready"]),
            local_state=_int(row["wsrep_local_state"] or 0),
            cluster_status=str(row["wsrep_cluster_status"] or "Disconnected"),
        )
    role: Literal["primary", "replica"] = "replica" if read_only or innodb_read_only else "primary"
    replication, lag_error = None, None
    if role == "replica":
        replication, lag_error = await _replication(query, server_version)
    return ServerRole(
        role=role,
        read_only=read_only,
        innodb_read_only=innodb_read_only,
        galera=galera,
        replication=replication,
        lag_error=lag_error,
        max_connections=_int(row["max_connections"]),
        max_user_connections=_int(row["max_user_connections"]),
    )


async def _replication(query: Query, server_version: str) -> tuple[ReplicationState | None, str | None]:
    statement = _replica_status_statement(server_version)
    try:
        rows = await query(statement)
    except Exception as exc:
        if _error_code(exc) != _ACCESS_DENIED:
            raise
        privilege = _LAG_PRIVILEGE[_flavor(server_version)]
        return None, f"the account lacks the {privilege} privilege, so the replica's lag is unknown ({statement})"
    if not rows:
        return None, "read-only, but not replicating from any primary: its lag is unknown"
    # Several rows on a MySQL replica with several channels: it is as far behind as its furthest one.
    states = [_replication_state(status) for status in rows]
    lags = [state.seconds_behind for state in states]
    return (
        ReplicationState(
            io_running=all(state.io_running for state in states),
            sql_running=all(state.sql_running for state in states),
            seconds_behind=None if None in lags else max(lag for lag in lags if lag is not None),
        ),
        None,
    )


def _replication_state(status: Mapping[str, Any]) -> ReplicationState:
    def column(*names: str) -> Any:
        for name in names:
            if name in status:
                return status[name]
        return None

    behind = column("Seconds_Behind_Master", "Seconds_Behind_Source")
    return ReplicationState(
        io_running=_flag(column("Slave_IO_Running", "Replica_IO_Running")),
        sql_running=_flag(column("Slave_SQL_Running", "Replica_SQL_Running")),
        seconds_behind=None if behind is None else _int(behind),
    )
