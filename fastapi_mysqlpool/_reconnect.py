"""Reconnect state: whether the server is down, the backoff, who retries, and a log that does not flood.

One `Reconnect` belongs to each pool. While the server is down exactly one task retries, so a
down server sees one attempt per backoff period, whatever the number of waiters or of connects
that were in flight when it went down. The log says once that the outage started, then at most
one line every ``LOG_EVERY`` seconds with the number of attempts that failed meanwhile, and
once that it ended.

Acquires ask it too: while the server is known to refuse us, an acquire that nothing alive can
serve fails at once with the connect error (``fail_fast``, or an error that waiting will not cure),
instead of at its deadline.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from ._seam import Driver, is_transient_connect_error

__all__ = ["LOG_EVERY", "Reconnect", "connect_error", "describe"]

logger = logging.getLogger("fastapi_mysqlpool")

#: Seconds between two log lines about the same outage.
LOG_EVERY = 5.0


class Reconnect:
    """Connect failures of one pool: outage flag, attempt count, backoff and the retry token."""

    __slots__ = (
        "_backoff_max",
        "_fail_fast",
        "_failed_since_log",
        "_logged_at",
        "_name",
        "_started",
        "attempt",
        "down",
        "last_error",
        "last_exc",
        "not_before",
        "retrying",
    )

    def __init__(self, name: str, backoff_max: float, fail_fast: bool) -> None:
        self._name = name
        self._backoff_max = backoff_max
        self._fail_fast = fail_fast
        self.down = False
        self.attempt = 0
        self.retrying = False  # held by the one task that retries while the server is down
        self.last_error: str | None = None
        self.last_exc: Exception | None = None
        # While down and nobody retries: no new connect before this time (time.monotonic()).
        self.not_before = float("-inf")
        self._started = 0.0
        self._logged_at = float("-inf")
        self._failed_since_log = 0

    def failed(self, exc: Exception, description: str) -> None:
        """Record a failed connect; ``description`` is the masked text shown in stats and logs."""
        if not self.down:
            self.down = True
            self._started = time.monotonic()
        self.attempt += 1
        self.last_error = description
        self.last_exc = exc

    def succeeded(self) -> None:
        if self.down:
            failed, seconds = self.attempt, time.monotonic() - self._started
            logger.info(
                "pool %s: connected again after %d failed attempt(s) over %.1f s", self._name, failed, seconds,
                extra={"pool": self._name, "event": "reconnected", "failed_attempts": failed,
                       "outage_seconds": seconds},
            )  # fmt: skip
        self.down = False
        self.attempt = 0
        self.not_before = float("-inf")
        self._logged_at = float("-inf")
        self._failed_since_log = 0

    def hopeless(self, exc: Exception) -> bool:
        """Whether waiters should get ``exc`` now rather than wait for a connect that may pass:
        with ``fail_fast``, or for an error that the same arguments will meet again."""
        return self._fail_fast or not is_transient_connect_error(exc)

    def refusal(self, now: float, connecting: bool) -> Exception | None:
        """The error to answer a new acquire with at once, if the server is known to refuse us: it is down,
        a connect is under way or the backoff still runs, and the last error is `hopeless`."""
        exc = self.last_exc
        if self.down and exc is not None and (connecting or now < self.not_before) and self.hopeless(exc):
            return exc
        return None

    def allowed(self, wanted: int, opening: int, now: float) -> int:
        """How many of ``wanted`` connects may start: one at a time while down, none while backing off
        (the pool's timer set by `pause` asks again)."""
        if not self.down:
            return wanted
        if now < self.not_before:
            return 0
        return min(wanted, 1 - opening)

    def pause(self) -> float:
        """Nobody needs a connection now: no connect before the backoff delay has passed, so that acquires
        arriving one by one do not each send a connect to a down server. Returns the delay."""
        pause = self.delay()
        self.not_before = time.monotonic() + pause
        self.log_failure(None)
        return pause

    def next_delay(self) -> float:
        """The delay before the retrying task's next attempt, logged."""
        delay = self.delay()
        self.log_failure(delay)
        return delay

    def delay(self) -> float:
        """Jittered exponential delay before the next attempt."""
        base = min(self._backoff_max, 0.05 * 2 ** min(self.attempt, 16))
        return float(base * (0.5 + random.random() / 2))

    def log_failure(self, retry_in: float | None) -> None:
        """Log the last failure, unless a line about this outage was written less than `LOG_EVERY` s ago.
        ``retry_in``: seconds until the next attempt; None when nobody needs the connection any more."""
        now = time.monotonic()
        then = "giving up: nobody waits" if retry_in is None else f"retrying in {retry_in:.3f} s"
        if now - self._logged_at < LOG_EVERY:
            self._failed_since_log += 1
            return
        more = (
            f" ({self._failed_since_log} more failed attempt(s) since the last report)"
            if self._failed_since_log
            else ""
        )
        logger.warning(
            "pool %s: connect failed (%s); %s%s", self._name, self.last_error, then, more,
            extra={"pool": self._name, "event": "connect_failed", "error": self.last_error,
                   "retry_in_seconds": retry_in, "attempt": self.attempt,
                   "suppressed": self._failed_since_log},
        )  # fmt: skip
        self._logged_at = now
        self._failed_since_log = 0


def connect_error(
    driver: Driver, exc: Exception, name: str, connect_timeout: float, open_timeout: float | None = None
) -> Exception:
    """The driver error a failed connect raises: ``exc`` itself, or a driver error (with a permanent or a
    transient code) for a timeout and for an argument the charset cannot encode, whose text would show it.
    ``open_timeout``: given when create_pool's deadline, not ``connect_timeout``, cut the connect short."""
    if isinstance(exc, asyncio.TimeoutError):
        bound = f"after {connect_timeout:g} s" if open_timeout is None else f"at open_timeout={open_timeout:g} s"
        return driver.error(2003, f"Can't connect to MySQL server on {name!r} (connect timed out {bound})")
    if isinstance(exc, UnicodeError):
        # Its text and repr hold the string it failed on, a user name or database name.
        return driver.error(
            2000,  # CR_UNKNOWN_ERROR: permanent, the same arguments fail the same way
            f"Can't connect to MySQL server on {name!r}: a connect argument has characters its "
            f"encoding cannot represent ({type(exc).__name__} in codec {getattr(exc, 'encoding', '?')})",
        )
    return exc


def describe(exc: BaseException) -> str:
    """``Type: text (cause)``, for logs and ``last_error``."""
    text = f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__
    return f"{text} ({cause})" if cause is not None and str(cause) else text
