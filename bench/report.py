"""The generated part of docs/benchmarks.md: machine, versions, tables, ratios and targets.

Only the region between the two markers is rewritten; the analysis around it is prose
kept by hand and survives every run.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .deps import VARIANTS, DepsResults
from .floor import Floor
from .http import APPS, CONNECTIONS, THREADS, HttpResults, wrk_binary
from .pool import MAXSIZE, METRICS, TASKS, PoolResults

__all__ = ["END", "START", "Machine", "Target", "machine_info", "render", "targets", "write_region"]

START = "<!-- bench:start -->"
END = "<!-- bench:end -->"

OURS = "ours on aiomysql"
OURS_ASYNCMY = "ours on asyncmy"
AIOMYSQL = "aiomysql's pool"
ASYNCMY = "asyncmy's pool"
RAW = "raw aiomysql"
RAW_ASYNCMY = "raw asyncmy"
NO_DRIVER = "raw asyncio, no driver"
HTTP_NODB, HTTP_NODRIVER, HTTP_HANDWRITTEN, HTTP_OURS, HTTP_OURS_ASYNCMY, HTTP_SQLALCHEMY = (label for _, label in APPS)
_PACKAGES = (
    "fastapi-mysqlpool", "aiomysql", "PyMySQL", "asyncmy", "SQLAlchemy", "fastapi", "starlette", "uvicorn",
    "uvloop", "httptools", "h11",
)  # fmt: skip


@dataclass
class Machine:
    cpu: str
    cores: int
    load_before: str
    load_after: str
    os: str
    python: str
    server: str
    wrk: str
    versions: dict[str, str]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _wrk_version() -> str:
    try:
        done = subprocess.run([wrk_binary(), "--version"], capture_output=True, text=True, check=False)
    except (OSError, RuntimeError):
        return "not installed"
    return (done.stdout or done.stderr).split(" Copyright")[0].strip()


def machine_info(server_version: str, load_before: str) -> Machine:
    versions = {}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return Machine(
        cpu=_cpu_model(),
        cores=os.cpu_count() or 0,
        load_before=load_before,
        load_after=load_average(),
        os=f"{platform.system()} {platform.release()}",
        python=f"{platform.python_implementation()} {sys.version.split()[0]}",
        server=server_version,
        wrk=_wrk_version(),
        versions=versions,
    )


def _first_figure(load: str) -> float:
    """The 1-minute figure of a `load_average` string, 0 when there is none."""
    try:
        return float(load.split("/")[0])
    except ValueError:
        return 0.0


@dataclass
class Target:
    """One same-run ratio and the least it should be (higher is better for each); ``issue`` names where it
    was set: the current targets first, the earlier ones after. Met or missed by the ratio of rates; the ratio of
    client CPU beside it shows how much of a miss the machine's load may explain."""

    goal: str
    wanted: float
    measured: float | None
    issue: str = "14"
    #: The same ratio in client CPU per operation, where it applies (the pool's targets).
    cpu: float | None = None

    @property
    def met(self) -> bool:
        return self.measured is not None and self.measured >= self.wanted


#: The pool's targets: (goal, wanted, contender, metric, baseline).
_POOL_TARGETS = (
    ("asyncmy: sequential SELECT 1, ours on asyncmy / asyncmy's pool", 1.1, OURS_ASYNCMY, "select1", ASYNCMY),
    ("asyncmy: 64 tasks on 10 connections, ours on asyncmy / asyncmy's pool", 1.1, OURS_ASYNCMY, "concurrent",
     ASYNCMY),
    # Within 2x of asyncmy's time per cycle: at least half its rate.
    ("asyncmy: acquire+release, ours on asyncmy / asyncmy's pool (0.5x: within 2x)", 0.5, OURS_ASYNCMY,
     "acquire_release", ASYNCMY),
    ("aiomysql: 64 tasks on 10 connections, ours on aiomysql / aiomysql's pool", 1.5, OURS, "concurrent", AIOMYSQL),
    ("aiomysql: sequential SELECT 1, ours on aiomysql / raw aiomysql", 1.2, OURS, "select1", RAW),
    ("acquire+release: ours on aiomysql / aiomysql's pool", 5.0, OURS, "acquire_release", AIOMYSQL),
)  # fmt: skip


def _pool_targets(pool: PoolResults) -> list[Target]:
    return [
        Target(f"{goal} ({pool.loop})", wanted, pool.ratio(mine, metric, theirs),
               cpu=pool.cpu_ratio(mine, metric, theirs))
        for goal, wanted, mine, metric, theirs in _POOL_TARGETS
    ]  # fmt: skip


