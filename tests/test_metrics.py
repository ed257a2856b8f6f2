"""Prometheus metrics: OpenTelemetry names, exact copies of the pool's numbers, multiprocess aggregation."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import fastapi_mysqlpool as mp
from fastapi_mysqlpool._history import attach as attach_history
from fastapi_mysqlpool._history import detach as detach_history
from fastapi_mysqlpool._metrics import INSTALL_HINT, SYNC_INTERVAL, attach, detach, metrics_response
from fastapi_mysqlpool._stats import BUCKETS
from tests import _metrics_app
from tests._fastapi_support import serve
from tests._uvicorn import uvicorn_server
from tests.conftest import PoolFactory

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

GAUGES = (
    "db_client_connection_count",
    "db_client_connection_max",
    "db_client_connection_idle_min",
    "db_client_connection_pending_requests",
)
HISTOGRAMS = {
    "wait_time": "db_client_connection_wait_time_seconds",
    "use_time": "db_client_connection_use_time_seconds",
    "create_time": "db_client_connection_create_time_seconds",
}


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def scrape(*pools: mp.Pool) -> Samples:
    response = metrics_response({f"pool{i}": pool for i, pool in enumerate(pools)})
    assert response.status_code == 200
    assert str(response.media_type).startswith("text/plain")
    return parse(bytes(response.body).decode())


async def eventually(predicate: Callable[[], bool], message: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, message
        await asyncio.sleep(0.02)


@pytest.fixture
def name() -> str:
    """A pool name of the test's own: the metrics registry lives as long as the process."""
    return f"metrics-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def attached() -> AsyncIterator[Callable[[mp.Pool], mp.Pool]]:
    pools: list[mp.Pool] = []

    def attach_pool(pool: mp.Pool) -> mp.Pool:
        attach(pool)
        pools.append(pool)
        return pool

    yield attach_pool
    for pool in pools:
        detach(pool)


async def test_gauges_follow_opentelemetry_names_with_a_pool_name_label(make_pool: PoolFactory, name: str) -> None:
    pool = await make_pool(name=name, minsize=2, maxsize=5)
    held = await pool.acquire()
    samples = scrape(pool)
    assert sample(samples, "db_client_connection_count", pool_name=name, state="used") == 1
    assert sample(samples, "db_client_connection_count", pool_name=name, state="idle") == 1
    assert sample(samples, "db_client_connection_max", pool_name=name) == 5
    assert sample(samples, "db_client_connection_idle_min", pool_name=name) == 2
    assert sample(samples, "db_client_connection_pending_requests", pool_name=name) == 0
    waiter = asyncio.ensure_future(pool.acquire())
    await asyncio.sleep(0.01)
    other = await pool.acquire()
    samples = scrape(pool)
    assert sample(samples, "db_client_connection_count", pool_name=name, state="used") == 3
    await pool.release(other)
    await pool.release(held)
    await pool.release(await waiter)
    samples = scrape(pool)
    assert sample(samples, "db_client_connection_count", pool_name=name, state="used") == 0
    assert sample(samples, "db_client_connection_count", pool_name=name, state="idle") == pool.freesize


async def test_every_metric_carries_the_pool_name(make_pool: PoolFactory, name: str) -> None:
    pool = await make_pool(name=name)
    async with pool.acquire():
        pass
    families = {f.name: f for f in text_string_to_metric_families(bytes(metrics_response({name: pool}).body).decode())}
    expected = {
        *GAUGES,
        *HISTOGRAMS.values(),
        "db_client_connection_timeouts",
        "db_client_connection_rejected",
        "db_client_connection_connect_errors",
        "db_client_connection_closed",
    }
    assert expected <= families.keys()
    for metric in expected:
        assert families[metric].samples, metric
        assert all("pool_name" in s.labels for s in families[metric].samples), metric


