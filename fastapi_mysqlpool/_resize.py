"""``pool.resize()``: change ``minsize`` and ``maxsize`` while the pool runs.

Growing takes effect at once: the pool opens connections for the tasks already waiting, up to the
new ``maxsize``, and tops up to the new ``minsize``. Shrinking never interrupts anybody: idle
connections above the new ``maxsize`` close now (least recently used first, with COM_QUIT), and
in-use ones close when they come back, instead of going to the next waiter, until the size fits.
Both are counted in ``stats()["closed_total"]["resized"]``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from ._errors import PoolClosed

if TYPE_CHECKING:
    from ._pool import Pool

__all__ = ["resize"]

logger = logging.getLogger("fastapi_mysqlpool")


def resize(pool: Pool, minsize: int | None, maxsize: int | None) -> None:
    if pool._closing:
        raise PoolClosed(f"pool {pool.name!r} is closed; it cannot be resized")
    old = pool._options
    try:
        # The same validation as at creation, so the same messages: types, ranges, minsize <= maxsize.
        new = dataclasses.replace(
            old,
            minsize=old.minsize if minsize is None else minsize,
            maxsize=old.maxsize if maxsize is None else maxsize,
        )
    except ValueError as exc:
        raise ValueError(f"cannot resize pool {pool.name!r}: {exc}") from None
    pool._options = new
    free = pool._free
    while free and pool.size > new.maxsize:
        pool._retire(free.popleft(), "resized")  # the free list is a stack: its left end was used least recently
    pool._excess = max(0, pool.size - new.maxsize)
    logger.info(
        "pool %s resized: minsize %d -> %d, maxsize %d -> %d", pool.name, old.minsize, new.minsize,
        old.maxsize, new.maxsize,
        extra={"pool": pool.name, "event": "resize", "minsize": new.minsize, "maxsize": new.maxsize},
    )  # fmt: skip
    pool._grow()
