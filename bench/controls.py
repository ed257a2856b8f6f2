"""``python -m bench.controls``: what hooks and tracing cost on the hot path, against a throwaway server.

Each variant runs ``async with pool.acquire()`` plus one ``SELECT 1`` in a loop, best of five runs.
Wall-clock on a shared machine: differences below a few percent are noise.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import fastapi_mysqlpool as mp
from fastapi_mysqlpool.testing import MySQLServer

__all__ = ["VARIANTS", "main"]


async def _noop(conn: Any) -> None:
    return None


VARIANTS: dict[str, dict[str, Any]] = {
    "plain (no hooks, tracing off)": {},
    "configure + check hooks set": {"configure": _noop, "check": _noop},
    "reset hook set (runs on every release)": {"reset": _noop},
    "max_statement_time pool-wide": {"max_statement_time": 5.0},
    "tracing on, no SDK (API no-op spans)": {"tracing": True},
    "tracing on, SDK + in-memory exporter": {"tracing": True, "_sdk": True},
}


async def _run(dsn: str, options: dict[str, Any], operations: int) -> float:
    options = dict(options)
    options.pop("_sdk", None)
    async with mp.create_pool(dsn=dsn, minsize=1, maxsize=1, **options) as pool:
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(operations):
                async with pool.acquire() as conn, conn.cursor() as cur:
                    await cur.execute("SELECT 1")
                    await cur.fetchone()
            best = min(best, time.perf_counter() - started)
    return best / operations * 1e6


def _install_sdk() -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    trace.set_tracer_provider(provider)


def main(operations: int = 3000) -> int:
    with MySQLServer() as server:
        results = {}
        for title, options in VARIANTS.items():
            if options.get("_sdk"):
                _install_sdk()  # last: the global provider cannot be unset
            results[title] = asyncio.run(_run(server.dsn, options, operations))
    plain = results["plain (no hooks, tracing off)"]
    print("| Pool | µs per operation | vs plain |")
    print("|---|---:|---:|")
    for title, value in results.items():
        print(f"| {title} | {value:.1f} | {value / plain:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
