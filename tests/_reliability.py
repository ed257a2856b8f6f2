"""Shared machinery of the reliability suite: a load generator that classifies every outcome, and a figures recorder.

Every fault scenario runs workers against a pool while a fault happens, keeps one `Op` per request (when it started,
when it ended, how it ended), and asserts on that record: which errors happened, when, and whether anything hung.
Each scenario also records a measured figure with `record_figure`; the figures are printed in pytest's terminal
summary and merged into ``.pytest_cache/d/reliability/figures.json``, from which docs/reliability.md is written.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pymysql
import pytest

import fastapi_mysqlpool as mp
from tests import _drivers

__all__ = [
    "ACCOUNTS",
    "CLEAN_ERRORS",
    "FAST",
    "QUERY_TIMEOUT",
    "Bank",
    "KillCount",
    "Load",
    "Op",
    "QueryTimeout",
    "ServiceUnavailable",
    "UnexpectedStatus",
    "assert_every_connection_usable",
    "assert_pool_accounted",
    "classify",
    "failures_after",
    "kill_connections",
    "percentile",
    "query_once",
    "record_figure",
    "recovery_seconds",
    "reliability_app",
    "unclean",
    "wait_until",
]

#: Short bounds for fault tests: every wait in a scenario ends within seconds, so the suite stays fast.
FAST: dict[str, Any] = {
    "acquire_timeout": 2.0,
    "connect_timeout": 1.0,
    "open_timeout": 5.0,
    "ping_timeout": 0.5,
    "backoff_max": 1.0,
    "close_timeout": 2.0,
}

#: Errors a caller may see while the database is unavailable. Anything else is a defect.
CLEAN_ERRORS = frozenset({"PoolTimeout", "TooManyWaiters", "OperationalError", "QueryTimeout", "ServiceUnavailable"})
#: The bound the HTTP app puts on its own queries, beyond the sleep a request asks for.
QUERY_TIMEOUT = 1.0


class QueryTimeout(Exception):
    """The caller's own bound on a query expired (aiomysql has no per-query timeout)."""


class ServiceUnavailable(Exception):
    """The app answered 503: the clean refusal over HTTP."""


class UnexpectedStatus(Exception):
    """The app answered neither 2xx nor 503."""


@dataclass(frozen=True, slots=True)
class Op:
    """One request made by a load worker."""

    started: float
    ended: float
    outcome: str  # "ok", "hang", or the error's class name
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def classify(exc: BaseException) -> str:
    """The class name that `CLEAN_ERRORS` speaks of, with a driver's subclasses folded onto the DB-API classes."""
    for kind in (mp.PoolTimeout, mp.TooManyWaiters, mp.PoolClosed, QueryTimeout, ServiceUnavailable):
        if isinstance(exc, kind):
            return kind.__name__
    for name in ("InternalError", "OperationalError", "InterfaceError"):
        if isinstance(exc, _drivers.error_classes(name)):
            return name
    return type(exc).__name__


async def query_once(pool: mp.Pool, sql: str = "SELECT 1", *, query_timeout: float = 1.0) -> list[Any]:
    """Acquire, run ``sql`` bounded by ``query_timeout``, release.

    The bound is the caller's job: a query on a connection whose peer went silent never returns on its own. On
    expiry the driver closes the connection (or the pool's connection marks itself broken), so the pool discards it
    on release.
    """
    async with pool.acquire() as conn, conn.cursor() as cur:
        try:
            await asyncio.wait_for(cur.execute(sql), query_timeout)
        except asyncio.TimeoutError:
            raise QueryTimeout(f"query exceeded {query_timeout:g} s") from None
        return list(await cur.fetchall())


