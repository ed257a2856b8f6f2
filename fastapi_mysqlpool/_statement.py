"""Server-side statement timeouts: the server stops the statement, and the connection stays usable.

A client-side timeout (``asyncio.wait_for`` around a query) only closes the socket: the server goes on
running the statement, holding its locks, and the connection is lost. A timeout the server enforces
stops the statement there and answers an ordinary error, after which the connection serves the next
statement.

- MariaDB: the ``max_statement_time`` session variable (seconds, every kind of statement); error 1969.
- MySQL: the ``max_execution_time`` session variable (milliseconds, read-only ``SELECT`` only); error 3024.

The pool-wide value is set once per connection, right after the handshake: it costs nothing per
statement. A per-acquire override is written into each statement instead (MariaDB ``SET STATEMENT
max_statement_time=x FOR ...``, MySQL's ``/*+ MAX_EXECUTION_TIME(ms) */`` hint), so it needs no round
trip to set, none to restore, and cannot leak to the next acquirer: the release just forgets it.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ._seam import error_code

__all__ = ["STATEMENT_TIMEOUT_CODES", "check_statement_time", "is_statement_timeout", "session_sql", "with_limit"]

#: ER_STATEMENT_TIMEOUT (MariaDB) and ER_QUERY_TIMEOUT (MySQL): stopped by the server's statement timeout.
STATEMENT_TIMEOUT_CODES = frozenset({1969, 3024})

_SELECT = re.compile(rb"^(\s*select\b)", re.IGNORECASE)


def check_statement_time(value: Any, what: str) -> float:
    """``value`` as seconds, or a `ValueError` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"invalid {what}: {value!r} (expected seconds >= 0; 0 means no limit)")
    return float(value)


def session_sql(seconds: float, mariadb: bool) -> str:
    """The statement that sets the session's timeout."""
    if mariadb:
        return f"SET SESSION max_statement_time={seconds:.6f}"
    return f"SET SESSION max_execution_time={round(seconds * 1000)}"


def with_limit(sql: bytes, seconds: float, mariadb: bool) -> bytes:
    """``sql`` with a timeout of its own, for one statement."""
    if mariadb:
        return b"SET STATEMENT max_statement_time=%.6f FOR " % seconds + sql
    # MySQL's limit applies to SELECT only; an optimizer hint must follow the SELECT keyword.
    return _SELECT.sub(rb"\1 /*+ MAX_EXECUTION_TIME(%d) */" % round(seconds * 1000), sql, count=1)


def is_statement_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` is a statement the server stopped at its statement timeout (MariaDB 1969,
    MySQL 3024). It is a statement error: the connection stays usable, and the pool keeps it."""
    return error_code(exc) in STATEMENT_TIMEOUT_CODES
