"""Counters and latency histograms behind ``Pool.stats()`` and the Prometheus metrics.

Recording must cost next to nothing on the acquire/release path: the hot path appends an
observation to the histogram's `Histogram.pending` list (one C call, no Python frame), and the
histogram sorts what is pending into its buckets, in one pass of C calls, when somebody reads it
or the list reaches `FOLD_AT`. Quantiles are estimated from the buckets only when somebody asks
for a snapshot.

Each pool owns one `PoolStats`. The counters obey a conservation law that the stress tests
check: ``created_total - sum(closed_total.values()) == size - opening`` whenever no code of the
pool runs (between two awaits). A connection is counted as created when it joins the pool (an
opening task handed it over) and as closed the moment the pool lets go of it.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections import Counter
from functools import partial
from typing import Any

__all__ = ["BUCKETS", "CLOSE_REASONS", "FOLD_AT", "Histogram", "PoolStats", "SlowAcquireLog", "quantile"]

logger = logging.getLogger("fastapi_mysqlpool")

#: Upper bounds, in seconds, of the latency buckets (Prometheus ``le`` semantics); the last bucket is +Inf.
BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
_BUCKET_OF = partial(bisect_left, BUCKETS)
#: How many observations may wait in `Histogram.pending` before whoever appends folds them into the buckets.
FOLD_AT = 256

#: Why the pool closed a connection; each has a counter in ``stats()["closed_total"]``.
CLOSE_REASONS = (
    "broken",
    "lifetime",
    "idle",
    "reset_failed",
    "cleared",
    "resized",
    "terminated",
    "shutdown",
    "rerouted",
)


def quantile(counts: list[int], q: float, largest: float) -> float:
    """Estimate the ``q`` quantile of per-bucket ``counts`` by linear interpolation inside its bucket.

    ``largest`` bounds the estimate and stands for the +Inf bucket's upper bound: the histogram's max, or for a
    window of it (the increase of the counts over the last minute) the max since the start, which bounds it too.
    Prometheus's ``histogram_quantile`` interpolates the same way.
    """
    total = sum(counts)
    if total == 0:
        return 0.0
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        if n and seen + n >= rank:
            lower = BUCKETS[i - 1] if i > 0 else 0.0
            upper = BUCKETS[i] if i < len(BUCKETS) else largest
            estimate = lower + (upper - lower) * ((rank - seen) / n)
            return min(estimate, largest)
        seen += n
    return largest


class Histogram:
    """A fixed-bucket latency histogram with sum, count and max.

    `observe` records one value. The hot path appends to ``pending`` instead and calls `fold` once the list
    holds `FOLD_AT` values, or counts an observation of exactly 0 s in ``zeros``; ``counts``, ``count``, ``sum``
    and ``max`` fold what is pending before they answer, so a reader never sees a value left out.
    """

    __slots__ = ("_count", "_counts", "_max", "_sum", "pending", "zeros")

    def __init__(self) -> None:
        self._counts = [0] * (len(BUCKETS) + 1)
        self._count = 0
        self._sum = 0.0
        self._max = 0.0
        #: Observations not yet in the buckets; only ever appended to and cleared in place (the pool keeps it).
        self.pending: list[float] = []
        #: Observations of 0 s (an acquire that did not wait) not yet in the first bucket.
        self.zeros = 0

    def observe(self, seconds: float) -> None:
        pending = self.pending
        pending.append(seconds)
        if len(pending) >= FOLD_AT:
            self.fold()

    def fold(self) -> None:
        """Sort the pending observations into the buckets."""
        zeros = self.zeros
        if zeros:
            self._counts[0] += zeros  # 0 s is in the first bucket, and leaves the sum and the maximum as they are
            self._count += zeros
            self.zeros = 0
        pending = self.pending
        if not pending:
            return
        counts = self._counts
        for bucket, n in Counter(map(_BUCKET_OF, pending)).items():
            counts[bucket] += n
        self._count += len(pending)
        self._sum += sum(pending)
        self._max = max(self._max, max(pending))
        pending.clear()

    @property
    def counts(self) -> list[int]:
        """Observations per bucket (the last one +Inf); the list itself, not a copy."""
        self.fold()
        return self._counts

    @property
    def count(self) -> int:
        self.fold()
        return self._count

    @property
    def sum(self) -> float:
        self.fold()
        return self._sum

    @property
    def max(self) -> float:
        self.fold()
        return self._max

    def quantile(self, q: float) -> float:
        """Estimate the ``q`` quantile by linear interpolation inside its bucket."""
        return quantile(self.counts, q, self.max)

    def snapshot(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "sum": round(self.sum, 6),
            "p50": round(self.quantile(0.50), 6),
            "p99": round(self.quantile(0.99), 6),
            "max": round(self.max, 6),
        }


class PoolStats:
    """The counters and histograms of one pool; ``stats()`` and the metrics read them.

    - ``acquired_total``, ``timeouts_total``, ``rejected_total`` (``max_waiting``): acquires' outcomes.
    - ``created_total``, ``connect_errors_total``, ``closed_total`` (per reason in `CLOSE_REASONS`).
    - ``wait_time``, ``use_time``, ``create_time``: acquire wait, hold and connect latencies.
    """

    __slots__ = (
        "closed_total",
        "connect_errors_total",
        "create_time",
        "created_total",
        "rejected_total",
        "timeouts_total",
        "use_time",
        "wait_time",
    )

    def __init__(self) -> None:
        self.timeouts_total = 0
        self.rejected_total = 0
        self.created_total = 0
        self.connect_errors_total = 0
        self.closed_total = dict.fromkeys(CLOSE_REASONS, 0)
        self.wait_time = Histogram()
        self.use_time = Histogram()
        self.create_time = Histogram()

    @property
    def acquired_total(self) -> int:
        """Acquires that got a connection: every acquire's wait is observed once, a timed-out one's too."""
        return self.wait_time.count - self.timeouts_total

    def snapshot(self) -> dict[str, Any]:
        """The counters' part of ``stats()``."""
        return {
            "acquired_total": self.acquired_total,
            "timeouts_total": self.timeouts_total,
            "rejected_total": self.rejected_total,
            "created_total": self.created_total,
            "connect_errors_total": self.connect_errors_total,
            "closed_total": dict(self.closed_total),
            "acquire_wait_seconds": self.wait_time.snapshot(),
            "use_seconds": self.use_time.snapshot(),
            "connect_seconds": self.create_time.snapshot(),
        }


class SlowAcquireLog:
    """Warns about acquires that waited ``slow_acquire`` seconds or more, at most one line a second,
    so that an overload does not flood the log; the line says how many were left out since the last."""

    __slots__ = ("_last", "_name", "_suppressed")

    def __init__(self, name: str) -> None:
        self._name = name
        self._last = -1e9
        self._suppressed = 0

    def report(self, waited: float, now: float) -> None:
        if now - self._last < 1.0:
            self._suppressed += 1
            return
        logger.warning(
            "pool %s: slow acquire, waited %.3f s (%d more since the last report)",
            self._name, waited, self._suppressed,
            extra={"pool": self._name, "event": "slow_acquire", "wait_seconds": waited},
        )  # fmt: skip
        self._last = now
        self._suppressed = 0
