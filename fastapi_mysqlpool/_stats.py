"""Counters and latency histograms behind ``Pool.stats()`` and the Prometheus metrics.

Recording must cost next to nothing on the acquire/release path: a histogram
observation is one ``bisect`` over a short tuple and three additions. Quantiles are
estimated from the buckets only when somebody asks for a snapshot.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

__all__ = ["BUCKETS", "CLOSE_REASONS", "Histogram", "quantile"]

#: Upper bounds, in seconds, of the latency buckets (Prometheus ``le`` semantics); the last bucket is +Inf.
BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip

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
    """A fixed-bucket latency histogram with sum, count and max."""

    __slots__ = ("count", "counts", "max", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.count = 0
        self.sum = 0.0
        self.max = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.count += 1
        self.sum += seconds
        if seconds > self.max:
            self.max = seconds

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
