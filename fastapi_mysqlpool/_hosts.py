"""Several servers behind one pool: the host list, each host's role and state, selection and re-checks.

A pool given one host with ``role=primary`` (the default) connects as it always did: there is nowhere else to
go, so nothing is probed but the first connection (for the server's connection limits, see `_workers.py`).
With several hosts, or another role, every new connection is probed (`probe_role`: one round trip on a
primary, two on a replica) and kept only when its host can serve the pool's role:

- ``primary``: a host that accepts writes (not read-only; on Galera, a synced member of the primary component).
  Hosts are tried in the order given, so every worker writes to the same Galera node while it is healthy,
  which spares the cluster certification conflicts between nodes.
- ``replica``: a read-only host whose lag is known and at most ``max_replica_lag`` seconds; the hosts that
  qualify take turns. When none does, a primary serves (a *fallback* connection) unless ``replica_fallback``
  is off. A fallback connection is retired as soon as a replica qualifies again.
- ``any``: every host that can serve reads, in turn.

A host that failed a connect, or whose connection failed with an error meaning "this host is no longer what you
think" (`is_wrong_host`), is re-checked before it is tried again, with a backoff that doubles up to
``backoff_max``. Between connects, the pool's maintenance probes every host each ``host_check_interval``
seconds on a short-lived connection of its own, so that a promotion, a replica catching up or a Galera node
losing quorum is noticed within seconds even while no connection is opened.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pymysql

from ._roles import ServerRole, probe_role
from ._seam import Driver, is_transient_connect_error, is_wrong_host
from ._workers import check_capacity

if TYPE_CHECKING:
    import aiomysql

    from ._config import PoolOptions
    from ._credentials import ConnectionOpener

__all__ = ["ROLES", "Host", "HostSet", "NoServingHost", "parse_hosts"]

logger = logging.getLogger("fastapi_mysqlpool")

ROLES = ("primary", "replica", "any")
Role = Literal["primary", "replica", "any"]
_FIRST_BACKOFF = 0.1


class NoServingHost(pymysql.err.OperationalError):  # type: ignore[misc]
    """No host of the pool can serve its role right now. A connect error (2003), so the pool retries it with
    backoff until the caller's deadline, and FastAPI answers 503."""


def parse_hosts(host: Any, port: Any = 3306) -> list[tuple[str, int]]:
    """``host`` as a list of ``(host, port)``: one name, ``"h1:3306,h2"``, or a list of pairs or ``"host:port"``."""
    default_port = 3306 if port is None else port
    if not isinstance(default_port, int) or isinstance(default_port, bool) or not 0 < default_port < 65536:
        raise ValueError(f"invalid port {port!r} (expected 1-65535)")
    items: Sequence[Any] = host.split(",") if isinstance(host, str) else host
    if isinstance(host, tuple) and len(host) == 2 and isinstance(host[1], int):
        items = [host]
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError(f"invalid host {host!r} (expected a name, or a list of (host, port) or 'host:port')")
    hosts: list[tuple[str, int]] = []
    for item in items:
        if isinstance(item, (tuple, list)) and len(item) == 2:
            name, number = item
        elif isinstance(item, str):
            name, sep, text = item.strip().rpartition(":") if item.count(":") == 1 else (item.strip(), "", "")
            if not sep:
                name, number = text or item.strip(), default_port
            else:
                try:
                    number = int(text)
                except ValueError:
                    raise ValueError(f"invalid port {text!r} for host {name!r} in {host!r}") from None
        else:
            raise ValueError(f"invalid host entry {item!r} (expected (host, port) or 'host:port')")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"invalid host entry {item!r}: empty host name")
        if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 65536:
            raise ValueError(f"invalid port {number!r} for host {name!r} (expected 1-65535)")
        hosts.append((name.strip(), number))
    return hosts


@dataclass(eq=False, slots=True)
class Host:
    """One server of the pool and what the pool last learnt about it."""

    host: str
    port: int
    role: ServerRole | None = None
    state: str = "unknown"  # unknown, up, down, lagging, not_synced, recheck
    error: str | None = None
    checked_at: float = 0.0
    retry_at: float = 0.0  # not tried again before this (monotonic)
    backoff: float = 0.0
    connections: int = 0
    # Counts the "re-check" marks (a wrong-host error, a read timeout): a probe begun before the latest one may
    # have seen the host as it was, and its answer is dropped.
    marks: int = 0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def snapshot(self) -> dict[str, Any]:
        role = self.role
        return {
            "host": self.address,
            "role": role.role if role is not None else None,
            "state": self.state,
            "lag": role.lag if role is not None else None,
            "galera": None if role is None or role.galera is None else role.galera.cluster_status,
            "connections": self.connections,
            "error": self.error,
        }


