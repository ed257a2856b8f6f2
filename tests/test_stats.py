"""The histograms record on the hot path in three ways (`observe`, an append to ``pending``, a count of
``zeros``) and fold in bulk: whatever the mix, a reader sees exactly what one `observe` per value would give."""

from __future__ import annotations

from bisect import bisect_left

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastapi_mysqlpool._stats import BUCKETS, FOLD_AT, Histogram

_SECONDS = st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=120.0, allow_nan=False))
_WAYS = st.sampled_from(["observe", "pending", "zero"])


@given(st.lists(st.tuples(_WAYS, _SECONDS), max_size=3 * FOLD_AT), st.integers(min_value=0, max_value=3))
def test_every_way_of_recording_reads_back_as_one_observation_each(
    records: list[tuple[str, float]], reads: int
) -> None:
    histogram = Histogram()
    values: list[float] = []
    for i, (way, seconds) in enumerate(records):
        if way == "observe":
            histogram.observe(seconds)
        elif way == "pending":
            histogram.pending.append(seconds)
        else:
            seconds = 0.0
            histogram.zeros += 1
        values.append(seconds)
        if reads and i % (reads * 97 + 1) == 0:
            histogram.counts  # noqa: B018 (a read in between folds what is pending so far)
    expected = [0] * (len(BUCKETS) + 1)
    for seconds in values:
        expected[bisect_left(BUCKETS, seconds)] += 1
    assert histogram.counts == expected
    assert histogram.count == len(values)
    assert histogram.sum == pytest.approx(sum(values), rel=1e-9, abs=1e-12)
    assert histogram.max == max(values, default=0.0)
    assert not histogram.pending
    assert histogram.zeros == 0
