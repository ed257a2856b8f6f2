"""OpenTelemetry tracing (``tracing=True``, the ``opentelemetry`` extra): a span per acquire and per statement.

Spans follow the database semantic conventions: ``db.system.name`` (``mariadb`` or ``mysql``, from
the server's handshake), ``db.operation.name`` (the statement's first keyword), ``db.namespace``
(the database), ``server.address`` and ``server.port``; a failed statement adds ``error.type`` and
``db.response.status_code``, and its status is an error naming the two, never the server's message,
which quotes the statement's values. The statement text (``db.query.text``) is opt-in with
``trace_statements=True``, and even then every literal in it is replaced by ``?`` and every
comment removed: both drivers interpolate parameters into the text on the client, so that is the only
way their values can never reach a span. The text is read as the server reads it, in the session's
mode (`sanitize`): under NO_BACKSLASH_ESCAPES a backslash escapes nothing, and a double-quoted run
may be an identifier (ANSI_QUOTES).

The same traced class is built over either driver's connection class (aiomysql, asyncmy): both send
every statement through ``query()``, which is where the span is opened.

Spans are started as the *current* span, in the caller's context: inside a FastAPI request traced
by OpenTelemetry's ASGI or FastAPI instrumentation, they are children of the request's span.

Zero cost when off: this module is imported only by a pool created with ``tracing=True``, which
opens `TracedConnection` instead of the plain connection class and hands out a traced acquire
context. A pool without tracing runs exactly the code it ran before tracing existed.
"""

from __future__ import annotations

import re
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ._seam import Conn, error_code

if TYPE_CHECKING:
    from ._acquire import AcquireContext as _AcquireContext
    from ._config import PoolOptions

__all__ = ["NO_BACKSLASH_ESCAPES", "operation_name", "require_opentelemetry", "sanitize", "traced_classes"]

_INSTALL_HINT = "tracing=True needs OpenTelemetry: pip install 'fastapi-mysqlpool[opentelemetry]'"
#: The status flag the server sets while ``sql_mode`` has NO_BACKSLASH_ESCAPES (in every OK and EOF packet).
NO_BACKSLASH_ESCAPES = 0x0200


def _scanner(backslash_escapes: bool, ansi_quotes: bool) -> re.Pattern[str]:
    """The tokens of one reading of the SQL text that matter: literals, comments, and backtick identifiers
    (kept, and matched so that a quote inside one starts nothing). A number counts only where no identifier
    character precedes it, so that digits inside a word (``t1``) stay."""
    plain, escaped = (r"\\", r"|\\.") if backslash_escapes else ("", "")
    single = rf"'(?:[^'{plain}]|''{escaped})*'"
    double = r'"(?:[^"]|"")*"' if ansi_quotes else rf'"(?:[^"{plain}]|""{escaped})*"'
    return re.compile(
        # Only where a token can start: the engine skips every other position with one character test.
        r"(?=['\"`#/\-\d.])(?:"
        # Comments, dropped: a value may hide there too. Executable comments and optimizer hints hold SQL,
        # so only their opener is kept and what follows is read as SQL.
        r"(?P<comment>/\*(?!M?!|\+).*?(?:\*/|\Z)|#[^\n]*|--(?:\s|\Z)[^\n]*)"
        r"|(?P<keep>/\*(?:M?!\d*|\+)|`(?:[^`]|``)*`)"
        # Strings (a double-quoted run is a literal, or under ANSI_QUOTES an identifier, hidden too: see
        # `sanitize`), hex and bit literals, numbers (a leading sign stays: it is an operator).
        rf"|(?P<literal>{single}|{double}"
        # A number with a point or an exponent ends there (MariaDB reads ``12.5from`` as 12.5 FROM); digits alone,
        # or a hex or bit literal, followed by a letter are an identifier (``123abc``).
        r"|(?<![\w$])(?:(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+)"
        r"|(?<![\w$])(?:0[xX][0-9a-fA-F]+|0[bB][01]+|\d+)(?![\w$])"
        # An unterminated quote: the server reads the rest as the literal (or fails); none of it is shown.
        r"|['\"`].*))",
        re.DOTALL,
    )


# Keyed by (backslash escapes, ANSI_QUOTES).
_SCANNERS = {(b, a): _scanner(b, a) for b in (False, True) for a in (False, True)}
_FIRST_WORD = re.compile(r"\s*(?:/\*.*?\*/\s*)*([A-Za-z]+)", re.DOTALL)


def require_opentelemetry() -> Any:
    """The ``opentelemetry.trace`` module, or a `ValueError` with the install hint."""
    try:
        from opentelemetry import trace
    except ImportError:
        raise ValueError(_INSTALL_HINT) from None
    return trace


def _marks(sql: str, scanner: re.Pattern[str]) -> list[tuple[int, int, bool]]:
    """Where the literals (True) and the comments (False) of ``sql`` are, in one reading."""
    return [(m.start(), m.end(), m.lastgroup == "literal") for m in scanner.finditer(sql) if m.lastgroup in _HIDDEN]


_HIDDEN = frozenset({"literal", "comment"})


def _union(first: list[tuple[int, int, bool]], second: list[tuple[int, int, bool]]) -> list[tuple[int, int, bool]]:
    """Every span hidden by either reading; where a literal of one overlaps anything of the other, a literal."""
    merged: list[tuple[int, int, bool]] = []
    for start, end, literal in sorted(first + second):
        if merged and start < merged[-1][1]:
            last_start, last_end, last_literal = merged[-1]
            merged[-1] = (last_start, max(last_end, end), last_literal or literal)
        else:
            merged.append((start, end, literal))
    return merged


