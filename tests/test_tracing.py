"""OpenTelemetry spans, collected with the SDK's in-memory exporter: per acquire and per statement."""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fastapi_mysqlpool._tracing import operation_name, sanitize
from tests._drivers import db_errors
from tests.conftest import PoolFactory, query

_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    # The global provider can be set once per process: the first test sets it, every test clears the exporter.
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def _exported(spans: InMemorySpanExporter) -> str:
    """Everything the spans would export: names, attributes, events and status, one text."""
    parts = []
    for span in spans.get_finished_spans():
        parts += [span.name, str(span.status.description)]
        parts.extend(f"{key}={value}" for key, value in (span.attributes or {}).items())
        for event in span.events:
            parts.append(event.name)
            parts.extend(f"{key}={value}" for key, value in (event.attributes or {}).items())
    return "\n".join(parts)


async def test_a_span_per_acquire_and_per_statement_with_the_semantic_attributes(
    driver: str, make_pool: PoolFactory, spans: InMemorySpanExporter, mysql_server: Any
) -> None:
    pool = await make_pool(minsize=1, tracing=True)
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("GET /items") as request:
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute("SELECT %s, 'secret-value'", ("parameter-value",))
            assert await cur.fetchone() == ("parameter-value", "secret-value")
    finished = {span.name: span for span in spans.get_finished_spans()}
    query = finished[f"SELECT {mysql_server.db}"]
    acquire = finished["acquire"]
    for span in (query, acquire):
        assert span.parent is not None and span.parent.span_id == request.get_span_context().span_id
        assert span.kind == trace.SpanKind.CLIENT
        assert span.attributes["db.system.name"] == "mariadb"
        assert span.attributes["server.address"] == mysql_server.host
        assert span.attributes["server.port"] == mysql_server.port
        assert span.attributes["db.namespace"] == mysql_server.db
    assert query.attributes["db.operation.name"] == "SELECT"
    assert "db.query.text" not in query.attributes  # opt-in
    assert acquire.attributes["db.client.connection.pool.name"] == pool.name
    assert "parameter-value" not in _exported(spans) and "secret-value" not in _exported(spans)


async def test_statement_text_is_opt_in_and_never_holds_parameter_values(
    driver: str, make_pool: PoolFactory, spans: InMemorySpanExporter
) -> None:
    pool = await make_pool(minsize=1, tracing=True, trace_statements=True)
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT %s, %s FROM DUAL WHERE 1 = %s", ("parameter-value", 12345, 1))
        assert await cur.fetchone() == ("parameter-value", 12345)
    texts = [span.attributes.get("db.query.text") for span in spans.get_finished_spans()]
    assert "SELECT ?, ? FROM DUAL WHERE ? = ?" in texts
    assert "parameter-value" not in _exported(spans) and "12345" not in _exported(spans)


# Values that must never reach a span, each able to end a string early in one of the modes or the other.
_PARAMETERS = (
    "C:\\SECRET-A\\",
    "it's SECRET-B",
    "\\' OR 'SECRET-C",
    '" SECRET-D \\"',
    "SECRET-E */ -- # '",
    "SECRET-Ü ünïcode",
    b"\x00SECRET-F\\'",
    decimal.Decimal("918273645.5"),
    -987654321,
    31415.9265e3,
    datetime.date(1987, 6, 5),
)
_SECRET_MARKERS = ("SECRET", "918273645", "987654321", "31415", "1987", "45435245")

