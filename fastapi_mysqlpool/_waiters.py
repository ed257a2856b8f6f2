"""The queue of acquires waiting for a connection, and the one timer that serves all their deadlines.

A waiter is a future the pool hands a connection over with. The queue is strict FIFO: a connection
that becomes available goes to the oldest waiter still waiting. Cancelled and timed-out waiters stay
queued until their own task removes them; whoever hands over skips them.

One timer serves every deadline: it is armed no later than the earliest deadline of any live waiter,
and when it fires it fails the overdue waiters (with the error the pool describes), re-arms for the
next deadline and logs the timeouts. With one ``acquire_timeout`` for all, deadlines grow in queue order,
so the timer is re-armed once per busy spell rather than once per waiter.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sized

from ._entry import Entry

__all__ = ["Waiter", "Waiters"]

logger = logging.getLogger("fastapi_mysqlpool")


class Waiter(asyncio.Future[Entry]):
    """A queued acquire: the future a connection is handed over with, when it started and its deadline."""

    __slots__ = ("deadline", "started")

    deadline: float
    started: float


class Waiters:
    """The FIFO of `Waiter` futures and their deadline timer.

    - ``name``: the pool's, for the log; ``in_use``: its in-use connections, counted in the log.
    - ``timeout_error``: the error a waiter whose deadline passed fails with (the pool counts it there).

    ``queue`` may be read (its length, whether it is empty) but only this class changes it.
    """

    __slots__ = ("_in_use", "_loop", "_name", "_timeout_error", "_timer", "_timer_at", "queue")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        name: str,
        in_use: Sized,
        timeout_error: Callable[[Waiter], BaseException],
    ) -> None:
        self._loop = loop
        self._name = name
        self._in_use = in_use
        self._timeout_error = timeout_error
        self.queue: deque[Waiter] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")

    def __len__(self) -> int:
        return len(self.queue)

    def add(self, started: float, deadline: float) -> Waiter:
        """Queue a new waiter; the timer fires no later than its deadline."""
        fut = Waiter(loop=self._loop)
        fut.deadline = deadline
        fut.started = started
        self.queue.append(fut)
        if deadline < self._timer_at:
            self._arm(deadline)
        return fut

    def hand_over(self, entry: Entry) -> bool:
        """Give ``entry`` to the oldest live waiter; False when nobody waits any more."""
        queue = self.queue
        while queue:
            fut = queue.popleft()
            if not fut.done():
                fut.set_result(entry)
                return True
        return False

    def remove(self, fut: Waiter) -> bool:
        """Take ``fut`` out of the queue (its task gave up); False when it was no longer queued."""
        try:
            self.queue.remove(fut)
        except ValueError:
            return False
        return True

    def fail_all(self, error: Callable[[], BaseException] | None) -> None:
        """Empty the queue: every pending waiter gets its own ``error()``, or is cancelled when None."""
        self._disarm()
        queue = self.queue
        while queue:
            fut = queue.popleft()
            if error is None:
                fut.cancel()
            elif not fut.done():
                fut.set_exception(error())

    def _arm(self, when: float, *, at_least: float = 0.0) -> None:
        self._disarm()
        self._timer_at = when
        # Relative delays: the pool's clock (time.monotonic) and the loop's never mix.
        self._timer = self._loop.call_later(max(at_least, when - time.monotonic()), self._fire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, float("inf")

    def _fire(self) -> None:
        """Fail every overdue waiter, then re-arm for the next deadline. Overdue waiters stay
        queued until their own task removes them, as cancelled ones do."""
        self._timer, self._timer_at = None, float("inf")
        now = time.monotonic()
        overdue: list[Waiter] = []
        earliest = float("inf")
        for fut in self.queue:
            if fut.done():
                continue
            if fut.deadline <= now:
                overdue.append(fut)
            elif fut.deadline < earliest:
                earliest = fut.deadline
        if earliest != float("inf"):
            # At least a millisecond: a loop with a coarse clock (uvloop counts whole
            # milliseconds) fires a little early, and a zero delay would spin until the deadline.
            self._arm(earliest, at_least=0.001)
        # Every waiter is failed before anything is logged: a logging handler that raises
        # must not leave the others waiting past their deadline.
        for fut in overdue:
            fut.set_exception(self._timeout_error(fut))
        for fut in overdue:
            logger.warning(
                "pool %s exhausted: acquire timed out after %g s", self._name, fut.deadline - fut.started,
                extra={"pool": self._name, "event": "timeout", "in_use": len(self._in_use),
                       "waiting": len(self.queue)},
            )  # fmt: skip