class HostSet:
    """The hosts of one pool, their roles, and which one the next connection goes to (module docstring)."""

    def __init__(self, name: str, addresses: Sequence[tuple[str, int]], options: PoolOptions, driver: Driver) -> None:
        if options.role not in ROLES:
            raise ValueError(f"invalid value for pool option 'role': {options.role!r} (expected one of {ROLES})")
        self._name = name
        self._options = options
        self._driver = driver
        self.hosts = [Host(host, port) for host, port in addresses]
        self.role: Role = options.role  # type: ignore[assignment]
        # Probing costs a round trip per connect; with one primary host there is no choice to make with it.
        self.routing = len(self.hosts) > 1 or self.role != "primary"
        self._of: weakref.WeakKeyDictionary[Any, tuple[Host, bool]] = weakref.WeakKeyDictionary()
        self._turn = 0
        self._probing: asyncio.Task[None] | None = None
        self._next_probe = 0.0
        self._warned_privilege = False
        self.limits: dict[str, Any] | None = None

    # ------------------------------------------------------------------ judging

    def _serves(self, role: ServerRole) -> bool:
        if self.role == "primary":
            return role.can_write
        if self.role == "any":
            return role.can_read
        lag = role.lag
        return role.role == "replica" and role.can_read and lag is not None and lag <= self._options.max_replica_lag

    def _fallback(self, role: ServerRole) -> bool:
        return self.role == "replica" and self._options.replica_fallback and role.can_write

    def _judge(self, host: Host, role: ServerRole, now: float) -> None:
        host.role, host.checked_at, host.error = role, now, None
        host.backoff = 0.0
        if role.galera is not None and not role.galera.synced:
            host.state = "not_synced"
        elif role.role == "replica" and (role.lag is None or role.lag > self._options.max_replica_lag):
            host.state = "lagging"
            host.error = role.lag_error
        else:
            host.state = "up"
        if role.lag_error and "privilege" in role.lag_error and self.role == "replica" and not self._warned_privilege:
            self._warned_privilege = True
            logger.warning(
                "pool %s: %s on %s; it never qualifies as a replica. GRANT SLAVE MONITOR ON *.* (MariaDB; "
                "REPLICATION CLIENT on MySQL) to the pool's account", self._name, role.lag_error, host.address,
                extra={"pool": self._name, "event": "replica_privilege", "host": host.address},
            )  # fmt: skip

    def _failed(self, host: Host, error: BaseException, now: float) -> None:
        host.state, host.error = "down", _short(error)
        host.backoff = min(self._options.backoff_max, max(_FIRST_BACKOFF, host.backoff * 2))
        host.retry_at = now + host.backoff

    @property
    def serving(self) -> bool:
        """False once the pool knows that no host can serve its role (nor fall back): every host is down, or was
        probed and does not serve. A host not learnt yet might serve, so it counts as serving."""
        for host in self.hosts:
            if host.state == "down":
                continue
            if host.role is None or self._serves(host.role) or self._fallback(host.role):
                return True
        return False

    async def verify(self, conn: aiomysql.Connection) -> str | None:
        """Probe the host of ``conn`` on it now (one or two round trips); None when the host still serves what
        ``conn`` was handed out for, else why not. The host's record is updated either way, so that the release
        retires ``conn`` and new connections go elsewhere; the other hosts are probed at the next tick."""
        found = self._of.get(conn)
        role = await probe_role(_query_on(self._driver, conn), self._driver.server_version(conn))
        if found is None or not self.routing:
            return None
        host, fallback = found
        self._judge(host, role, time.monotonic())
        if self._serves(role) or (fallback and self._fallback(role)):
            return None
        self._next_probe = 0.0
        return f"{host.address} can no longer serve role {self.role!r} ({host.state}, {role.role})"

    def candidates(self, now: float) -> list[tuple[Host, bool]]:
        """The hosts to try, best first, each with whether it would only be a fallback."""
        good, unknown, recheck, rest, fallback = [], [], [], [], []
        for host in self.hosts:
            if host.state == "down" and now < host.retry_at:
                continue
            role = host.role
            if host.state == "recheck":
                # It just failed as if it changed role, left its cluster or stopped answering: the others first.
                recheck.append(host)
            elif role is None or host.state == "down":
                unknown.append(host)
            elif self._serves(role):
                good.append(host)
            elif self._fallback(role):
                fallback.append(host)
            else:
                rest.append(host)
        if self.role == "primary":
            first = [*good, *unknown, *recheck]
        else:
            # Hosts that take turns: every unknown one is learnt first, then the qualifying ones rotate.
            if good:
                self._turn = (self._turn + 1) % len(good)
                good = good[self._turn :] + good[: self._turn]
            first = [*unknown, *good, *recheck]
        # Hosts known not to serve are tried last: a promotion or a replica catching up is found by trying them.
        ordered = [(h, False) for h in (*first, *rest)]
        return ordered + [(h, True) for h in fallback]

    # ------------------------------------------------------------------ connecting

    async def open(
        self,
        opener: ConnectionOpener,
        statement_time: float,
        timeout: float,
        opened: list[Any],
        deadline: float = float("inf"),
    ) -> aiomysql.Connection:
        """A connection to a host that serves the pool's role; each host's attempt bounded by ``timeout``, and
        every wait by ``deadline`` (`time.monotonic`) too: create_pool's ``open_timeout`` holds whatever the
        ``connect_timeout``, shared among the hosts left to try."""

        def bound() -> float:
            return min(timeout, deadline - time.monotonic())

        if not self.routing:
            conn = await asyncio.wait_for(opener.open(statement_time, opened), bound())
            conn.read_timeout = self._options.read_timeout
            if self.limits is None:
                await self._first_probe(conn, bound())
            host = self.hosts[0]
            host.state = "up"
            self._track(conn, host, False)
            return conn
        now = time.monotonic()
        last: BaseException | None = None
        # A primary found while looking for a replica is kept aside: it serves only if no replica does.
        spare: tuple[aiomysql.Connection, Host, ServerRole] | None = None
        candidates = self.candidates(now)
        try:
            for tried, (host, _) in enumerate(candidates):
                # Under a deadline (create_pool's open_timeout) each host left to try gets an even share of the
                # time left, so that one that never answers cannot use up the time of the hosts after it; and a
                # host is never judged on an attempt it had no time for.
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    conn, role = await asyncio.wait_for(
                        self._probe_connect(opener, statement_time, host, opened),
                        min(timeout, left / (len(candidates) - tried)),
                    )
                except Exception as exc:
                    if not _connect_failure(exc):
                        raise
                    self._failed(host, exc, time.monotonic())
                    last = exc
                    continue
                self._judge(host, role, time.monotonic())
                self._record_limits(role)
                if self._serves(role):
                    # The session settings belong to the connect, and to its bound.
                    return await asyncio.wait_for(self._hand_out(conn, host, role, False), bound())
                if spare is None and self._fallback(role):
                    spare = (conn, host, role)
                    continue
                await self._driver.quit(conn)
            if spare is not None:
                conn, host, role = spare
                spare = None
                return await asyncio.wait_for(self._hand_out(conn, host, role, True), bound())
        finally:
            if spare is not None:
                await self._driver.quit(spare[0])
        raise NoServingHost(
            2003, f"pool {self._name!r}: no host can serve role {self.role!r} ({self.describe()})"
        ) from last

    async def _hand_out(
        self, conn: aiomysql.Connection, host: Host, role: ServerRole, fallback: bool
    ) -> aiomysql.Connection:
        try:
            await self._configure(conn, role)
        except BaseException:
            _discard(self._driver.abort(conn))
            raise
        self._track(conn, host, fallback)
        return conn

    def _any_serves(self) -> bool:
        return any(h.role is not None and h.state != "down" and self._serves(h.role) for h in self.hosts)

    async def _probe_connect(
        self, opener: ConnectionOpener, statement_time: float, host: Host, opened: list[Any]
    ) -> tuple[aiomysql.Connection, ServerRole]:
        conn = await opener.open(statement_time, opened, (host.host, host.port))
        conn.read_timeout = self._options.read_timeout
        try:
            return conn, await probe_role(_query_on(self._driver, conn), self._driver.server_version(conn))
        except BaseException:
            _discard(self._driver.abort(conn))
            raise

    async def _first_probe(self, conn: aiomysql.Connection, timeout: float) -> None:
        # Only for the limits of a single primary host: a failure here must not fail the connect.
        try:
            role = await asyncio.wait_for(
                probe_role(_query_on(self._driver, conn), self._driver.server_version(conn)), timeout
            )
        except Exception as exc:
            logger.debug("pool %s: could not read the server's connection limits: %s", self._name, _short(exc))
            self.limits = {}
            return
        self.hosts[0].role = role
        self._record_limits(role)

    async def _configure(self, conn: aiomysql.Connection, role: ServerRole) -> None:
        if self._options.causal_reads and role.galera is not None:
            # A read on this node waits until the node has applied every write the cluster committed before it.
            async with await self._driver.cursor(conn, dict_rows=False) as cursor:
                await cursor.execute("SET SESSION wsrep_sync_wait = 1")
            conn.causal_reads = True  # what the full reset on release sets again

    def _record_limits(self, role: ServerRole) -> None:
        if self.limits is None:
            self.limits = check_capacity(self._name, self._options, role.max_connections, role.max_user_connections)

    def _track(self, conn: Any, host: Host, fallback: bool) -> None:
        self._of[conn] = (host, fallback)
        host.connections += 1

    # ------------------------------------------------------------------ the pool's call sites

    def closed(self, conn: Any, wrong_host: bool) -> None:
        """A connection of the pool closed; ``wrong_host``: it failed as if its host changed role or left."""
        found = self._of.pop(conn, None)
        if found is None:
            return
        host = found[0]
        host.connections -= 1
        if wrong_host and self.routing:
            host.state, host.role = "recheck", None
            host.marks += 1
            host.error = "re-check: a connection failed as if the host's role or membership changed"
            self._next_probe = 0.0  # probe every host now, not at the next interval

    def keep(self, conn: Any) -> bool:
        """Whether ``conn`` may be reused: its host still serves, and it is no fallback while a better host does."""
        found = self._of.get(conn)
        if found is None or not self.routing:
            return True
        host, fallback = found
        role = host.role
        if role is None or host.state == "down":
            return False
        if fallback:
            return self._fallback(role) and not self._any_serves()
        return self._serves(role)

    def due(self, now: float) -> bool:
        """Whether the maintenance tick should start a probe of every host now."""
        if not self.routing or (self._probing is not None and not self._probing.done()):
            return False
        return now >= self._next_probe

    async def probe_all(self, opener: ConnectionOpener, on_change: Callable[[], None]) -> None:
        """Probe every host on a short-lived connection of its own, concurrently, then tell the pool."""
        self._next_probe = time.monotonic() + self._options.host_check_interval
        timeout = self._options.connect_timeout

        async def one(host: Host) -> None:
            marks = host.marks
            try:
                conn, role = await asyncio.wait_for(self._probe_connect(opener, 0.0, host, []), timeout)
            except Exception as exc:
                if host.marks == marks:
                    self._failed(host, exc, time.monotonic())
                return
            if host.marks == marks:  # else a newer mark says its answer may be out of date: probed again soon
                self._judge(host, role, time.monotonic())
                self._record_limits(role)
            await self._driver.quit(conn)

        try:
            await asyncio.gather(*(one(host) for host in self.hosts))
        except BaseException:
            self._next_probe = 0.0  # cut short (a health check's bound): due again at the next tick
            raise
        on_change()

    def start_probe(self, spawn: Callable[..., asyncio.Task[Any]], opener: ConnectionOpener, on_change: Any) -> None:
        self._probing = spawn(self.probe_all(opener, on_change), "mysqlpool-probe")

    def describe(self) -> str:
        return ", ".join(f"{h.address} {h.role.role if h.role else '?'} {h.state}" for h in self.hosts)

    def snapshot(self) -> list[dict[str, Any]]:
        return [host.snapshot() for host in self.hosts]


def _discard(closing: Any) -> None:
    # A driver's abort may hand back a coroutine that waits for the socket; nobody waits for it here.
    if closing is not None:
        closing.close()


def _query_on(driver: Driver, conn: aiomysql.Connection) -> Callable[[str], Any]:
    async def query(sql: str) -> Sequence[Mapping[str, Any]]:
        async with await driver.cursor(conn, dict_rows=False) as cursor:
            await cursor.execute(sql)
            names = [column[0] for column in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in await cursor.fetchall()]

    return query


def _connect_failure(exc: BaseException) -> bool:
    # What says "this host, not the pool's configuration": network errors, client-side and server-state codes.
    if isinstance(exc, (OSError, asyncio.TimeoutError)):
        return True
    return is_transient_connect_error(exc) or is_wrong_host(exc)


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
