"""Prometheus metrics, named after the OpenTelemetry conventions for database client connection pools.

The pool already counts everything on its hot path in plain integers and `Histogram`
buckets. Recording into prometheus_client there would add a lock per observation and, in
multiprocess mode, an mmap write. So nothing is recorded on acquire or release: a timer
on each event loop that has pools copies the pools' numbers into prometheus_client objects
about once a second, and `metrics_response` copies once more right before it renders. Gauges
are set; counters and histograms get the increase since the previous copy.

The timer is a ``call_later`` handle, not a task: a loop that ends while it still has pools
(a test's loop, an app whose shutdown never ran) leaves nothing pending to be destroyed, and
a pool opened on a second loop (a second ``TestClient``, a thread's own loop) gets a timer
of its own instead of taking over the first one's.

Multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set before prometheus_client is first
imported): each metric is an ordinary prometheus_client object, so its values live in the
per-process files that ``MultiProcessCollector`` merges. No custom collector is involved,
since that mode cannot see one. Gauges use ``livesum``: the connections of all live workers
add up, and a worker that stops takes its share with it.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING

from starlette.responses import PlainTextResponse, Response

from ._stats import BUCKETS, Histogram

if TYPE_CHECKING:
    from ._pool import Pool

__all__ = ["INSTALL_HINT", "SYNC_INTERVAL", "attach", "detach", "metrics_response"]

#: Seconds between two copies of the pools' numbers into the Prometheus metrics.
SYNC_INTERVAL = 1.0
INSTALL_HINT = "pip install 'fastapi-mysqlpool[prometheus]'"

# (pool attribute, metric name, help): the pool's monotonic integer counters.
_COUNTERS = (
    ("timeouts_total", "db_client_connection_timeouts", "Acquires that timed out waiting for a connection."),
    ("rejected_total", "db_client_connection_rejected", "Acquires refused at once because max_waiting tasks queued."),
    ("connect_errors_total", "db_client_connection_connect_errors", "Failed attempts to open a connection."),
)
_HISTOGRAMS = (
    ("wait_time", "db_client_connection_wait_time_seconds", "Time an acquire waited for a connection."),
    ("use_time", "db_client_connection_use_time_seconds", "Time a connection was held between acquire and release."),
    ("create_time", "db_client_connection_create_time_seconds", "Time it took to open a connection."),
)


def _multiprocess() -> bool:
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ or "prometheus_multiproc_dir" in os.environ


class _Copied:
    """How much of one pool's counters and histograms the metrics already hold."""

    __slots__ = ("counters", "histograms")

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}
        self.histograms: dict[str, tuple[list[int], float]] = {}