def sanitize(sql: str, *, no_backslash_escapes: bool = False) -> str:
    """``sql`` with every literal (string, hex, bit, number) replaced by ``?`` and every comment removed.

    ``no_backslash_escapes``: the session's ``sql_mode`` has NO_BACKSLASH_ESCAPES (the server says so in
    every packet's status, `NO_BACKSLASH_ESCAPES`), so that a backslash is an ordinary character in a string
    and ``'C:\\'`` ends at its second quote. The server's status does not tell ANSI_QUOTES, under which a
    double-quoted run is an identifier, read without backslash escapes: where the two readings can differ (a
    double quote and a backslash in a session that escapes), the text is scanned both ways and whatever
    either reading calls a literal is hidden. A double-quoted identifier is shown as ``?`` too: never a value.
    """
    escapes = not no_backslash_escapes
    marks = _marks(sql, _SCANNERS[escapes, False])
    if escapes and '"' in sql and "\\" in sql:
        marks = _union(marks, _marks(sql, _SCANNERS[escapes, True]))
    if not marks:
        return sql
    parts: list[str] = []
    pos = 0
    for start, end, literal in marks:
        parts.append(sql[pos:start])
        parts.append("?" if literal else " ")
        pos = end
    parts.append(sql[pos:])
    return "".join(parts)


def operation_name(sql: str) -> str:
    """The statement's first keyword, upper case (``SELECT``, ``INSERT``...); ``""`` when there is none."""
    found = _FIRST_WORD.match(sql)
    return found.group(1).upper() if found else ""


def _namespace(conn: Any) -> str | None:
    # aiomysql's connection has db; asyncmy's keeps it as _db (bytes once the handshake sent it).
    db = conn.db if hasattr(conn, "db") else conn._db
    if isinstance(db, bytes):
        db = db.decode(conn._encoding)
    return db or None


def _server_attributes(conn: Any, namespace: str | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "db.system.name": "mariadb" if conn.is_mariadb else "mysql",
        "server.address": conn.host if hasattr(conn, "host") else conn._host,
        "server.port": conn.port if hasattr(conn, "port") else conn._port,
    }
    if namespace:
        attributes["db.namespace"] = namespace
    return attributes


# OpenTelemetry would record a failure's message, as an exception event and as the status description. A server's
# message quotes the statement and its values ("Duplicate entry 'alice@example.com' for key 'email'", "... near
# ''secret'' at line 1"), so a failure records its type and error code only (`_failed`).
_QUIET = {"record_exception": False, "set_status_on_exception": False}


def _failed(span: Any, exc: BaseException, error: Any) -> None:
    if not span.is_recording():
        return
    kind = type(exc).__qualname__
    code = error_code(exc)
    span.set_attribute("error.type", kind)
    if code:
        span.set_attribute("db.response.status_code", str(code))
    span.set_status(error, f"{kind} {code}" if code else kind)


def traced_classes(
    options: PoolOptions, acquire_context: type[_AcquireContext], connection_class: type[Any]
) -> tuple[type[Any], type[_AcquireContext]]:
    """The connection class and the acquire context of a traced pool, for either driver's connection class."""
    trace = require_opentelemetry()
    from . import __version__

    tracer = trace.get_tracer("fastapi_mysqlpool", __version__)
    client = trace.SpanKind.CLIENT
    error = trace.StatusCode.ERROR
    record_text = options.trace_statements

    # Attributes are computed only for a span that records: with the API alone (no SDK provider), or a span
    # sampled out, a statement costs the span's start and end and nothing else.
    class TracedConnection(connection_class):  # type: ignore[misc]
        async def query(self, sql: str | bytes, unbuffered: bool = False) -> int:
            text = sql if isinstance(sql, str) else sql.decode(self._encoding, "surrogateescape")
            operation = operation_name(text)
            db = _namespace(self)
            name = f"{operation} {db}" if operation and db else operation or db or "mysql"
            with tracer.start_as_current_span(name, kind=client, **_QUIET) as span:
                if span.is_recording():
                    attributes = _server_attributes(self, db)
                    if operation:
                        attributes["db.operation.name"] = operation
                    if record_text:
                        # The mode the session is in now, as the server reported it with its last answer.
                        escapes_off = bool(self.server_status & NO_BACKSLASH_ESCAPES)
                        attributes["db.query.text"] = sanitize(text, no_backslash_escapes=escapes_off)
                    span.set_attributes(attributes)
                try:
                    rows: int = await super().query(sql, unbuffered)
                    return rows
                except BaseException as exc:
                    _failed(span, exc, error)
                    raise

    class TracedAcquire(acquire_context):  # type: ignore[misc, valid-type]
        __slots__ = ()

        async def _traced(self, acquiring: Coroutine[Any, Any, Conn]) -> Conn:
            with tracer.start_as_current_span("acquire", kind=client, **_QUIET) as span:
                recording = span.is_recording()
                if recording:
                    span.set_attribute("db.client.connection.pool.name", self._pool.name)
                try:
                    conn = await acquiring
                except BaseException as exc:
                    _failed(span, exc, error)
                    raise
                if recording:
                    span.set_attributes(_server_attributes(conn, _namespace(conn)))
                return conn

        def _open(self) -> Coroutine[Any, Any, Conn]:
            return self._traced(super()._open())

        async def __aenter__(self) -> Conn:
            # The base class's fast path (a fresh idle connection) inside the span.
            conn: Conn = await self._traced(super().__aenter__())
            return conn

    return TracedConnection, TracedAcquire
