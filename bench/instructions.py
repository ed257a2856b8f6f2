"""``python -m bench.instructions``: client CPU instructions per operation, counted by callgrind.

Wall-clock and CPU-time figures on a shared machine move by several percent from run to run,
which is the size of the effects worth knowing about on the query path. Instruction counts
move much less: ``valgrind --tool=callgrind`` counts what this process executes (not the
kernel, not the server), whatever else the machine is doing. They still vary by a few percent
between runs, because the I/O timing decides how often the event loop goes round.

Each variant runs in a child process under callgrind twice, with a short and a long loop; the
difference divided by the extra operations is the cost of one operation, free of start-up.
The figures count user-space instructions only: the system calls a query makes (a send, a
receive, an epoll wait) cost kernel time that callgrind does not see and that every variant
pays alike. Nor do they show how fast the instructions run: code that runs right after a
system call finds cold caches, so the pool's instructions cost more time between queries than
in a tight acquire/release loop.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiomysql
import asyncmy

import fastapi_mysqlpool as mp
from fastapi_mysqlpool import _asyncmy
from fastapi_mysqlpool._aiomysql import Connection
from fastapi_mysqlpool.testing import MySQLServer

from .pool import LOOPS, run_on

__all__ = ["VARIANTS", "count_instructions", "main"]

_ROOT = Path(__file__).resolve().parent.parent

#: (key, what one operation is).
VARIANTS = (
    ("aiomysql_connection", "SELECT 1 on a raw aiomysql connection"),
    ("our_connection", "SELECT 1 on the pool's connection class, used raw"),
    ("our_pool", "acquire + SELECT 1 + release, fastapi_mysqlpool"),
    ("aiomysql_pool", "acquire + SELECT 1 + release, aiomysql's pool"),
    ("our_pool_no_query", "acquire + release, fastapi_mysqlpool"),
    ("aiomysql_pool_no_query", "acquire + release, aiomysql's pool"),
    ("asyncmy_connection", "SELECT 1 on a raw asyncmy connection"),
    ("our_asyncmy_connection", "SELECT 1 on the pool's asyncmy connection class, used raw"),
    ("our_pool_asyncmy", "acquire + SELECT 1 + release, fastapi_mysqlpool on asyncmy"),
    ("asyncmy_pool", "acquire + SELECT 1 + release, asyncmy's pool"),
    ("our_pool_asyncmy_no_query", "acquire + release, fastapi_mysqlpool on asyncmy"),
    ("asyncmy_pool_no_query", "acquire + release, asyncmy's pool"),
)
#: The raw connection each variant's figure is compared with.
_FLOOR = {"aiomysql": "aiomysql_connection", "asyncmy": "asyncmy_connection"}


async def _select1(conn: Any) -> None:
    async with conn.cursor() as cur:
        await cur.execute("SELECT 1")
        await cur.fetchone()


async def _run(variant: str, dsn: str, operations: int) -> None:
    """The workload of one variant: ``operations`` operations after a short warm-up."""
    kwargs = mp.parse_dsn(dsn).connect_kwargs
    conn: Any = None
    if variant in ("aiomysql_connection", "our_connection"):
        conn = (aiomysql.Connection if variant == "aiomysql_connection" else Connection)(**kwargs)
        await conn._connect()
    elif variant in ("asyncmy_connection", "our_asyncmy_connection"):
        conn = (asyncmy.Connection if variant == "asyncmy_connection" else _asyncmy.Connection)(**kwargs)
        await conn.connect()
    if conn is not None:
        try:
            for _ in range(20 + operations):
                await _select1(conn)
        finally:
            await conn.ensure_closed()
        return
    pool: Any
    if variant.startswith("our_pool_asyncmy"):
        pool = await mp.create_pool(dsn=dsn, driver="asyncmy")
    elif variant.startswith("our_"):
        pool = await mp.create_pool(dsn=dsn)
    elif variant.startswith("asyncmy_"):
        pool = await asyncmy.create_pool(**kwargs, minsize=1, maxsize=10)
    else:
        pool = await aiomysql.create_pool(**kwargs, minsize=1, maxsize=10)
    try:
        query = not variant.endswith("_no_query")
        for _ in range(20 + operations):
            async with pool.acquire() as conn:
                if query:
                    await _select1(conn)
    finally:
        pool.close()
        await pool.wait_closed()


def _counted(variant: str, dsn: str, operations: int, loop: str) -> int:
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, "-m", "bench.instructions", "--child", variant, "--dsn", dsn, "--operations", str(operations),
        "--loop", loop,
    ]  # fmt: skip
    # valgrind follows the system allocator far better than Python's own arenas; a fixed
    # hash seed keeps dict and set layouts, and so the instruction count, the same run to run.
    env = {**os.environ, "PYTHONMALLOC": "malloc", "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, cwd=_ROOT, capture_output=True, text=True, env=env, check=False)
    found = re.search(r"Collected\s*:\s*(\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run of {variant} failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def count_instructions(
    dsn: str, variants: Sequence[str], *, loop: str = "asyncio", short: int = 200, long: int = 1200
) -> dict[str, float]:
    """Instructions per operation of each variant (callgrind, long run minus short run)."""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: sudo apt-get install valgrind")
    return {
        variant: (_counted(variant, dsn, long, loop) - _counted(variant, dsn, short, loop)) / (long - short)
        for variant in variants
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--dsn", help="use this server instead of starting a throwaway one")
    parser.add_argument("--operations", type=int, default=1000, help="operations per run (child mode)")
    parser.add_argument("--loop", choices=LOOPS, default="asyncio", help="the event loop (default asyncio)")
    parser.add_argument("--driver", choices=tuple(_FLOOR), help="only the variants of this driver")
    parser.add_argument("--child", choices=[v for v, _ in VARIANTS], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        run_on(args.loop, _run(args.child, args.dsn, args.operations))
        return 0
    drivers = [args.driver] if args.driver else list(_FLOOR)
    chosen = [(v, title) for v, title in VARIANTS if _driver_of(v) in drivers]
    if args.dsn is not None:
        counts = count_instructions(args.dsn, [v for v, _ in chosen], loop=args.loop)
    else:
        with MySQLServer() as server:
            counts = count_instructions(server.dsn, [v for v, _ in chosen], loop=args.loop)
    print(f"On {args.loop}:")
    print()
    print("| operation | instructions | vs SELECT 1 on the same driver's raw connection |")
    print("|---|---:|---:|")
    for variant, title in chosen:
        floor = counts[_FLOOR[_driver_of(variant)]]
        print(f"| {title} | {counts[variant]:,.0f} | {counts[variant] / floor:.2f}x |")
    return 0


def _driver_of(variant: str) -> str:
    return "asyncmy" if "asyncmy" in variant else "aiomysql"


if __name__ == "__main__":
    sys.exit(main())