async def test_histograms_equal_the_pool_histograms_bucket_for_bucket(make_pool: PoolFactory, name: str) -> None:
    pool = await make_pool(name=name, maxsize=2)
    for delay in (0.0, 0.002, 0.03):
        async with pool.acquire() as conn:
            await asyncio.sleep(delay)
            async with conn.cursor() as cur:
                await cur.execute("SELECT 1")
    held = [await pool.acquire(), await pool.acquire()]
    waiter = asyncio.ensure_future(pool.acquire())
    await asyncio.sleep(0.02)
    await pool.release(held.pop())
    held.append(await waiter)
    scrape(pool)  # a first copy, so the second one below adds increases
    for conn in held:
        await pool.release(conn)
    samples = scrape(pool)
    for attr, metric in HISTOGRAMS.items():
        source = getattr(pool._stats, attr)
        assert source.count > 0, attr
        cumulative = 0
        for bound, count in zip([*BUCKETS, float("inf")], source.counts, strict=True):
            cumulative += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            assert sample(samples, f"{metric}_bucket", pool_name=name, le=le) == cumulative, (metric, le)
        assert sample(samples, f"{metric}_count", pool_name=name) == source.count
        assert sample(samples, f"{metric}_sum", pool_name=name) == pytest.approx(source.sum)
    assert pool._stats.wait_time.quantile(1.0) >= 0.02


async def test_counters_count_timeouts_rejections_and_closes_by_reason(make_pool: PoolFactory, name: str) -> None:
    pool = await make_pool(name=name, minsize=1, maxsize=1, max_waiting=1, slow_acquire=0)
    held = await pool.acquire()
    with pytest.raises(mp.PoolTimeout):
        await pool.acquire(timeout=0.05)
    waiter = asyncio.ensure_future(pool.acquire(timeout=5))
    await asyncio.sleep(0.01)
    with pytest.raises(mp.TooManyWaiters):
        await pool.acquire(timeout=5)
    await pool.release(held, discard=True)
    await pool.release(await waiter)
    samples = scrape(pool)
    assert sample(samples, "db_client_connection_timeouts_total", pool_name=name) == 1
    assert sample(samples, "db_client_connection_rejected_total", pool_name=name) == 1
    assert sample(samples, "db_client_connection_closed_total", pool_name=name, reason="broken") == 1
    assert sample(samples, "db_client_connection_connect_errors_total", pool_name=name) == 0


async def test_connect_errors_are_counted(make_pool: PoolFactory, mysql_dsn: str, name: str) -> None:
    wrong = mysql_dsn.replace("://", "://nobody_here", 1)
    pool = await make_pool(wrong, name=name, minsize=1, wait_open=False, backoff_max=0.05)
    await eventually(lambda: pool._stats.connect_errors_total >= 2, "no connect error was counted")
    samples = scrape(pool)
    assert (
        sample(samples, "db_client_connection_connect_errors_total", pool_name=name) == pool._stats.connect_errors_total
    )


async def refreshed_while_held(pool: mp.Pool, name: str, count: int, message: str) -> None:
    """Hold ``count`` connections until the gauge of used connections shows them, with no scrape in between."""
    held = [await pool.acquire() for _ in range(count)]
    labels = {"pool_name": name, "state": "used"}
    try:
        await eventually(
            lambda: REGISTRY.get_sample_value("db_client_connection_count", labels) == count,
            message,
            timeout=10 * SYNC_INTERVAL,
        )
    finally:
        for conn in held:
            await pool.release(conn)


async def test_the_timer_keeps_the_metrics_current_between_scrapes(
    make_pool: PoolFactory, attached: Callable[[mp.Pool], mp.Pool], name: str
) -> None:
    pool = attached(await make_pool(name=name, minsize=1, maxsize=4))
    assert REGISTRY.get_sample_value("db_client_connection_max", {"pool_name": name}) == 4
    await refreshed_while_held(pool, name, 3, "the gauges were not refreshed in the background")


