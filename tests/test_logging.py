"""Logs of the pool: lifecycle events with structured fields, quiet in the steady state, leak and slow-acquire
warnings, and never a password."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pymysql
import pytest

import fastapi_mysqlpool as mp
from tests._fastapi_support import closed_port
from tests._uvicorn import ROOT, free_port
from tests.conftest import PoolFactory

LOGGER = "fastapi_mysqlpool"


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Callable[..., list[logging.LogRecord]]:
    """``logs(event="leak")``: the pool's records so far, optionally only those of one event."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)

    def records(event: str | None = None) -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == LOGGER and (event is None or getattr(r, "event", None) == event)]

    return records


async def eventually(predicate: Callable[[], bool], message: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, message
        await asyncio.sleep(0.01)


async def test_open_and_close_are_logged_once_at_info_with_structured_fields(
    make_pool: PoolFactory, logs: Callable[..., list[logging.LogRecord]]
) -> None:
    pool = await make_pool(name="logged", minsize=2)
    (opened,) = logs("open")
    assert opened.levelno == logging.INFO
    assert (opened.pool, opened.size) == ("logged", 2)  # type: ignore[attr-defined]
    pool.close()
    await pool.wait_closed()
    (closed,) = logs("close")
    assert closed.levelno == logging.INFO
    assert closed.pool == "logged"  # type: ignore[attr-defined]


async def test_the_steady_state_logs_nothing_at_info(
    make_pool: PoolFactory, logs: Callable[..., list[logging.LogRecord]]
) -> None:
    pool = await make_pool(minsize=2, maxsize=4, slow_acquire=1.0, leak_timeout=5.0)
    opened = len(logs())

    async def request(i: int) -> None:
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute("SELECT %s", (i,))
            if i % 3 == 0:
                await conn.begin()  # left open: rolled back on release
                await cur.execute("SELECT 1")
            if i % 5 == 0:
                with pytest.raises(pymysql.err.ProgrammingError):
                    await cur.execute("SELECT * FROM no_such_table")

    for _ in range(5):
        await asyncio.gather(*(request(i) for i in range(20)))
    chatty = [r for r in logs()[opened:] if r.levelno >= logging.INFO]
    assert chatty == []


async def test_a_connect_failure_is_a_warning_with_the_error_and_never_the_password(
    make_pool: PoolFactory, mysql_dsn: str, logs: Callable[..., list[logging.LogRecord]]
) -> None:
    secret = "Wr0ng-s3cret-pw"
    parsed = mp.parse_dsn(mysql_dsn).connect_kwargs
    dsn = f"mysql://{parsed['user']}:{secret}@{parsed['host']}:{parsed['port']}/{parsed['db']}"
    pool = await make_pool(dsn, minsize=1, wait_open=False, backoff_max=0.05)
    await eventually(lambda: bool(logs("connect_failed")), "the connect failure was not logged")
    failed = logs("connect_failed")[0]
    assert failed.levelno == logging.WARNING
    assert "Access denied" in failed.error  # type: ignore[attr-defined]
    assert failed.pool == pool.name  # type: ignore[attr-defined]
    for record in logs():
        assert secret not in record.getMessage()
        assert all(secret not in str(value) for value in vars(record).values())


async def test_a_connect_failure_says_when_the_next_attempt_comes(
    make_pool: PoolFactory, mysql_dsn: str, logs: Callable[..., list[logging.LogRecord]]
) -> None:
    wrong = mysql_dsn.replace("://", "://nobody_here", 1)
    await make_pool(wrong, minsize=1, wait_open=False, backoff_max=0.05)
    await eventually(lambda: bool(logs("connect_failed")), "the connect failure was not logged")
    retry_in = logs("connect_failed")[0].retry_in_seconds  # type: ignore[attr-defined]
    assert 0 < retry_in <= 0.05


async def test_a_discard_is_logged_with_its_reason(
    make_pool: PoolFactory, logs: Callable[..., list[logging.LogRecord]]
) -> None:
    pool = await make_pool()
    conn = await pool.acquire()
    await pool.release(conn, discard=True)
    (discard,) = logs("discard")
    assert discard.levelno == logging.INFO
    assert discard.reason == "broken"  # type: ignore[attr-defined]


async def test_a_recycled_connection_is_logged_at_debug(
    make_pool: PoolFactory, logs: Callable[..., list[logging.LogRecord]]
) -> None:
    pool = await make_pool(minsize=1, max_lifetime=0.2)
    await eventually(lambda: pool._stats.closed_total["lifetime"] > 0, "no connection reached its lifetime")
    (recycle, *_) = logs("recycle")
    assert recycle.levelno == logging.DEBUG


async def test_exhaustion_logs_a_timeout_warning_with_the_queue(
    make_pool: PoolFactory, logs: Callable[..., list[logging.LogRecord]]
) -> None:
    pool = await make_pool(minsize=1, maxsize=1, slow_acquire=0)
    async with pool.acquire():
        with pytest.raises(mp.PoolTimeout):
            await pool.acquire(timeout=0.05)
    (timeout,) = logs("timeout")
    assert timeout.levelno == logging.WARNING
    # The queue as it was when the acquire timed out, that acquire included.
    assert (timeout.in_use, timeout.waiting) == (1, 1)  # type: ignore[attr-defined]


async def acquire_and_forget(pool: mp.Pool) -> object:
    """The application code a leak warning must point at."""
    return await pool.acquire()


async def hold_too_long(pool: mp.Pool, seconds: float) -> None:
    """The same, through ``async with`` (the pool's fast path)."""
    async with pool.acquire():
        await asyncio.sleep(seconds)


async def test_a_leak_warns_with_the_acquirers_stack_then_logs_the_held_time(
    make_pool: PoolFactory, logs: Callable[..., list[logging.LogRecord]]
) -> None:
    pool = await make_pool(leak_timeout=0.1)
    conn = await acquire_and_forget(pool)
    await eventually(lambda: bool(logs("leak")), "no leak warning")
    (leak,) = logs("leak")
    assert leak.levelno == logging.WARNING
    where = "in test_a_leak_warns_with_the_acquirers_stack_then_logs_the_held_time"
    assert where in leak.stack  # type: ignore[attr-defined]
    assert where in leak.getMessage()
    assert logs("leak_returned") == []
    await asyncio.sleep(0.05)
    await pool.release(conn)
    (returned,) = logs("leak_returned")
    assert returned.levelno == logging.WARNING
    assert returned.held_seconds >= 0.15  # type: ignore[attr-defined]


async def test_a_leak_stack_ends_at_the_line_that_awaited_acquire(
    make_pool: PoolFactory, logs: Callable[..., list[logging.LogRecord]]
) -> None:
    pool = await make_pool(leak_timeout=0.05)
    conn = await acquire_and_forget(pool)
    await eventually(lambda: bool(logs("leak")), "no leak warning")
    await pool.release(conn)
    stack: str = logs("leak")[0].stack  # type: ignore[attr-defined]
    assert stack.rstrip().endswith("return await pool.acquire()")


async def test_a_leak_inside_async_with_points_at_the_with_statement(
    make_pool: PoolFactory, logs: Callable[..., list[logging.LogRecord]]
) -> None:
    pool = await make_pool(leak_timeout=0.05)
    async with pool.acquire():
        pass  # now idle and fresh: the next `async with` takes the fast path
    await hold_too_long(pool, 0.1)
    (leak,) = logs("leak")
    assert leak.stack.rstrip().endswith("async with pool.acquire():")  # type: ignore[attr-defined]
    assert [r.levelno for r in logs("leak_returned")] == [logging.WARNING]


async def test_a_connection_returned_in_time_is_no_leak_and_no_stack_is_kept_when_off(
    make_pool: PoolFactory, logs: Callable[..., list[logging.LogRecord]]
) -> None:
    watched = await make_pool(leak_timeout=0.2)
    async with watched.acquire():
        pass
    await asyncio.sleep(0.3)
    assert logs("leak") == []
    unwatched = await make_pool(leak_timeout=0)
    async with unwatched.acquire() as conn:
        # Capturing a stack costs microseconds per acquire: only pay for it when asked to.
        assert unwatched._in_use[conn].leak_stack is None


async def test_a_slow_acquire_warns_above_its_threshold_at_most_once_a_second(
    make_pool: PoolFactory, logs: Callable[..., list[logging.LogRecord]]
) -> None:
    pool = await make_pool(minsize=1, maxsize=1, slow_acquire=0.05)
    for _ in range(3):
        held = await pool.acquire()
        waiter = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0.08)
        await pool.release(held)
        await pool.release(await waiter)
    async with pool.acquire():  # immediate: under the threshold
        pass
    (slow,) = logs("slow_acquire")
    assert slow.levelno == logging.WARNING
    assert slow.wait_seconds >= 0.08  # type: ignore[attr-defined]