def targets(pool: Mapping[str, PoolResults] | None, http: Mapping[str, HttpResults] | None) -> list[Target]:
    """The targets, as same-run ratios: the pool's on every event loop that ran, the HTTP ones under
    every uvicorn configuration that ran; the earlier HTTP targets last."""
    found: list[Target] = []
    for results in (pool or {}).values():
        found += _pool_targets(results)
    earlier: list[Target] = []
    for results in (http or {}).values():
        server = f" ({results.server})"
        found += [
            Target("HTTP rps: Depends(get_conn) / no database" + server, 0.55, results.ratio(HTTP_OURS, HTTP_NODB)),
            Target(
                "HTTP rps: Depends(get_conn) on asyncmy / no database" + server,
                0.55,
                results.ratio(HTTP_OURS_ASYNCMY, HTTP_NODB),
            ),
        ]
        p99_ours, p99_theirs = results.median(HTTP_OURS, "p99"), results.median(HTTP_HANDWRITTEN, "p99")
        earlier += [
            Target(
                "HTTP rps: Depends(get_conn) / hand-written" + server,
                1.0,
                results.ratio(HTTP_OURS, HTTP_HANDWRITTEN),
                "earlier",
            ),
            Target(
                "HTTP p99: hand-written / Depends(get_conn) (>= 1: no worse)" + server,
                1.0,
                p99_theirs / p99_ours if p99_ours and p99_theirs else None,
                "earlier",
            ),
            Target(
                "HTTP rps: Depends(get_conn) / SQLAlchemy" + server,
                3.0,
                results.ratio(HTTP_OURS, HTTP_SQLALCHEMY),
                "earlier",
            ),
        ]
    return found + earlier


def _num(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1e3:.2f}"


def _total(http: HttpResults, label: str, counter: str) -> str:
    return str(sum(getattr(run, counter) for run in http.runs.get(label, [])))


def _cycle_us(pool: PoolResults, contender: str) -> str:
    ops = pool.median(contender, "acquire_release")
    return "n/a" if ops is None else f"{1e6 / ops:.2f} µs"


def _pool_table(pools: Mapping[str, PoolResults]) -> list[str]:
    """The workloads (one row per event loop) against the contenders (one column each)."""
    first = next(iter(pools.values()))
    contenders = list(first.samples)
    header = ["| |", *(f" {name} |" for name in contenders)]
    rule = "|---|" + "---:|" * len(contenders)
    lines = [
        f"### Pool micro-benchmark ({first.rounds} interleaved rounds of {first.seconds:g} s per measurement; medians)",
        "",
        "".join(header),
        rule,
    ]
    for metric, title in METRICS:
        for loop, pool in pools.items():
            if metric == "acquire_release":
                cells = [_cycle_us(pool, name) if pool.median(name, metric) else "" for name in contenders]
                label = f"{title} ({loop}), time per cycle"
            else:
                cells = [_num(pool.median(name, metric)) for name in contenders]
                label = f"{title} ({loop}), ops/s"
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Client CPU per operation (this process only, median µs; steadier than ops/s on a busy machine):",
        "",
        "".join(header),
        rule,
    ]
    for metric, title in METRICS:
        for loop, pool in pools.items():
            cells = [_num(pool.cpu_us(name, metric), 1) if pool.cpu_us(name, metric) else "" for name in contenders]
            lines.append(f"| {title} ({loop}) | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Pools hold at most {MAXSIZE} connections; {TASKS} tasks share them. The raw connections have nothing to "
        f"acquire; in the {TASKS}-task workload the tasks take turns on the single connection.",
    ]
    for loop, pool in pools.items():
        lines.append(
            f"Driver alone ({loop}), SELECT 1 on a raw connection: asyncmy / aiomysql = "
            f"{_ratio(pool.ratio(RAW_ASYNCMY, 'select1', RAW))}."
        )
    for loop, pool in pools.items():
        sequential, shared = pool.cpu_us(NO_DRIVER, "select1"), pool.cpu_us(NO_DRIVER, "concurrent")
        if sequential is None or shared is None:
            continue
        lines.append(
            f"No driver ({loop}): a query written to the socket and its reply read costs {sequential:.1f} µs of "
            f"client CPU sequentially and {shared:.1f} µs in the {TASKS}-task workload, the event loop's and the "
            "system calls' share that every column pays; the rest of each column is its driver and pool."
        )
    return lines


