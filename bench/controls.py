"""``python -m bench.controls``: what hooks and tracing cost on the hot path, against a throwaway server.

Each variant is measured two ways: ``async with pool.acquire()`` alone (acquire and release), and with one
``SELECT 1`` inside. The variants of a phase run in interleaved rounds (every variant once per round, so
that a slow spell of the shared machine hits them all alike); each figure is the best round, as wall-clock
and as this process's CPU time (what the pool itself spends, which a busy machine or a slow server does not
inflate as much). Three phases,
because a process can only go one way:

1. in a process of its own, an import hook refuses the pool's tracing module and the OpenTelemetry SDK, as
   if the extra were not installed. (The OpenTelemetry API itself cannot be absent where FastAPI 0.165+ is:
   FastAPI depends on it. A pool without ``tracing=True`` never touches it either way.)
2. the extra importable: tracing off, hooks set, a per-acquire statement limit, tracing on with the API's
   no-op spans (no SDK provider set);
3. the SDK's provider set, recording every span and handing it to an exporter that drops it (a provider
   cannot be unset, so this comes last).

Wall-clock on a shared machine: differences below a few percent are noise.
"""

from __future__ import annotations

import asyncio
import importlib.abc
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import fastapi_mysqlpool as mp

__all__ = ["PHASES", "main", "without_opentelemetry"]


async def _noop(conn: Any) -> None:
    return None


_HOOKS = {"configure": _noop, "check": _noop, "reset": _noop}
#: Per phase, the variants: (title, pool options, per-acquire options).
PHASES: dict[str, list[tuple[str, dict[str, Any], dict[str, Any]]]] = {
    "extra not installed": [("tracing extra not installed", {}, {})],
    "extra installed": [
        ("plain (no hooks, tracing off)", {}, {}),
        ("configure + check hooks set", {"configure": _noop, "check": _noop}, {}),
        ("configure + check + reset hooks set", _HOOKS, {}),
        ("acquire(max_statement_time=5)", {}, {"max_statement_time": 5.0}),
        ("tracing on, no SDK (API no-op spans)", {"tracing": True}, {}),
    ],
    "SDK provider set": [("tracing on, SDK recording every span", {"tracing": True}, {})],
}


class _RefuseOpenTelemetry(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None, target: Any = None) -> None:
        if fullname == "fastapi_mysqlpool._tracing" or fullname.startswith("opentelemetry.sdk"):
            raise ImportError(f"{fullname} is refused: the extra counts as not installed")
        return


async def _round(pool: mp.Pool, acquire: dict[str, Any], operations: int, query: bool) -> tuple[float, float]:
    """Wall-clock and this process's CPU time per operation, in µs."""
    started, cpu = time.perf_counter(), time.process_time()
    if query:
        for _ in range(operations):
            async with pool.acquire(**acquire) as conn, conn.cursor() as cur:
                await cur.execute("SELECT 1")
                await cur.fetchone()
    else:
        for _ in range(operations):
            async with pool.acquire(**acquire):
                pass
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return wall / operations * 1e6, cpu / operations * 1e6


#: Per variant, the best of its rounds: acquire+release (wall, CPU), then acquire + SELECT 1 (wall, CPU).
Figures = tuple[float, float, float, float]


async def _phase(
    dsn: str, variants: list[tuple[str, dict[str, Any], dict[str, Any]]], operations: int, rounds: int
) -> dict[str, Figures]:
    import fastapi_mysqlpool as mp

    pools = [await mp.create_pool(dsn=dsn, minsize=1, maxsize=1, **options) for _, options, _ in variants]
    best = {title: [float("inf")] * 4 for title, _, _ in variants}
    try:
        for pool, (_, _, acquire) in zip(pools, variants, strict=True):  # warm up
            await _round(pool, acquire, operations // 10, True)
        for _ in range(rounds):
            for pool, (title, _, acquire) in zip(pools, variants, strict=True):
                for index, query in enumerate((False, True)):
                    wall, cpu = await _round(pool, acquire, operations, query)
                    figures = best[title]
                    figures[2 * index] = min(figures[2 * index], wall)
                    figures[2 * index + 1] = min(figures[2 * index + 1], cpu)
    finally:
        for pool in pools:
            pool.close()
            await pool.wait_closed()
    return {title: (f[0], f[1], f[2], f[3]) for title, f in best.items()}


def _install_sdk() -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        # Every span is recorded and handed over, then dropped: an exporter that kept them all would measure the
        # memory they take, not the pool.
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Discard()))
    trace.set_tracer_provider(provider)


def without_opentelemetry(dsn: str, operations: int, rounds: int) -> None:
    """Phase 1, in a process of its own: print its figures as JSON."""
    sys.meta_path.insert(0, _RefuseOpenTelemetry())
    results = asyncio.run(_phase(dsn, PHASES["extra not installed"], operations, rounds))
    imported = sorted(
        name for name in sys.modules if name.startswith(("opentelemetry.sdk", "fastapi_mysqlpool._tracing"))
    )
    if imported:
        raise RuntimeError(f"imported although refused: {imported}")
    print(json.dumps(results))


def main(operations: int = 2000, rounds: int = 7) -> int:
    from fastapi_mysqlpool.testing import MySQLServer

    results: dict[str, Figures] = {}
    with MySQLServer() as server:
        child = (
            "import sys; from bench.controls import without_opentelemetry; "
            "without_opentelemetry(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))"
        )
        out = subprocess.run(
            [sys.executable, "-c", child, server.dsn, str(operations), str(rounds)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        results |= {title: (f[0], f[1], f[2], f[3]) for title, f in json.loads(out.splitlines()[-1]).items()}
        results |= asyncio.run(_phase(server.dsn, PHASES["extra installed"], operations, rounds))
        _install_sdk()
        results |= asyncio.run(_phase(server.dsn, PHASES["SDK provider set"], operations, rounds))
    plain = results["plain (no hooks, tracing off)"]
    print(
        "| Pool | acquire+release: wall µs | CPU µs | vs plain (CPU) "
        "| acquire + SELECT 1: wall µs | CPU µs | vs plain (CPU) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for title, (wall, cpu, query_wall, query_cpu) in results.items():
        print(
            f"| {title} | {wall:.1f} | {cpu:.1f} | {cpu / plain[1]:.2f}x "
            f"| {query_wall:.1f} | {query_cpu:.1f} | {query_cpu / plain[3]:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
