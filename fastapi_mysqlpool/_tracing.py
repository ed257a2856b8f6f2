"""OpenTelemetry tracing (``tracing=True``, the ``opentelemetry`` extra): a span per acquire and per statement.

Spans follow the database semantic conventions: ``db.system.name`` (``mariadb`` or ``mysql``, from
the server's handshake), ``db.operation.name`` (the statement's first keyword), ``db.namespace``
(the database), ``server.address`` and ``server.port``; a failed statement adds ``error.type`` and
``db.response.status_code``. The statement text (``db.query.text``) is opt-in with
``trace_statements=True``, and even then every literal in it is replaced by ``?``: aiomysql
interpolates parameters into the text on the client, so that is the only way their values can
never reach a span.

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

import aiomysql

if TYPE_CHECKING:
    from ._acquire import AcquireContext as _AcquireContext
    from ._config import PoolOptions

__all__ = ["operation_name", "require_opentelemetry", "sanitize", "traced_classes"]

_INSTALL_HINT = "tracing=True needs OpenTelemetry: pip install 'fastapi-mysqlpool[opentelemetry]'"
# Quoted strings (with backslash or doubled-quote escapes), hex and bit literals, and numbers
# that do not belong to an identifier (t1 stays t1).
_LITERALS = re.compile(
    r"""'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*"|\b0[xX][0-9a-fA-F]+\b|\b[xXbB]'[^']*'"""
    r"""|(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\b""",
    re.DOTALL,
)
_FIRST_WORD = re.compile(r"\s*(?:/\*.*?\*/\s*)*([A-Za-z]+)", re.DOTALL)


def require_opentelemetry() -> Any:
    """The ``opentelemetry.trace`` module, or a `ValueError` with the install hint."""
    try:
        from opentelemetry import trace
    except ImportError:
        raise ValueError(_INSTALL_HINT) from None
    return trace


def sanitize(sql: str) -> str:
    """``sql`` with every literal replaced by ``?``."""
    return _LITERALS.sub("?", sql)


def operation_name(sql: str) -> str:
    """The statement's first keyword, upper case (``SELECT``, ``INSERT``...); ``""`` when there is none."""
    found = _FIRST_WORD.match(sql)
    return found.group(1).upper() if found else ""


def _server_attributes(conn: aiomysql.Connection) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "db.system.name": "mariadb" if conn.is_mariadb else "mysql",
        "server.address": conn.host,
        "server.port": conn.port,
    }
    if conn.db:
        attributes["db.namespace"] = conn.db
    return attributes


def traced_classes(
    options: PoolOptions, acquire_context: type[_AcquireContext], connection_class: type[Any]
) -> tuple[type[Any], type[_AcquireContext]]:
    """The connection class and the acquire context of a traced pool."""
    trace = require_opentelemetry()
    from . import __version__

    tracer = trace.get_tracer("fastapi_mysqlpool", __version__)
    client = trace.SpanKind.CLIENT
    record_text = options.trace_statements

    class TracedConnection(connection_class):  # type: ignore[misc]
        async def query(self, sql: str | bytes, unbuffered: bool = False) -> int:
            text = sql if isinstance(sql, str) else sql.decode(self.encoding, "surrogateescape")
            operation = operation_name(text)
            attributes = _server_attributes(self)
            if operation:
                attributes["db.operation.name"] = operation
            if record_text:
                attributes["db.query.text"] = sanitize(text)
            name = f"{operation} {self.db}" if operation and self.db else operation or str(self.db or "mysql")
            with tracer.start_as_current_span(name, kind=client, attributes=attributes) as span:
                try:
                    rows: int = await super().query(sql, unbuffered)
                    return rows
                except BaseException as exc:
                    span.set_attribute("error.type", type(exc).__qualname__)
                    if isinstance(exc, aiomysql.MySQLError) and exc.args and isinstance(exc.args[0], int):
                        span.set_attribute("db.response.status_code", str(exc.args[0]))
                    raise

    class TracedAcquire(acquire_context):  # type: ignore[misc, valid-type]
        __slots__ = ()

        async def _traced(self, acquiring: Coroutine[Any, Any, aiomysql.Connection]) -> aiomysql.Connection:
            attributes = {"db.client.connection.pool.name": self._pool.name}
            with tracer.start_as_current_span("acquire", kind=client, attributes=attributes) as span:
                conn = await acquiring
                span.set_attributes(_server_attributes(conn))
                return conn

        def _open(self) -> Coroutine[Any, Any, aiomysql.Connection]:
            return self._traced(super()._open())

        async def __aenter__(self) -> aiomysql.Connection:
            # The base class's fast path (a fresh idle connection) inside the span.
            conn: aiomysql.Connection = await self._traced(super().__aenter__())
            return conn

    return TracedConnection, TracedAcquire
