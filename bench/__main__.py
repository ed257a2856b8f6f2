"""``python -m bench``: start a throwaway server, run every benchmark, write docs/benchmarks.md."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import shlex
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pymysql

import fastapi_mysqlpool as mp
from fastapi_mysqlpool.testing import MySQLServer

from .deps import DepsResults, run_deps_bench
from .floor import Floor, measure_floor
from .http import HttpResults, run_http_bench
from .pool import LOOPS, PoolResults, run_on, run_pool_bench
from .report import load_average, machine_info, render, targets, write_region

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one short round of everything: a smoke run")
    parser.add_argument("--rounds", type=int, help="pool rounds (default 7, quick 1)")
    parser.add_argument("--pool-seconds", type=float, help="seconds per pool measurement (default 0.5, quick 0.05)")
    parser.add_argument("--http-rounds", type=int, help="HTTP rounds (default 5, quick 1)")
    parser.add_argument("--http-seconds", type=float, help="seconds per wrk run (default 10, quick 1)")
    parser.add_argument("--warmup", type=float, help="seconds of wrk warm-up per app (default 3, quick 0)")
    parser.add_argument("--deps-requests", type=int, help="requests per dependency round (default 2000, quick 50)")
    parser.add_argument("--only", choices=("pool", "deps", "http"), help="run one of the benchmarks")
    parser.add_argument("--dsn", help="use this server instead of starting a throwaway one")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="markdown file to update")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    return parser


@contextlib.contextmanager
def _server(dsn: str | None) -> Iterator[str]:
    if dsn is not None:
        yield dsn
        return
    with MySQLServer() as server:
        yield server.dsn


def _server_version(dsn: str) -> str:
    kwargs = mp.parse_dsn(dsn).connect_kwargs
    kwargs["database"] = kwargs.pop("db", None)
    conn = pymysql.connect(**kwargs)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            (version,) = cur.fetchone()
    finally:
        conn.close()
    return f"MySQL/MariaDB {version}"


def _command(argv: list[str]) -> str:
    """The command line as run, with the DSN's password masked."""
    shown = []
    for i, arg in enumerate(argv):
        if i > 0 and argv[i - 1] == "--dsn":
            arg = mp.mask_dsn(arg)
        elif arg.startswith("--dsn="):
            arg = "--dsn=" + mp.mask_dsn(arg.removeprefix("--dsn="))
        shown.append(arg)
    return "python -m bench " + shlex.join(shown) if shown else "python -m bench"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    quick = args.quick

    def pick(value: float | None, full: float, short: float) -> float:
        return value if value is not None else short if quick else full

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    load_before = load_average()
    pool: dict[str, PoolResults] | None = None
    floor: Floor | str | None = None
    deps: DepsResults | None = None
    http: dict[str, HttpResults] | None = None
    with _server(args.dsn) as dsn:
        server = _server_version(dsn)
        if args.only in (None, "pool"):
            log("native client floor")
            floor = measure_floor(dsn, queries=300 if quick else 5000, rounds=3 if quick else 7)
            pool = {}
            for loop in LOOPS:
                if loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
                    log("pool micro-benchmark on uvloop: skipped, uvloop not installed (pip install uvloop)")
                    continue
                log(f"pool micro-benchmark on {loop}")
                pool[loop] = run_on(
                    loop,
                    run_pool_bench(
                        dsn,
                        rounds=int(pick(args.rounds, 7, 1)),
                        seconds=pick(args.pool_seconds, 0.5, 0.05),
                        warmup=not quick,
                        log=log,
                    ),
                )
        if args.only in (None, "deps"):
            log("dependency cost, in-process")
            deps = asyncio.run(
                run_deps_bench(
                    dsn,
                    rounds=int(pick(args.rounds, 7, 1)),
                    requests=int(pick(args.deps_requests, 2000, 50)),
                    log=log,
                )
            )
        if args.only in (None, "http"):
            log("HTTP benchmark")
            http = run_http_bench(
                dsn,
                rounds=int(pick(args.http_rounds, 5, 1)),
                seconds=pick(args.http_seconds, 10, 1),
                warmup=pick(args.warmup, 3, 0),
                log=log,
            )
    command = _command(list(argv if argv is not None else sys.argv[1:]))
    generated = render(machine_info(server, load_before), pool, deps, http, command, floor)
    write_region(args.output, generated)
    print(generated)
    if args.json is not None:
        found = targets(pool, http)
        figures = {
            "pool": {loop: results.to_json() for loop, results in pool.items()} if pool else None,
            "floor": floor.to_json() if isinstance(floor, Floor) else floor,
            "deps": deps.to_json() if deps else None,
            "http": {key: results.to_json() for key, results in http.items()} if http else None,
            "targets": [
                {
                    "goal": t.goal,
                    "wanted": t.wanted,
                    "measured": t.measured,
                    "met": t.met,
                    "issue": t.issue,
                    "cpu": t.cpu,
                }
                for t in found
            ],
        }
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