# Statements with literals, written for the mode of the session (the server must read each as literals:
# the test checks what it returns), as (SQL, the row the server answers).
_INLINE: dict[str, list[tuple[str, tuple[Any, ...] | None]]] = {
    "": [
        (r"SELECT 'a\'SECRET-1\\', 'SECRET-2'", ("a'SECRET-1\\", "SECRET-2")),
        (r'SELECT "b\"SECRET-3", "SECRET-4""x"', ('b"SECRET-3', 'SECRET-4"x')),
        (r"""SELECT 'c\\', 'SECRET-5'""", ("c\\", "SECRET-5")),
    ],
    "NO_BACKSLASH_ESCAPES": [
        (r"SELECT 'C:\', 'SECRET-6'", ("C:\\", "SECRET-6")),
        (r'SELECT "D:\", "SECRET-7"', ("D:\\", "SECRET-7")),
        (r"SELECT 'it''s\', 'SECRET-8'", ("it's\\", "SECRET-8")),
    ],
    "ANSI_QUOTES": [
        (r"""SELECT "c\" FROM (SELECT 'SECRET-9\'' AS "c\") AS t""", ("SECRET-9'",)),
    ],
    "ANSI_QUOTES,NO_BACKSLASH_ESCAPES": [
        (r"""SELECT "c\" FROM (SELECT 'E:\' AS "c\") AS t WHERE 'SECRET-10' <> ''""", ("E:\\",)),
    ],
}
# Literals of every kind, in any mode.
_ANY_MODE: list[tuple[str, tuple[Any, ...] | None]] = [
    ("SELECT X'5345435245542D3131', 0x5345435245542D3132", (b"SECRET-11", b"SECRET-12")),
    ("SELECT b'0101001101000101', 918273645, -987654321, .31415e5", (b"SE", 918273645, -987654321, 31415.0)),
    ("SELECT 918273645.5from DUAL", (decimal.Decimal("918273645.5"),)),  # a number, then FROM
    ("SELECT 31415e2x FROM (SELECT 1 AS x) AS t", (3141500.0,)),  # a number, then its alias
    ("SELECT 1 /* SECRET-13 */, 2 -- SECRET-14\n", (1, 2)),
    ("SELECT 1 # SECRET-15", (1,)),
    ("SELECT _utf8mb4'SECRET-16' AS `alias'x`", ("SECRET-16",)),
    ("SELECT /*!100000 'SECRET-17', */ 1", ("SECRET-17", 1)),
]


@pytest.mark.parametrize("sql_mode", list(_INLINE))
async def test_no_literal_or_parameter_value_reaches_a_span_in_any_sql_mode(
    driver: str, make_pool: PoolFactory, spans: InMemorySpanExporter, sql_mode: str
) -> None:
    pool = await make_pool(minsize=1, maxsize=1, tracing=True, trace_statements=True)
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(f"SET SESSION sql_mode = '{sql_mode}'")
        for value in _PARAMETERS:
            await cur.execute("SELECT %s", (value,))
            (answer,) = await cur.fetchone()
            assert answer == (str(value) if isinstance(value, datetime.date) else value) or float(answer) == value
        for sql, expected in _INLINE[sql_mode] + _ANY_MODE:
            await cur.execute(sql)
            row = await cur.fetchone()
            # The server read each one as the literals the test says: it answers them back.
            assert tuple(bytes(v) if isinstance(v, (bytes, bytearray)) else v for v in row) == expected, sql
    exported = _exported(spans)
    assert [marker for marker in _SECRET_MARKERS if marker in exported] == []
    texts = [span.attributes.get("db.query.text", "") for span in spans.get_finished_spans()]
    ours = texts[texts.index("SET SESSION sql_mode = ?") + 1 :]
    assert len(ours) == len(_PARAMETERS) + len(_INLINE[sql_mode]) + len(_ANY_MODE)
    assert all(text.startswith("SELECT ") for text in ours)  # statements stay readable, literals go


async def test_the_review_case_a_windows_path_in_no_backslash_escapes_mode(
    driver: str, make_pool: PoolFactory, spans: InMemorySpanExporter
) -> None:
    pool = await make_pool(minsize=1, maxsize=1, tracing=True, trace_statements=True)
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES'")
        await cur.execute("SELECT 'C:\\', 'leaked-value'")
        assert await cur.fetchone() == ("C:\\", "leaked-value")
        await cur.execute("SET SESSION sql_mode = DEFAULT")
        with pytest.raises(db_errors.ProgrammingError):  # now one string, then words: a syntax error
            await cur.execute("SELECT 'C:\\', 'leaked-value'")
    texts = [span.attributes.get("db.query.text") for span in spans.get_finished_spans()]
    assert "SELECT ?, ?" in texts  # the NO_BACKSLASH_ESCAPES reading: two strings
    assert "SELECT ?leaked-value?" in texts  # the default reading: what the server saw outside strings


