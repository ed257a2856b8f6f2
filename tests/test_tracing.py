"""OpenTelemetry spans, collected with the SDK's in-memory exporter: per acquire and per statement."""

from __future__ import annotations

from collections.abc import Iterator

import pymysql
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fastapi_mysqlpool._tracing import operation_name, sanitize
from tests.conftest import PoolFactory

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


async def test_a_span_per_acquire_and_per_statement_with_the_semantic_attributes(
    make_pool: PoolFactory, spans: InMemorySpanExporter, mysql_server: object
) -> None:
    pool = await make_pool(minsize=1, tracing=True)
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("GET /items") as request:
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute("SELECT %s, 'secret-value'", ("parameter-value",))
    finished = {span.name: span for span in spans.get_finished_spans()}
    query = finished[f"SELECT {mysql_server.db}"]  # type: ignore[attr-defined]
    acquire = finished["acquire"]
    for span in (query, acquire):
        assert span.parent is not None and span.parent.span_id == request.get_span_context().span_id
        assert span.kind == trace.SpanKind.CLIENT
        assert span.attributes["db.system.name"] == "mariadb"
        assert span.attributes["server.address"] == mysql_server.host  # type: ignore[attr-defined]
        assert span.attributes["server.port"] == mysql_server.port  # type: ignore[attr-defined]
        assert span.attributes["db.namespace"] == mysql_server.db  # type: ignore[attr-defined]
    assert query.attributes["db.operation.name"] == "SELECT"
    assert "db.query.text" not in query.attributes  # opt-in
    assert acquire.attributes["db.client.connection.pool.name"] == pool.name


async def test_statement_text_is_opt_in_and_never_holds_parameter_values(
    make_pool: PoolFactory, spans: InMemorySpanExporter
) -> None:
    pool = await make_pool(minsize=1, tracing=True, trace_statements=True)
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT %s, %s FROM DUAL WHERE 1 = %s", ("parameter-value", 12345, 1))
    texts = [span.attributes.get("db.query.text") for span in spans.get_finished_spans()]
    assert "SELECT ?, ? FROM DUAL WHERE ? = ?" in texts
    assert not any("parameter-value" in str(t) or "12345" in str(t) for t in texts)


async def test_a_failed_statement_records_its_error(make_pool: PoolFactory, spans: InMemorySpanExporter) -> None:
    pool = await make_pool(minsize=1, tracing=True)
    async with pool.acquire() as conn, conn.cursor() as cur:
        with pytest.raises(pymysql.err.ProgrammingError):
            await cur.execute("SELEC 1")
    (failed,) = [s for s in spans.get_finished_spans() if s.attributes.get("db.operation.name") == "SELEC"]
    assert failed.status.status_code == trace.StatusCode.ERROR
    assert failed.attributes["error.type"] == "ProgrammingError"
    assert failed.attributes["db.response.status_code"] == "1064"


async def test_no_spans_without_tracing(make_pool: PoolFactory, spans: InMemorySpanExporter) -> None:
    pool = await make_pool(minsize=1)
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT 1")
    assert spans.get_finished_spans() == ()
    assert type(conn).__name__ == "Connection"


def test_sanitize_and_operation_name() -> None:
    assert sanitize("SELECT * FROM t1 WHERE a = 'it''s' AND b = \"x\\\"y\" AND c = 0xFF AND d = -1.5e3") == (
        "SELECT * FROM t1 WHERE a = ? AND b = ? AND c = ? AND d = ?"
    )
    assert sanitize("INSERT INTO t VALUES (_binary'\\x00\\'', 42)") == "INSERT INTO t VALUES (_binary?, ?)"
    assert operation_name("  /* comment */ update t set a = 1") == "UPDATE"
    assert operation_name("(SELECT 1)") == ""