async def test_connections_still_in_use_at_shutdown_are_terminated_with_a_warning(
    make_pool: PoolFactory, logs: Callable[..., list[logging.LogRecord]]
) -> None:
    pool = await make_pool(close_timeout=0.05)
    await pool.acquire()
    pool.close()
    await pool.wait_closed()
    (terminate,) = logs("terminate")
    assert terminate.levelno == logging.WARNING
    assert terminate.in_use == 1  # type: ignore[attr-defined]


_APP = """
from fastapi import FastAPI

import fastapi_mysqlpool as mp

dsn = "mysql://app:Secret-pw@127.0.0.1:{port}/app"
app = FastAPI(lifespan=mp.mysql_lifespan(dsn, wait_open=False, backoff_max=0.05))
"""
_TIMESTAMPED = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING fastapi_mysqlpool: pool 127\.0\.0\.1:\d+/app: "
)


def _connect_failures(tmp_path: Path, argv: list[str], script: str = _APP) -> list[str]:
    """The "connect failed" lines of a uvicorn (or script) run of an app whose database refuses connections."""
    (tmp_path / "app.py").write_text(script.format(port=closed_port()), encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, *argv],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while len([line for line in lines if "connect failed" in line]) < 3:
            assert time.monotonic() < deadline, "no connect failure logged within 60 s:\n" + "".join(lines)
            line = proc.stdout.readline()
            assert line, "the process ended early:\n" + "".join(lines)
            lines.append(line)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert not any("Secret-pw" in line for line in lines)
    return [line.rstrip("\n") for line in lines if "connect failed" in line]


def test_under_uvicorns_default_logging_the_pools_lines_have_time_and_level(tmp_path: Path) -> None:
    port = free_port()
    failures = _connect_failures(tmp_path, ["-m", "uvicorn", "app:app", "--port", str(port)])
    assert all(_TIMESTAMPED.match(line) for line in failures), failures


def test_once_the_application_configures_logging_its_format_applies_and_no_line_is_doubled(tmp_path: Path) -> None:
    script = (
        _APP
        + """
import logging
import uvicorn

logging.basicConfig(format="configured %(levelname)s %(message)s")
uvicorn.run(app, port={free})
"""
    )
    failures = _connect_failures(tmp_path, ["app.py"], script.replace("{free}", str(free_port())))
    assert all(line.startswith("configured WARNING pool 127.0.0.1:") for line in failures), failures
