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

A positive limit is never written as 0, which both servers read as "no limit": MariaDB takes
microseconds and MySQL milliseconds, so a limit below that resolution is rounded up to it (1 µs,
1 ms), never down to unlimited.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ._seam import error_code

__all__ = [
    "STATEMENT_TIMEOUT_CODES",
    "check_statement_time",
    "is_statement_timeout",
    "limit_leaves_session",
    "mariadb_value",
    "mysql_value",
    "session_sql",
    "with_limit",
]

#: ER_STATEMENT_TIMEOUT (MariaDB) and ER_QUERY_TIMEOUT (MySQL): stopped by the server's statement timeout.
STATEMENT_TIMEOUT_CODES = frozenset({1969, 3024})

# The smallest limit MariaDB can express: its value has six decimals.
_MARIADB_RESOLUTION = 1e-6

# Statements that read or write rows and change nothing else in the session (see `limit_leaves_session`).
_ROW_STATEMENTS = frozenset(
    {b"SELECT", b"INSERT", b"UPDATE", b"DELETE", b"REPLACE", b"WITH", b"DO", b"VALUES", b"TABLE", b"SHOW",
     b"EXPLAIN", b"DESCRIBE", b"DESC"}
)  # fmt: skip
_FIRST_KEYWORD = re.compile(rb"\s*([A-Za-z]+)")
_SELECT = re.compile(rb"^(\s*select\b)", re.IGNORECASE)


def check_statement_time(value: Any, what: str) -> float:
    """``value`` as seconds, or a `ValueError` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"invalid {what}: {value!r} (expected seconds >= 0; 0 means no limit)")
    return float(value)


def mariadb_value(seconds: float) -> str:
    """``seconds`` as MariaDB's ``max_statement_time`` value: microseconds, a positive limit at least 1 µs."""
    return f"{max(seconds, _MARIADB_RESOLUTION) if seconds > 0 else 0.0:.6f}"


def mysql_value(seconds: float) -> int:
    """``seconds`` as MySQL's ``max_execution_time`` value: milliseconds, a positive limit at least 1 ms."""
    milliseconds = round(seconds * 1000)
    return max(milliseconds, 1) if seconds > 0 else 0


def session_sql(seconds: float, mariadb: bool) -> str:
    """The statement that sets the session's timeout."""
    if mariadb:
        return f"SET SESSION max_statement_time={mariadb_value(seconds)}"
    return f"SET SESSION max_execution_time={mysql_value(seconds)}"


def with_limit(sql: bytes, seconds: float, mariadb: bool) -> bytes:
    """``sql`` with a timeout of its own, for one statement."""
    if mariadb:
        return b"SET STATEMENT max_statement_time=%s FOR " % mariadb_value(seconds).encode() + sql
    # MySQL's limit applies to SELECT only; an optimizer hint must follow the SELECT keyword.
    return _SELECT.sub(rb"\1 /*+ MAX_EXECUTION_TIME(%d) */" % mysql_value(seconds), sql, count=1)


def limit_leaves_session(sql: bytes) -> bool:
    """Whether the server's "session changed" flag on the answer to ``sql`` sent under a per-statement limit
    (`with_limit`) can only be the limit's own doing, so that the session needs no reset for it.

    MariaDB flags every ``SET STATEMENT max_statement_time=x FOR ...`` as a session change and, for a statement
    answered with an OK packet, names ``max_statement_time`` with the statement's own value ``x`` (a SELECT's
    closing EOF packet names nothing); it restores the variable once the statement ends and reports no change
    for that. So the name and value say nothing about the statement itself: a temporary table, a user variable
    or ``SET SESSION max_statement_time=x`` under the same prefix are reported exactly alike. What decides is
    the statement: one that only reads or writes rows (`_ROW_STATEMENTS`) leaves the session as it was; any
    other kind (``SET``, ``CREATE``, ``USE``, ``CALL``, ``PREPARE``...) counts as a change and costs the full
    reset at release. Changes the server never reports (``:=``, ``GET_LOCK``...) are caught apart, by the
    driver, whatever the prefix."""
    found = _FIRST_KEYWORD.match(sql)
    return found is not None and found.group(1).upper() in _ROW_STATEMENTS


def is_statement_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` is a statement the server stopped at its statement timeout (MariaDB 1969,
    MySQL 3024). It is a statement error: the connection stays usable, and the pool keeps it."""
    return error_code(exc) in STATEMENT_TIMEOUT_CODES
