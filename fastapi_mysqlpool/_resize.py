"""``pool.resize()``: change ``minsize`` and ``maxsize`` while the pool runs.

Growing takes effect at once: the pool opens connections for the tasks already waiting, up to the
new ``maxsize``, and tops up to the new ``minsize``. Shrinking never interrupts anybody: idle
connections above the new ``maxsize`` close now (least recently used first, with COM_QUIT), and
in-use ones when they come back, instead of going to the next waiter, until the size fits.
Both are counted in ``stats()["closed_total"]["resized"]``.

This module validates and decides; the pool applies the new sizes to its own state.
"""

from __future__ import annotations

import dataclasses
import logging

from ._config import PoolOptions
from ._entry import Entry
from ._maintenance import Verdict

__all__ = ["resized", "retire_first"]

logger = logging.getLogger("fastapi_mysqlpool")


def resized(old: PoolOptions, name: str, minsize: int | None, maxsize: int | None) -> PoolOptions:
    """``old`` with the new sizes, validated as at creation (so the same messages: types, ranges,
    minsize <= maxsize)."""
    try:
        new = dataclasses.replace(
            old,
            minsize=old.minsize if minsize is None else minsize,
            maxsize=old.maxsize if maxsize is None else maxsize,
        )
    except ValueError as exc:
        raise ValueError(f"cannot resize pool {name!r}: {exc}") from None
    logger.info(
        "pool %s resized: minsize %d -> %d, maxsize %d -> %d", name, old.minsize, new.minsize,
        old.maxsize, new.maxsize,
        extra={"pool": name, "event": "resize", "minsize": new.minsize, "maxsize": new.maxsize},
    )  # fmt: skip
    return new


def retire_first(count: int) -> Verdict:
    """A sweep verdict that retires the first ``count`` idle connections asked about: the least recently used."""
    left = count

    def verdict(entry: Entry) -> str | None:
        nonlocal left
        left -= 1
        return "resized" if left >= 0 else None

    return verdict