@dataclass
class Load:
    """``workers`` tasks calling ``request(target)`` in a loop until `stop`, each call bounded by ``deadline``.

    A call still running at its deadline is recorded as a ``"hang"``: the promise under test is that the pool's own
    bounds (acquire timeout, connect timeout, the caller's query bound) end every call before that.
    """

    target: Any  # a pool, or an HTTP client
    workers: int
    deadline: float
    request: Callable[[Any], Awaitable[Any]] = query_once
    pause: float = 0.01
    ops: list[Op] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> Load:
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self.workers)]
        return self

    async def stop(self) -> list[Op]:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return self.ops

    async def _worker(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                await asyncio.wait_for(self.request(self.target), self.deadline)
            except mp.PoolTimeout as exc:
                # PoolTimeout is a TimeoutError too: it must not be mistaken for the deadline below.
                self.ops.append(Op(started, time.monotonic(), classify(exc), str(exc)))
            except asyncio.TimeoutError:
                self.ops.append(Op(started, time.monotonic(), "hang"))
            except Exception as exc:
                self.ops.append(Op(started, time.monotonic(), classify(exc), str(exc)))
            else:
                self.ops.append(Op(started, time.monotonic(), "ok"))
            # Jitter keeps the workers from marching in lock step.
            await asyncio.sleep(self.pause * random.uniform(0.5, 1.5))


def unclean(ops: Iterable[Op]) -> list[Op]:
    """Ops that hung or failed with an error outside `CLEAN_ERRORS`."""
    return [op for op in ops if not op.ok and op.outcome not in CLEAN_ERRORS]


def recovery_seconds(ops: Iterable[Op], ready: float) -> float:
    """Seconds from ``ready`` until the first request that started after it succeeded."""
    ends = [op.ended for op in ops if op.ok and op.started >= ready]
    if not ends:
        raise AssertionError("no request succeeded after the fault ended")
    return min(ends) - ready


def failures_after(ops: Iterable[Op], moment: float) -> list[Op]:
    return [op for op in ops if not op.ok and op.started >= moment]


def percentile(values: Iterable[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until true; fail the test naming ``what`` after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.01)


def assert_pool_accounted(pool: mp.Pool) -> None:
    """Nothing lost: every connection is either idle or being opened; none is in use, no waiter is left behind."""
    stats = pool.stats()
    assert stats["in_use"] == 0, stats
    assert stats["waiting"] == 0, stats
    assert stats["size"] == stats["free"] + stats["opening"], stats
    assert stats["size"] <= stats["maxsize"], stats


async def assert_every_connection_usable(pool: mp.Pool) -> None:
    """Check out every connection at once: each answers, and none carries an open transaction or unread result."""
    conns: list[Any] = []
    try:
        for _ in range(pool.maxsize):
            conns.append(await pool.acquire())
        for conn in conns:
            async with conn.cursor() as cur:
                await asyncio.wait_for(cur.execute("SELECT @@in_transaction, 42"), 5)
                assert await cur.fetchall() == ((0, 42),)
    finally:
        for conn in conns:
            await pool.release(conn)


# --------------------------------------------------------------------------- money transfers

ACCOUNTS = 10
OPENING_BALANCE = 1_000


class Bank:
    """Transfers between accounts; each also writes its id to a ledger, in the same transaction.

    The books balance when the total is unchanged and every account equals its opening balance plus what the
    ledger says came in, minus what went out: a transfer is all there or not there at all.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.committed: set[int] = set()
        self.failed_before_commit: set[int] = set()
        self.ambiguous: set[int] = set()  # the commit was sent and its answer lost: either outcome is legitimate
        self.errors: dict[str, int] = {}

    async def open(self, pool: mp.Pool) -> None:
        p = self.prefix
        await query_once(pool, f"CREATE TABLE {p}_accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL)")
        await query_once(pool, f"CREATE TABLE {p}_ledger (transfer INT PRIMARY KEY, src INT, dst INT, amount INT)")
        rows = ", ".join(f"({i}, {OPENING_BALANCE})" for i in range(ACCOUNTS))
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(f"INSERT INTO {p}_accounts VALUES {rows}")
            await conn.commit()

    @staticmethod
    async def apply(conn: Any, prefix: str, transfer: int, src: int, dst: int, amount: int) -> None:
        """The transfer's statements, inside the caller's transaction."""
        async with conn.cursor() as cur:
            # Lock the accounts in id order, so that concurrent transfers never deadlock.
            for account, delta in sorted([(src, -amount), (dst, amount)]):
                await cur.execute(
                    f"UPDATE {prefix}_accounts SET balance = balance + %s WHERE id = %s", (delta, account)
                )
            await cur.execute(f"INSERT INTO {prefix}_ledger VALUES (%s, %s, %s, %s)", (transfer, src, dst, amount))

    def failed(self, transfer: int, exc: BaseException | str, *, commit_sent: bool) -> None:
        kind = exc if isinstance(exc, str) else classify(exc)
        self.errors[kind] = self.errors.get(kind, 0) + 1
        (self.ambiguous if commit_sent else self.failed_before_commit).add(transfer)

    async def transfer(self, pool: mp.Pool, transfer: int, rng: random.Random) -> None:
        """One transfer straight on the pool, its outcome recorded."""
        src, dst = rng.sample(range(ACCOUNTS), 2)
        commit_sent = False
        try:
            async with pool.acquire() as conn:
                await conn.begin()
                await self.apply(conn, self.prefix, transfer, src, dst, rng.randint(1, 50))
                commit_sent = True
                await conn.commit()
        except Exception as exc:
            self.failed(transfer, exc, commit_sent=commit_sent)
        else:
            self.committed.add(transfer)

    def assert_books_balance(self, admin: pymysql.connections.Connection) -> None:
        with admin.cursor() as cur:
            cur.execute(f"SELECT id, balance FROM app.{self.prefix}_accounts")
            balances = dict(cur.fetchall())
            cur.execute(f"SELECT transfer, src, dst, amount FROM app.{self.prefix}_ledger")
            ledger = cur.fetchall()
        in_ledger = {row[0] for row in ledger}
        assert len(balances) == ACCOUNTS
        assert sum(balances.values()) == ACCOUNTS * OPENING_BALANCE
        assert self.committed <= in_ledger, self.committed - in_ledger
        assert not (self.failed_before_commit & in_ledger), self.failed_before_commit & in_ledger
        expected = dict.fromkeys(range(ACCOUNTS), OPENING_BALANCE)
        for _, src, dst, amount in ledger:
            expected[src] -= amount
            expected[dst] += amount
        assert balances == expected


class KillCount:
    """How many connections `kill_connections` has killed so far, for a workload that runs until enough have
    been: how many kills fit into a fixed workload depends on how fast the machine and the driver are."""

    def __init__(self) -> None:
        self.value = 0


async def kill_connections(
    admin: pymysql.connections.Connection,
    user: str,
    stop: asyncio.Event,
    seed: int,
    killed: KillCount | None = None,
) -> int:
    """Until ``stop``, KILL one of ``user``'s connections every few milliseconds (counting them in ``killed``);
    return how many were killed."""
    rng = random.Random(seed)
    kills = 0

    def kill_one() -> bool:
        with admin.cursor() as cur:
            cur.execute("SELECT id FROM information_schema.processlist WHERE user = %s", (user,))
            ids = [row[0] for row in cur.fetchall()]
            if not ids:
                return False
            try:
                cur.execute(f"KILL {rng.choice(ids)}")
            except pymysql.err.OperationalError:  # 1094: it went away meanwhile
                return False
            return True

    while not stop.is_set():
        await asyncio.sleep(rng.uniform(0.005, 0.04))
        if await asyncio.to_thread(kill_one):
            kills += 1
            if killed is not None:
                killed.value += 1
    return kills


# --------------------------------------------------------------------------- figures


class _FiguresPlugin:
    """Collects this run's figures and prints them at the end of the terminal summary."""

    name = "reliability-figures"

    def __init__(self, config: pytest.Config) -> None:
        self.figures: dict[str, dict[str, Any]] = {}
        # The cache is absent under ``-p no:cacheprovider``; then the terminal summary is the only report.
        cache = getattr(config, "cache", None)
        self.path = cache.mkdir("reliability") / "figures.json" if cache is not None else None

    def record(self, key: str, entry: dict[str, Any]) -> None:
        self.figures[key] = entry
        if self.path is None:
            return
        try:
            stored: dict[str, Any] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            stored = {}
        stored[key] = entry
        self.path.write_text(json.dumps(stored, indent=2, sort_keys=True) + "\n")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.figures:
            return
        terminalreporter.section("reliability figures")
        for key, entry in sorted(self.figures.items()):
            terminalreporter.write_line(f"{key:<48} {entry['value']:>12g} {entry['unit']}")
        if self.path is not None:
            terminalreporter.write_line(f"(also in {self.path})")


def record_figure(request: pytest.FixtureRequest, scenario: str, name: str, value: float, unit: str) -> None:
    """Record a measured figure of ``scenario``: shown in the terminal summary and kept in the pytest cache."""
    config = request.config
    plugin = config.pluginmanager.get_plugin(_FiguresPlugin.name)
    if plugin is None:
        plugin = _FiguresPlugin(config)
        config.pluginmanager.register(plugin, _FiguresPlugin.name)
    # aiomysql's figures keep their names (docs/reliability.md quotes them); the other drivers' say which they are.
    driver = _drivers.current()
    key = f"{scenario}.{name}" if driver == "aiomysql" else f"{scenario}[{driver}].{name}"
    plugin.record(
        key,
        {"value": round(float(value), 4), "unit": unit, "test": request.node.nodeid, "at": time.strftime("%F %T")},
    )


# --------------------------------------------------------------------------- the HTTP app under test


def reliability_app(dsn: str | None = None, bank: str = "", **pool_options: Any) -> Any:
    """The FastAPI app of the HTTP scenarios: a query endpoint, money transfers between ``bank``'s tables, health.

    ``uvicorn --factory tests._reliability:reliability_app`` serves it with ``DATABASE_URL`` and ``MYSQLPOOL_*``
    from the environment.
    The package answers 503 when no connection can be had; a query that loses its connection mid-way, or exceeds
    the app's own bound, is the app's to map, and this app maps it to 503 as the docs recommend.
    """
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    app = FastAPI(lifespan=mp.mysql_lifespan(dsn, **pool_options))
    app.include_router(mp.pool_router)

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"{type(exc).__name__}"}, status_code=503, headers={"Retry-After": "1"})

    for error in (QueryTimeout, *_drivers.error_classes("OperationalError"), *_drivers.error_classes("InterfaceError")):
        app.add_exception_handler(error, unavailable)

    @app.get("/sleep")
    async def sleep(cursor: mp.CursorDep, seconds: float = 0.01) -> dict[str, int]:
        try:
            await asyncio.wait_for(cursor.execute("SELECT SLEEP(%s)", (seconds,)), QUERY_TIMEOUT + seconds)
        except asyncio.TimeoutError:
            raise QueryTimeout("query exceeded its bound") from None
        return {"slept": 1}

    @app.post("/transfer")
    async def transfer(conn: mp.TransactionDep, transfer: int, src: int, dst: int, amount: int) -> dict[str, int]:
        await Bank.apply(conn, bank, transfer, src, dst, amount)
        return {"transfer": transfer}

    return app
