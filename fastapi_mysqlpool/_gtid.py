"""Read-your-writes across requests: the GTID of a commit as a token, and a replica read that waits for it.

After a commit, the session knows the GTID of its last transaction (MariaDB ``@@last_gtid``; MySQL, the
server's ``@@gtid_executed``, which contains it). The app hands that token to its HTTP client, in a header or a
cookie of its choosing (`ReadYourWrites`); the client sends it back with its next request, and the read
dependency makes the replica wait, at most ``wait`` seconds, until it has applied that transaction
(``MASTER_GTID_WAIT``; MySQL ``WAIT_FOR_EXECUTED_GTID_SET``). A replica that does not get there in time is given
back and the read goes to the primary, so the client always sees its own write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import Response

__all__ = ["ReadYourWrites", "session_gtid", "wait_for_gtid"]

# A MariaDB GTID list (0-1-42,1-2-7) or a MySQL GTID set (uuid:1-5,uuid:7): nothing else may reach the SQL.
_TOKEN = re.compile(r"^[0-9A-Za-z:,\-]{1,2048}$")


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
        return value if value is not None and _TOKEN.match(value) else None

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
    """The token for what ``conn`` committed last: call it after the commit, on the same connection."""
    if getattr(conn, "is_mariadb", True):
        value = await _scalar(conn, "SELECT @@session.last_gtid")
    else:
        value = await _scalar(conn, "SELECT @@global.gtid_executed")
    text = value.decode() if isinstance(value, bytes) else value
    return str(text).replace("\n", "") if text else None


async def wait_for_gtid(conn: Any, token: str, timeout: float) -> bool:
    """Wait, at most ``timeout`` seconds, until the server behind ``conn`` has applied ``token``."""
    if not _TOKEN.match(token):
        raise ValueError("malformed GTID token")
    if getattr(conn, "is_mariadb", True):
        result = await _scalar(conn, "SELECT MASTER_GTID_WAIT(%s, %s)", (token, timeout))
    else:
        result = await _scalar(conn, "SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)", (token, timeout))
    return result is not None and int(result) == 0
