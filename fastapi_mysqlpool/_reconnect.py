"""Reconnect state: whether the server is down, the backoff, who retries, and a log that does not flood.

One `Reconnect` belongs to each pool. While the server is down exactly one task retries, so a
down server sees one attempt per backoff period, whatever the number of waiters or of connects
that were in flight when it went down. The log says once that the outage started, then at most
one line every ``LOG_EVERY`` seconds with the number of attempts that failed meanwhile, and
once that it ended.
"""

from __future__ import annotations

import logging
import random
import time

__all__ = ["LOG_EVERY", "Reconnect"]

logger = logging.getLogger("fastapi_mysqlpool")

#: Seconds between two log lines about the same outage.
LOG_EVERY = 5.0


class Reconnect:
    """Connect failures of one pool: outage flag, attempt count, backoff and the retry token."""

    __slots__ = (
        "_backoff_max",
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

    def __init__(self, name: str, backoff_max: float) -> None:
        self._name = name
        self._backoff_max = backoff_max
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
