"""``python -m bench.floor``: the physical floor, a ``SELECT 1`` round trip from a native client.

A few lines of C on the MariaDB client library (``libmariadb``, the library the ``mariadb`` command-line
client uses) run sequential ``SELECT 1`` round trips on one connection: send the query, read the result,
free it. What that costs is the server's work, the loopback TCP round trip and a few microseconds of client
CPU, with no interpreter and no event loop: no Python client can go below it. The program is compiled
on the fly with the system's C compiler, and the library's few functions are declared here, so no
development headers are needed.
"""

from __future__ import annotations

import argparse
import ctypes.util
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import fastapi_mysqlpool as mp

__all__ = ["Floor", "measure_floor"]

_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct st_mysql MYSQL;
typedef struct st_mysql_res MYSQL_RES;
MYSQL *mysql_init(MYSQL *);
MYSQL *mysql_real_connect(MYSQL *, const char *, const char *, const char *, const char *, unsigned int,
                          const char *, unsigned long);
int mysql_real_query(MYSQL *, const char *, unsigned long);
MYSQL_RES *mysql_store_result(MYSQL *);
char **mysql_fetch_row(MYSQL_RES *);
void mysql_free_result(MYSQL_RES *);
const char *mysql_error(MYSQL *);
void mysql_close(MYSQL *);

static double now(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* argv: host user password database port queries rounds. Prints, per round, wall and CPU seconds. */
int main(int argc, char **argv) {
    if (argc != 8) return 2;
    MYSQL *conn = mysql_init(NULL);
    if (!mysql_real_connect(conn, argv[1], argv[2], argv[3], argv[4], atoi(argv[5]), NULL, 0)) {
        fprintf(stderr, "%s\n", mysql_error(conn));
        return 1;
    }
    int queries = atoi(argv[6]), rounds = atoi(argv[7]);
    for (int round = 0; round < rounds; round++) {
        double wall = now(CLOCK_MONOTONIC), cpu = now(CLOCK_PROCESS_CPUTIME_ID);
        for (int i = 0; i < queries; i++) {
            if (mysql_real_query(conn, "SELECT 1", 8)) {
                fprintf(stderr, "%s\n", mysql_error(conn));
                return 1;
            }
            MYSQL_RES *result = mysql_store_result(conn);
            if (result == NULL || mysql_fetch_row(result) == NULL) {
                fprintf(stderr, "no row: %s\n", mysql_error(conn));
                return 1;
            }
            mysql_free_result(result);
        }
        printf("%.9f %.9f\n", now(CLOCK_MONOTONIC) - wall, now(CLOCK_PROCESS_CPUTIME_ID) - cpu);
    }
    mysql_close(conn);
    return 0;
}
"""


@dataclass
class Floor:
    """Median per-query figures of the native client over its rounds: wall and client CPU microseconds."""

    wall_us: float
    cpu_us: float
    queries: int
    rounds: int

    @property
    def ops(self) -> float:
        return 1e6 / self.wall_us

    def to_json(self) -> dict[str, float]:
        return {"wall_us": self.wall_us, "cpu_us": self.cpu_us, "ops": self.ops, "queries": self.queries}


def _library() -> str | None:
    found = ctypes.util.find_library("mariadb")
    if found is None:
        return None
    for folder in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"):
        path = Path(folder) / found
        if path.exists():
            return str(path)
    return None


def measure_floor(dsn: str, *, queries: int = 5000, rounds: int = 7) -> Floor | str:
    """The native client's figures, or why they could not be measured (no compiler, no library)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    library = _library()
    if compiler is None or library is None:
        return "not measured: needs a C compiler and libmariadb (Debian: gcc, libmariadb3)"
    kwargs = mp.parse_dsn(dsn).connect_kwargs
    with tempfile.TemporaryDirectory() as folder:
        source, program = Path(folder) / "floor.c", Path(folder) / "floor"
        source.write_text(_SOURCE)
        subprocess.run([compiler, "-O2", "-o", str(program), str(source), library], check=True, capture_output=True)
        done = subprocess.run(
            [str(program), kwargs["host"], kwargs["user"], kwargs.get("password", ""), kwargs.get("db") or "",
             str(kwargs.get("port", 3306)), str(queries), str(rounds)],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        return f"not measured: the native client failed ({done.stderr.strip()[-200:]})"
    samples = [tuple(float(x) for x in line.split()) for line in done.stdout.splitlines()]
    return Floor(
        wall_us=statistics.median(wall for wall, _ in samples) / queries * 1e6,
        cpu_us=statistics.median(cpu for _, cpu in samples) / queries * 1e6,
        queries=queries,
        rounds=rounds,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--dsn", help="use this server instead of starting a throwaway one")
    parser.add_argument("--queries", type=int, default=20000, help="round trips per round")
    args = parser.parse_args(argv)
    if args.dsn is not None:
        floor = measure_floor(args.dsn, queries=args.queries)
    else:
        from fastapi_mysqlpool.testing import MySQLServer

        with MySQLServer() as server:
            floor = measure_floor(server.dsn, queries=args.queries)
    if isinstance(floor, str):
        print(floor)
        return 1
    print(
        f"native client (libmariadb): SELECT 1 round trip {floor.wall_us:.1f} µs wall, {floor.cpu_us:.1f} µs client "
        f"CPU, {floor.ops:,.0f} ops/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