def _http_table(http: HttpResults) -> list[str]:
    lines = [
        f"### HTTP benchmark, {http.server} (`wrk -c{CONNECTIONS} -t{THREADS} -d{max(1, round(http.seconds))}s "
        f"--latency`, {http.rounds} interleaved rounds; medians)",
        "",
        "| app | requests/s | p50 ms | p99 ms | vs hand-written | vs ceiling | socket errors | non-2xx |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for _, label in APPS:
        if label in http.failures:
            lines.append(f"| {label} | failed to start | | | | | | |")
            continue
        lines.append(
            f"| {label} | {_num(http.median(label, 'rps'))} | {_ms(http.median(label, 'p50'))} | "
            f"{_ms(http.median(label, 'p99'))} | {_ratio(http.ratio(label, HTTP_HANDWRITTEN))} | "
            f"{_ratio(http.ratio(label, HTTP_NODB))} | {_total(http, label, 'errors')} | "
            f"{_total(http, label, 'non_2xx')} |"
        )
    bound, ours = http.ratio(HTTP_NODRIVER, HTTP_NODB), http.ratio(HTTP_OURS, HTTP_NODRIVER)
    if bound is not None and ours is not None:
        lines += [
            "",
            f"The bound: with no driver, no pool and no dependency, a request with the query serves "
            f"{_ratio(bound)} of the ceiling; `Depends(get_conn)` serves {_ratio(ours)} of the bound "
            f"(on asyncmy {_ratio(http.ratio(HTTP_OURS_ASYNCMY, HTTP_NODRIVER))}).",
        ]
    return lines


def _deps_table(deps: DepsResults) -> list[str]:
    floor = deps.median(VARIANTS[0][0])
    lines = [
        f"### Cost of a request's layers (in-process ASGI, no network, no query; {deps.rounds} rounds of "
        f"{deps.requests} requests; median CPU µs per request)",
        "",
        "| variant | CPU µs/request | above no dependency |",
        "|---|---:|---:|",
    ]
    for label, _ in VARIANTS:
        cost = deps.median(label)
        extra = "" if cost is None or floor is None or label == VARIANTS[0][0] else f"+{cost - floor:.0f}"
        lines.append(f"| {label} | {_num(cost, 0)} | {extra} |")
    return lines


def render(
    machine: Machine,
    pool: Mapping[str, PoolResults] | None,
    deps: DepsResults | None,
    http: Mapping[str, HttpResults] | None,
    command: str,
    floor: Floor | str | None = None,
) -> str:
    """The generated region, markers excluded."""
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    versions = ", ".join(f"{name} {version}" for name, version in machine.versions.items())
    lines = [
        f"Generated by `{command}` on {when}.",
        "",
        f"- Machine: {machine.cpu}, {machine.cores} cores, {machine.os}; "
        f"load average (1/5/15 min) {machine.load_before} before, {machine.load_after} after.",
        f"- Python: {machine.python}. Server: {machine.server}, over loopback TCP. Load generator: {machine.wrk}.",
        f"- Versions: {versions}.",
        "",
    ]
    busiest = max(_first_figure(machine.load_before), _first_figure(machine.load_after))
    if machine.cores and busiest > machine.cores:
        lines += [
            f"**The machine was busy** (a load average of {busiest:.1f} on {machine.cores} cores): other work took "
            "CPU from the client, the server and the load generator alike, so operations per second and ratios of "
            "them move with the scheduler. The client CPU per operation is the steadier guide.",
            "",
        ]
    found = targets(pool, http)
    if found:
        lines += [
            "### Targets (same-run ratios; informational, timing fails no test)",
            "",
            "| issue | target | wanted | measured (ops/s) | | same in client CPU per op |",
            "|---|---|---:|---:|---|---:|",
        ]
        lines += [
            f"| {t.issue} | {t.goal} | >= {t.wanted:g}x | {_ratio(t.measured)} | {'PASS' if t.met else '**MISS**'} | "
            f"{_ratio(t.cpu) if t.cpu is not None else ''} |"
            for t in found
        ]
        lines.append("")
    if pool:
        lines += [*_pool_table(pool), ""]
    if isinstance(floor, Floor):
        lines += [
            f"Physical floor, a native client (libmariadb, C; `python -m bench.floor`), sequential SELECT 1 on one "
            f"connection: {floor.ops:,.0f} ops/s, {floor.wall_us:.1f} µs per round trip, {floor.cpu_us:.1f} µs of "
            "client CPU.",
            "",
        ]
    elif floor is not None:
        lines += [f"Physical floor, a native client: {floor}.", ""]
    if deps is not None:
        lines += [*_deps_table(deps), ""]
    for results in (http or {}).values():
        lines += [*_http_table(results), ""]
    return "\n".join(lines).rstrip() + "\n"


_SKELETON = f"""# Benchmarks

Run them with `make bench` (or `python -m bench`).

{START}
{END}
"""


def write_region(path: Path, generated: str) -> None:
    """Replace what lies between the markers in ``path`` (created if missing), keep the rest."""
    text = path.read_text(encoding="utf-8") if path.exists() else _SKELETON
    if START not in text or END not in text:
        text = text.rstrip() + f"\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{head}{START}\n{generated}{END}{tail}", encoding="utf-8")
