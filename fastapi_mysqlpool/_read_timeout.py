"""The client-side read timeout: how long one wait for the server's bytes may last.

Neither aiomysql nor asyncmy bounds a read by default, so a statement sent to a server that stopped answering
(a paused process, a cut network path whose TCP never resets, a host that vanished) waits forever: the
caller's deadline does not hold, and the connection is never given back. ``read_timeout`` bounds each wait
for the server's next bytes, as PyMySQL's ``read_timeout`` and MySQL Connector/J's ``socketTimeout`` do (both
per socket read, both off by default). When it passes, the waiting read fails with 2013 (lost connection, the
text names the timeout and the server), the socket is closed without I/O, so nothing half-read can reach
another user, and the host is re-checked before it gets new work.

- It is a bound on silence, not on a statement's whole time: a long result that keeps streaming is never cut,
  and a statement that runs long before its first row is cut once it has been silent that long. The server's
  own limit is the right tool for slow statements (``max_statement_time``): where one applies, the wait is at
  least twice that limit, so the server's error, which keeps the connection, always comes first.
- The default, 30 s, is HikariCP's advice for the driver socket timeout it relies on ("2-3x the longest
  running SQL transaction, or 30 seconds, whichever is longer"): long enough for any statement an HTTP request
  waits for, short enough that a stuck server frees its callers. 0 turns the bound off.
- Cost: one timer armed when a read must wait for the network, cancelled when the bytes come; a read served
  from the buffer costs an attribute test. Nothing else on the command path changes.
"""

from __future__ import annotations

__all__ = ["read_timeout_reason", "read_wait"]


def read_wait(read_timeout: float, statement_limit: float | None) -> float:
    """Seconds one read may wait: ``read_timeout``, but at least twice a server-side statement limit."""
    if statement_limit:
        return max(read_timeout, 2 * statement_limit)
    return read_timeout


def read_timeout_reason(timeout: float, host: object, port: object) -> str:
    """Why the read failed, for the text of its 2013 error ("Lost connection to MySQL server during query (...)")."""
    return f"no answer from {host}:{port} within read_timeout={timeout:g} s; the connection was closed"