class _Metrics:
    """The prometheus_client objects (one set per process) and the pools copied into them."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge
        from prometheus_client import Histogram as PromHistogram

        by_pool = ["pool_name"]
        self.count = Gauge(
            "db_client_connection_count",
            "Open connections, by state: idle in the pool or used by the application.",
            [*by_pool, "state"],
            multiprocess_mode="livesum",
        )
        self.max = Gauge(
            "db_client_connection_max",
            "Most connections the pool may open (maxsize).",
            by_pool,
            multiprocess_mode="livesum",
        )
        self.idle_min = Gauge(
            "db_client_connection_idle_min",
            "Connections the pool keeps open even when idle (minsize).",
            by_pool,
            multiprocess_mode="livesum",
        )
        self.pending = Gauge(
            "db_client_connection_pending_requests",
            "Acquires queued for a connection.",
            by_pool,
            multiprocess_mode="livesum",
        )
        self.counters = {attr: Counter(name, doc, by_pool) for attr, name, doc in _COUNTERS}
        self.closed = Counter(
            "db_client_connection_closed", "Connections the pool closed, by reason.", [*by_pool, "reason"]
        )
        self.histograms = {attr: PromHistogram(name, doc, by_pool, buckets=BUCKETS) for attr, name, doc in _HISTOGRAMS}
        self.pools: weakref.WeakKeyDictionary[Pool, _Copied] = weakref.WeakKeyDictionary()
        self.timers: dict[asyncio.AbstractEventLoop, asyncio.TimerHandle] = {}
        # Pools may live on loops in several threads (a TestClient runs its own): one copy at a time, so that an
        # increase is never added twice, and the pool table never changes under an iteration.
        self.lock = threading.RLock()

    def track(self, pool: Pool) -> None:
        with self.lock:
            if pool in self.pools:
                return
            self.pools[pool] = _Copied()
            # Zero-valued series from the start, so that rate() and increase() see the first event.
            name = pool.name
            for metric in (*self.counters.values(), *self.histograms.values()):
                metric.labels(name)
            for reason in pool._stats.closed_total:
                self.closed.labels(name, reason)

    def sync(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Copy the numbers of every tracked pool (of the pools on ``loop``, when given) into the metrics."""
        with self.lock:
            names = set()
            for pool, copied in list(self.pools.items()):
                if loop is None or pool._loop is loop:
                    self._copy_counters(pool, copied)
                    names.add(pool.name)
            for name in names:
                self._set_gauges(name)

    def forget(self, pool: Pool) -> None:
        """Copy ``pool``'s last counts, stop tracking it, and update (or remove) its name's gauges."""
        with self.lock:
            copied = self.pools.pop(pool, None)
            if copied is not None:
                self._copy_counters(pool, copied)
                self._set_gauges(pool.name)

    def _copy_counters(self, pool: Pool, copied: _Copied) -> None:
        name = pool.name
        done = copied.counters
        for attr, metric in self.counters.items():
            value: int = getattr(pool._stats, attr)
            if value != done.get(attr, 0):
                metric.labels(name).inc(value - done.get(attr, 0))
                done[attr] = value
        for reason, value in pool._stats.closed_total.items():
            key = f"closed:{reason}"
            if value != done.get(key, 0):
                self.closed.labels(name, reason).inc(value - done.get(key, 0))
                done[key] = value
        for attr, histogram in self.histograms.items():
            source: Histogram = getattr(pool._stats, attr)
            counts, total = copied.histograms.get(attr) or ([0] * len(source.counts), 0.0)
            if source.counts == counts:
                continue
            child = histogram.labels(name)
            # prometheus_client keeps per-bucket (not cumulative) counts, like the pool, with
            # the same bounds: add each bucket's increase rather than replaying observations.
            for i, (now, before) in enumerate(zip(source.counts, counts, strict=True)):
                if now != before:
                    child._buckets[i].inc(now - before)
            child._sum.inc(source.sum - total)
            copied.histograms[attr] = (list(source.counts), source.sum)

    def _set_gauges(self, name: str) -> None:
        # Pools of one process that share a name (say two pools on one DSN) add up, as workers do.
        pools = [pool for pool in self.pools if pool.name == name and not pool.closed]
        if not pools and not _multiprocess():
            for gauge in (self.max, self.idle_min, self.pending):
                gauge.remove(name)
            for state in ("idle", "used"):
                self.count.remove(name, state)
            return
        # Multiprocess mode cannot remove labels: a process that no longer has the pool reports zeros.
        self.count.labels(name, "idle").set(sum(pool.freesize for pool in pools))
        self.count.labels(name, "used").set(sum(len(pool._in_use) for pool in pools))
        self.pending.labels(name).set(sum(len(pool._waiters) for pool in pools))
        self.max.labels(name).set(sum(pool.maxsize for pool in pools))
        self.idle_min.labels(name).set(sum(pool.minsize for pool in pools))

    def schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start ``loop``'s timer unless it runs; forget the timers of loops that have closed."""
        with self.lock:
            for ended in [other for other in self.timers if other.is_closed()]:
                del self.timers[ended]
            if loop not in self.timers:
                self.timers[loop] = loop.call_later(SYNC_INTERVAL, self._tick, loop)

    def unschedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Stop ``loop``'s timer once none of the tracked pools is on it (called on ``loop``)."""
        with self.lock:
            if not self._serves(loop):
                timer = self.timers.pop(loop, None)
                if timer is not None:
                    timer.cancel()

    def _serves(self, loop: asyncio.AbstractEventLoop) -> bool:
        return any(pool._loop is loop and not pool.closed for pool in list(self.pools))

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        with self.lock:
            # Whatever fails below, the entry never outlives its timer: the next attach on this loop starts one.
            self.timers.pop(loop, None)
            if not self._serves(loop):
                return  # its pools were closed, or collected, without detach: nothing left to copy on this loop
            # Rescheduled before the copy: a copy that fails is logged by the loop and the next one still runs.
            self.timers[loop] = loop.call_later(SYNC_INTERVAL, self._tick, loop)
            self.sync(loop)


_METRICS: list[_Metrics] = []  # at most one: created on first use, once prometheus_client is importable


def _metrics() -> _Metrics | None:
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return None
    if not _METRICS:
        _METRICS.append(_Metrics())
    return _METRICS[0]


def attach(pool: Pool) -> None:
    """Export ``pool`` in the Prometheus metrics, refreshed every `SYNC_INTERVAL` seconds.

    Call it from the running event loop once the pool is open. Without prometheus-client it
    does nothing, so an app may always call it.
    """
    metrics = _metrics()
    if metrics is None:
        return
    metrics.track(pool)
    metrics.sync()
    metrics.schedule(asyncio.get_running_loop())


def detach(pool: Pool) -> None:
    """Stop exporting ``pool``: its last counts are copied, its gauges removed (zeroed in multiprocess mode).

    Counters and histograms keep their totals, as Prometheus counters must never go down.
    """
    metrics = _metrics()
    if metrics is None or pool not in metrics.pools:
        return
    metrics.forget(pool)
    metrics.unschedule(pool._loop)


def metrics_response(pools: Mapping[str, Pool]) -> Response:
    """The Prometheus text exposition of the process's metrics, with ``pools`` up to date.

    In multiprocess mode it merges every worker's files, so any worker answers for all.
    Without prometheus-client: 501, saying how to install it.
    """
    metrics = _metrics()
    if metrics is None:
        return PlainTextResponse(
            f"Prometheus metrics need the prometheus-client package: {INSTALL_HINT}\n", status_code=501
        )
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    for pool in pools.values():
        metrics.track(pool)
    metrics.sync()
    if _multiprocess():
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
