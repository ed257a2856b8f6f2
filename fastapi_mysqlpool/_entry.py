"""The record of one pooled connection: its times, the predicates the pool decides on, and its leak watch.

One `Entry` is allocated per connection, when it is opened, and follows it through the free list,
the in-use map and the checks until it is closed. The pool decides *where* an entry is; the entry
answers *what state* it is in (past its lifetime, used recently enough to skip the pre-ping, due
for a keepalive) and owns the timer that reports it when a borrower holds it too long.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import traceback

from ._seam import Conn

__all__ = ["Entry"]

logger = logging.getLogger("fastapi_mysqlpool")

_LIFETIME_JITTER = 0.025
_HERE = os.path.dirname(os.path.abspath(__file__))
# The pool's own frames say nothing about who holds a connection: a leak report leaves them out.
_CORE_FILES = frozenset(os.path.join(_HERE, name) for name in ("_pool.py", "_acquire.py", "_entry.py"))


class Entry:
    """A pooled connection and its bookkeeping.

    - ``created``, ``last_used``, ``acquired_at``, ``keepalive_at``: monotonic times of its open, its
      last use (release or successful ping), its current acquire and its last keepalive ping.
    - ``expires``: when it is past its lifetime (infinity without ``max_lifetime``).
    - ``resetting``: released, its session reset still under way; it stays in the in-use map meanwhile.
    """

    __slots__ = (
        "acquired_at",
        "conn",
        "created",
        "expires",
        "keepalive_at",
        "last_used",
        "leak_handle",
        "leak_stack",
        "leaked",
        "resetting",
    )

    def __init__(self, conn: Conn, now: float, lifetime: float) -> None:
        self.conn = conn
        self.created = now
        # Jitter spreads retirement so connections opened together are not all replaced at once.
        self.expires = now + lifetime * (1.0 - random.random() * _LIFETIME_JITTER) if lifetime > 0 else float("inf")
        self.last_used = now
        # The last keepalive ping: it proves the path alive without counting as a use (max_idle still applies).
        self.keepalive_at = now
        self.acquired_at = now
        self.leak_handle: asyncio.TimerHandle | None = None
        self.leak_stack: str | None = None
        self.leaked = False
        self.resetting = False

    # ------------------------------------------------------------ predicates

    def expired(self, now: float) -> bool:
        """Past its (jittered) lifetime: retire it instead of handing it out."""
        return now >= self.expires

    def used_within(self, now: float, seconds: float) -> bool:
        """Used (released or pinged) in the last ``seconds``: within the pre-ping window, it needs no ping."""
        return now - self.last_used <= seconds

    def keepalive_due(self, now: float, interval: float) -> bool:
        """No traffic, neither a use nor a keepalive ping, for ``interval`` seconds."""
        return now - max(self.last_used, self.keepalive_at) >= interval

    # ------------------------------------------------------------ leak watch

    def watch_leak(self, loop: asyncio.AbstractEventLoop, timeout: float, pool: str) -> None:
        """Remember the borrower's stack and report it if the connection is still held after ``timeout``."""
        frames = traceback.extract_stack(limit=16)
        while frames and frames[-1].filename in _CORE_FILES:
            frames.pop()
        self.leak_stack = "".join(traceback.format_list(frames))
        self.leaked = False
        self.leak_handle = loop.call_later(timeout, self._report_leak, timeout, pool)

    def _report_leak(self, timeout: float, pool: str) -> None:
        self.leaked = True
        logger.warning(
            "pool %s: connection held for more than %g s; acquired at:\n%s", pool, timeout, self.leak_stack,
            extra={"pool": pool, "event": "leak", "stack": self.leak_stack},
        )  # fmt: skip

    def end_leak_watch(self, now: float, pool: str) -> None:
        """The connection came back: stop the watch, and say how long a reported leak was held."""
        assert self.leak_handle is not None
        self.leak_handle.cancel()
        self.leak_handle = None
        if self.leaked:
            held = now - self.acquired_at
            logger.warning(
                "pool %s: leaked connection returned after %.3f s", pool, held,
                extra={"pool": pool, "event": "leak_returned", "held_seconds": held},
            )  # fmt: skip

    def drop_leak_watch(self) -> None:
        """Stop the watch without a report: the pool itself closes the connection."""
        if self.leak_handle is not None:
            self.leak_handle.cancel()
            self.leak_handle = None