async def test_a_failed_statement_records_its_error(
    driver: str, make_pool: PoolFactory, spans: InMemorySpanExporter
) -> None:
    pool = await make_pool(minsize=1, tracing=True)
    async with pool.acquire() as conn, conn.cursor() as cur:
        with pytest.raises(db_errors.ProgrammingError):
            await cur.execute("SELEC 1")
    (failed,) = [s for s in spans.get_finished_spans() if s.attributes.get("db.operation.name") == "SELEC"]
    assert failed.status.status_code == trace.StatusCode.ERROR
    assert failed.attributes["error.type"] == "ProgrammingError"
    assert failed.attributes["db.response.status_code"] == "1064"


async def test_a_failure_never_records_the_servers_message_which_quotes_values(
    driver: str, make_pool: PoolFactory, spans: InMemorySpanExporter, admin: Any, mysql_server: Any
) -> None:
    table = f"`{mysql_server.db}`.traced_unique"
    query(admin, f"CREATE OR REPLACE TABLE {table} (email VARCHAR(64) PRIMARY KEY)")
    pool = await make_pool(minsize=1, tracing=True, trace_statements=True)
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("INSERT INTO traced_unique VALUES (%s)", ("SECRET-dup@example.com",))
        with pytest.raises(db_errors.IntegrityError, match=r"SECRET-dup@example\.com"):  # the server quotes it
            await cur.execute("INSERT INTO traced_unique VALUES (%s)", ("SECRET-dup@example.com",))
        with pytest.raises(db_errors.ProgrammingError, match="SECRET-near"):
            await cur.execute("SELECT %s FROM %s", ("x", "SECRET-near"))
        await conn.rollback()
    (duplicate,) = [s for s in spans.get_finished_spans() if s.attributes.get("db.response.status_code") == "1062"]
    assert duplicate.status.status_code == trace.StatusCode.ERROR
    assert duplicate.status.description == "IntegrityError 1062"
    assert "SECRET" not in _exported(spans)


async def test_no_spans_without_tracing(driver: str, make_pool: PoolFactory, spans: InMemorySpanExporter) -> None:
    pool = await make_pool(minsize=1)
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT 1")
    assert spans.get_finished_spans() == ()
    assert type(conn).__name__ == "Connection"


def test_sanitize_reads_the_text_in_the_sessions_mode() -> None:
    assert sanitize("SELECT * FROM t1 WHERE a = 'it''s' AND c = 0xFF AND d = -1.5e3 AND e = \"x\"") == (
        "SELECT * FROM t1 WHERE a = ? AND c = ? AND d = -? AND e = ?"
    )
    assert sanitize("INSERT INTO t VALUES (_binary'\\x00\\'', 42)") == "INSERT INTO t VALUES (_binary?, ?)"
    # A backslash ends nothing in NO_BACKSLASH_ESCAPES mode, and escapes the quote otherwise.
    assert sanitize("SELECT 'C:\\', 'x'", no_backslash_escapes=True) == "SELECT ?, ?"
    assert sanitize("SELECT 'C:\\', 'x'") == "SELECT ?x?"
    # Identifiers stay, comments go, quotes inside either start nothing.
    assert sanitize("SELECT `it's` FROM t2 -- it's\nWHERE b = 1 /* 'x */") == "SELECT `it's` FROM t2  \nWHERE b = ?  "
    # Where ANSI_QUOTES would read a double-quoted run otherwise, whatever either reading calls a literal goes.
    assert sanitize("SELECT \"a\\\" , 'x\"y' , 's'") == "SELECT ?"
    assert operation_name("  /* comment */ update t set a = 1") == "UPDATE"
    assert operation_name("(SELECT 1)") == ""