def test_a_loop_closed_with_its_pools_still_attached_leaves_nothing_pending(
    mysql_dsn: str, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Some harnesses close a test's loop without cancelling its tasks, and an app's shutdown may never run:
    # the pool below is closed but never detached, then its loop is closed and another loop attaches a pool.
    async def open_and_close(detached: bool) -> None:
        pool = await mp.create_pool(dsn=mysql_dsn, name=name, minsize=1)
        attach(pool)
        attach_history(pool)
        if detached:
            detach(pool)
            detach_history(pool)
        pool.close()
        await pool.wait_closed()

    def on_a_loop_of_its_own(detached: bool) -> None:
        # Not asyncio.run(), which cancels what is left and replaces the thread's current loop.
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(open_and_close(detached))
        finally:
            loop.close()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()  # what earlier tests left, so that what follows is this test's own
    on_a_loop_of_its_own(detached=False)
    caplog.set_level(logging.ERROR, logger="asyncio")
    on_a_loop_of_its_own(detached=True)
    gc.collect()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


async def test_each_loop_refreshes_its_own_pools(
    make_pool: PoolFactory, attached: Callable[[mp.Pool], mp.Pool], mysql_dsn: str, name: str
) -> None:
    pool = attached(await make_pool(name=name, minsize=1, maxsize=4))

    async def on_another_loop() -> None:
        # A second TestClient, or a thread's own loop: its pool comes and goes.
        other = await mp.create_pool(dsn=mysql_dsn, name=f"{name}-other", minsize=1)
        attach(other)
        detach(other)
        other.close()
        await other.wait_closed()

    await asyncio.to_thread(asyncio.run, on_another_loop())
    await refreshed_while_held(pool, name, 2, "the other loop's pool stopped this loop's refresh")


async def test_detach_removes_the_gauges_and_counters_never_go_down(make_pool: PoolFactory, name: str) -> None:
    first = await make_pool(name=name)
    attach(first)
    for _ in range(3):
        async with first.acquire():
            pass
    detach(first)
    assert REGISTRY.get_sample_value("db_client_connection_max", {"pool_name": name}) is None
    assert REGISTRY.get_sample_value("db_client_connection_wait_time_seconds_count", {"pool_name": name}) == 3
    first.close()
    await first.wait_closed()
    # The app restarts its pool under the same name: the counters continue from where they were.
    second = await make_pool(name=name)
    attach(second)
    try:
        for _ in range(2):
            async with second.acquire():
                pass
        samples = scrape(second)
    finally:
        detach(second)
    assert sample(samples, "db_client_connection_wait_time_seconds_count", pool_name=name) == 5
    assert sample(samples, "db_client_connection_max", pool_name=name) == second.maxsize


async def test_pools_that_share_a_name_add_up(make_pool: PoolFactory, name: str) -> None:
    a = await make_pool(name=name, minsize=1, maxsize=3)
    b = await make_pool(name=name, minsize=2, maxsize=4)
    held = [await a.acquire(), await b.acquire()]
    samples = scrape(a, b)
    assert sample(samples, "db_client_connection_max", pool_name=name) == 7
    assert sample(samples, "db_client_connection_idle_min", pool_name=name) == 3
    assert sample(samples, "db_client_connection_count", pool_name=name, state="used") == 2
    await a.release(held[0])
    await b.release(held[1])


async def test_metrics_answer_501_with_the_install_hint_without_prometheus_client(
    make_pool: PoolFactory, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    pool = await make_pool(name=name)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # what `import` sees when it is not installed
    attach(pool)  # must not fail: the lifespan always calls it
    response = metrics_response({name: pool})
    assert response.status_code == 501
    assert INSTALL_HINT in bytes(response.body).decode()
    detach(pool)


async def test_metrics_endpoint_serves_the_text_format_without_the_password(
    make_pool: PoolFactory, mysql_dsn: str
) -> None:
    pool = await make_pool()  # the default name, host:port/db, is derived from the DSN
    name = pool.name

    async def endpoint(request: Request) -> Response:
        return metrics_response({name: pool})

    app = Starlette(routes=[Route("/pool/metrics", endpoint)])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client, pool.acquire():
        response = await client.get("/pool/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = parse(response.text)
    assert sample(samples, "db_client_connection_count", pool_name=name, state="used") == 1
    password = mp.parse_dsn(mysql_dsn).connect_kwargs["password"]
    assert password
    assert password not in response.text


def test_two_uvicorn_workers_add_up_in_multiprocess_mode(mysql_dsn: str, tmp_path: Path) -> None:
    multiproc_dir = tmp_path / "prometheus"
    multiproc_dir.mkdir()
    env = {"DATABASE_URL": mysql_dsn, "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir)}
    workers = 2
    labels = {"pool_name": _metrics_app.NAME}

    def scrape_http(base: str) -> Samples:
        response = httpx.get(f"{base}/pool/metrics", timeout=10)
        assert response.status_code == 200
        return parse(response.text)

    def wait_for(base: str, predicate: Callable[[Samples], bool], message: str) -> Samples:
        deadline = time.monotonic() + 20
        while not predicate(samples := scrape_http(base)):
            assert time.monotonic() < deadline, f"{message}; last scrape: {samples}"
            time.sleep(0.1)
        return samples

    with uvicorn_server("tests._metrics_app:app", env, workers=workers, ready="/pool/live") as base:
        both_open = wait_for(
            base,
            lambda s: sample(s, "db_client_connection_max", **labels) == workers * _metrics_app.MAXSIZE,
            "the gauges of both workers never added up",
        )
        assert sample(both_open, "db_client_connection_idle_min", **labels) == workers * _metrics_app.MINSIZE
        # A new TCP connection per request, so that both workers' accept() get some of them.
        pids: list[int] = []
        while len(set(pids)) < workers or len(pids) < 20:
            assert len(pids) < 500, "the requests never reached both workers"
            pids.append(httpx.get(f"{base}/work", headers={"Connection": "close"}, timeout=10).json()["pid"])
        acquires = len(pids)
        samples = wait_for(
            base,
            lambda s: sample(s, "db_client_connection_use_time_seconds_count", **labels) == acquires,
            f"the histograms do not add up to the {acquires} acquires of both workers",
        )
        assert sample(samples, "db_client_connection_wait_time_seconds_count", **labels) == acquires
        assert sample(samples, "db_client_connection_count", state="used", **labels) == 0
    # Both workers stopped gracefully: their gauges went to zero, their counters stay.
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(multiproc_dir))
    after = parse(generate_latest(registry).decode())
    assert sample(after, "db_client_connection_max", **labels) == 0
    assert sample(after, "db_client_connection_use_time_seconds_count", **labels) == acquires


async def test_the_lifespan_exports_its_pool_and_the_router_serves_it(mysql_dsn: str, name: str) -> None:
    app = FastAPI(lifespan=mp.mysql_lifespan(mysql_dsn, name=name, minsize=1, maxsize=3))
    app.include_router(mp.pool_router)
    async with serve(app) as client:
        assert REGISTRY.get_sample_value("db_client_connection_max", {"pool_name": name}) == 3
        assert (await client.get("/pool/health")).status_code == 200
        response = await client.get("/pool/metrics")
        assert response.status_code == 200
        samples = parse(response.text)
        assert sample(samples, "db_client_connection_wait_time_seconds_count", pool_name=name) == 1
        assert sample(samples, "db_client_connection_count", pool_name=name, state="idle") == 1
    # Shut down: the pool's gauges are gone, its counters stay.
    assert REGISTRY.get_sample_value("db_client_connection_max", {"pool_name": name}) is None
    assert REGISTRY.get_sample_value("db_client_connection_wait_time_seconds_count", {"pool_name": name}) == 1
