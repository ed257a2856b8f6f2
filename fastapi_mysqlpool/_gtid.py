"""Read-your-writes across requests: the GTID of a commit as a token, and a replica read that waits for it.

After a commit, the session knows the GTID of its last transaction (MariaDB ``@@last_gtid``; MySQL, the
server's ``@@gtid_executed``, which contains it). The app hands that token to its HTTP client, in a header or a
cookie of its choosing (`ReadYourWrites`); the client sends it back with its next request, and the read
dependency makes the replica wait, at most ``wait`` seconds, until it has applied that transaction
(``MASTER_GTID_WAIT``; MySQL ``WAIT_FOR_EXECUTED_GTID_SET``). A replica that does not get there in time is given
back and the read goes to the primary, so the client always sees its own write.

The MySQL side (``@@gtid_executed``, ``WAIT_FOR_EXECUTED_GTID_SET``) is written from MySQL's manual and checked as
the SQL it builds only (tests/test_gtid.py): it has not run against a real MySQL server.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import Response

__all__ = ["ReadYourWrites", "gtid_wait_statement", "session_gtid", "wait_for_gtid"]

# What a token may be, per server, so that nothing else reaches the SQL and a malformed one (the client sends it
# back, so it may be anything) sends the read to the primary instead of failing it with a server error.
# MariaDB: a GTID list, domain-server-sequence, comma-separated (0-1-42,1-2-7).
_MARIADB_GTIDS = re.compile(r"^\d{1,10}-\d{1,10}-\d{1,20}(,\d{1,10}-\d{1,10}-\d{1,20})*$")
# MySQL: a GTID set, uuid:interval[:interval...] per source, comma-separated; MySQL 8.3 adds tags
# (uuid:tag:1-5). gtid_executed separates the sources with ",\n"; the newlines are dropped before this.
_UUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
_UUID_SET = rf"{_UUID}(:([A-Za-z_][A-Za-z0-9_]{{0,31}}|\d{{1,20}}(-\d{{1,20}})?))+"
_MYSQL_GTIDS = re.compile(rf"^{_UUID_SET}(,{_UUID_SET})*$")
_MAX_TOKEN = 8192


def _valid(token: str, mariadb: bool | None) -> bool:
    if len(token) > _MAX_TOKEN:
        return False
    if mariadb is None:
        return bool(_MARIADB_GTIDS.match(token) or _MYSQL_GTIDS.match(token))
    return bool((_MARIADB_GTIDS if mariadb else _MYSQL_GTIDS).match(token))


@dataclass(frozen=True, slots=True)
class ReadYourWrites:
    """Where the app carries the GTID token, and how long a replica read waits for it.

    - ``header``: the request and response header (default ``X-Read-After``); None for none.
    - ``cookie``: a cookie name instead of, or beside, the header; None for none.
    - ``wait``: seconds a replica may take to apply the token's transaction before the read goes to the primary.
    """

    header: str | None = "X-Read-After"
    cookie: str | None = None
    wait: float = 1.0

    def __post_init__(self) -> None:
        if self.header is None and self.cookie is None:
            raise ValueError("ReadYourWrites needs a header or a cookie to carry the token")
        if not self.wait > 0:
            raise ValueError(f"invalid wait {self.wait!r} (expected seconds > 0)")

    def token(self, connection: HTTPConnection) -> str | None:
        """The token the client sent back, or None (also for a malformed one, which is ignored)."""
        value = None
        if self.header is not None:
            value = connection.headers.get(self.header)
        if value is None and self.cookie is not None:
            value = connection.cookies.get(self.cookie)
        return value if value is not None and _valid(value, None) else None

    def set(self, response: Response, token: str | None) -> None:
        """Hand ``token`` (from `session_gtid`) to the client with ``response``."""
        if not token:
            return
        if self.header is not None:
            response.headers[self.header] = token
        if self.cookie is not None:
            response.set_cookie(self.cookie, token, httponly=True, samesite="lax")


async def _scalar(conn: Any, sql: str, args: tuple[Any, ...] = ()) -> Any:
    async with conn.cursor() as cursor:
        await cursor.execute(sql, args or None)
        row = await cursor.fetchone()
    return None if row is None else row[0]


async def session_gtid(conn: Any) -> str | None:
    """The token for what ``conn`` committed last: call it after the commit, on the same connection.

    MariaDB: the session's own ``@@last_gtid``. MySQL: the server's whole ``@@gtid_executed``, which contains the
    session's commit (MySQL has no variable for the session's last GTID; a wait for the whole set may wait for
    other sessions' commits too, never for less than this one's)."""
    if getattr(conn, "is_mariadb", True):
        value = await _scalar(conn, "SELECT @@session.last_gtid")
    else:
        value = await _scalar(conn, "SELECT @@global.gtid_executed")
    text = value.decode() if isinstance(value, bytes) else value
    return "".join(str(text).split()) if text else None


def gtid_wait_statement(token: str, timeout: float, mariadb: bool) -> tuple[str, tuple[Any, ...]] | None:
    """The statement that waits, at most ``timeout`` seconds, for ``token`` on the server, with its arguments;
    None for a token that is not a GTID list of that server's kind.

    - MariaDB ``MASTER_GTID_WAIT(pos, timeout)``: 0 once applied, -1 at the timeout; fractional seconds.
    - MySQL ``WAIT_FOR_EXECUTED_GTID_SET(set, timeout)``: 0 once applied, 1 at the timeout. The timeout is
      whole seconds on MySQL 5.7 (a fraction is cut, and 0 there means no timeout at all), so it is rounded up
      to at least 1."""
    if not _valid(token, mariadb):
        return None
    if mariadb:
        return "SELECT MASTER_GTID_WAIT(%s, %s)", (token, timeout)
    return "SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)", (token, max(1, math.ceil(timeout)))


async def wait_for_gtid(conn: Any, token: str, timeout: float) -> bool:
    """Wait, at most ``timeout`` seconds, until the server behind ``conn`` has applied ``token``. False at the
    timeout, and at once for a token that is not this server's kind of GTID list."""
    statement = gtid_wait_statement(token, timeout, getattr(conn, "is_mariadb", True))
    if statement is None:
        return False
    result = await _scalar(conn, *statement)
    return result is not None and int(result) == 0
