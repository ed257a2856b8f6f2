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
from .http import APPS, CONNECTIONS, THREADS, HttpResults, wrk_binary
from .pool import MAXSIZE, METRICS, TASKS, PoolResults

__all__ = ["END", "START", "Machine", "Target", "machine_info", "render", "targets", "write_region"]

START = "<!-- bench:start -->"
END = "<!-- bench:end -->"

RAW = "raw aiomysql connection"
OURS = "fastapi_mysqlpool"
AIOMYSQL = "aiomysql pool"
RAW_ASYNCMY = "raw asyncmy connection"
HTTP_NODB, HTTP_HANDWRITTEN, HTTP_OURS, HTTP_SQLALCHEMY = (label for _, label in APPS)
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


@dataclass
class Target:
    goal: str
    wanted: float
    measured: float | None

    @property
    def met(self) -> bool:
        return self.measured is not None and self.measured >= self.wanted


def targets(pool: PoolResults | None, http: Mapping[str, HttpResults] | None) -> list[Target]:
    """The issue's targets, as same-run ratios (higher is better for each); the HTTP ones under
    every uvicorn configuration that ran."""
    found: list[Target] = []
    if pool is not None:
        found += [
            Target("acquire+release: ours / aiomysql pool", 3.0, pool.ratio(OURS, "acquire_release", AIOMYSQL)),
            Target("sequential SELECT 1: ours / raw connection", 0.95, pool.ratio(OURS, "select1", RAW)),
            Target("64 tasks on 10 connections: ours / aiomysql pool", 1.1, pool.ratio(OURS, "concurrent", AIOMYSQL)),
        ]
    for results in (http or {}).values():
        server = f" ({results.server})"
        p99_ours, p99_theirs = results.median(HTTP_OURS, "p99"), results.median(HTTP_HANDWRITTEN, "p99")
        found += [
            Target(
                "HTTP rps: Depends(get_conn) / hand-written" + server,
                1.0,
                results.ratio(HTTP_OURS, HTTP_HANDWRITTEN),
            ),
            Target(
                "HTTP p99: hand-written / Depends(get_conn) (>= 1: no worse)" + server,
                1.0,
                p99_theirs / p99_ours if p99_ours and p99_theirs else None,
            ),
            Target("HTTP rps: Depends(get_conn) / SQLAlchemy" + server, 3.0, results.ratio(HTTP_OURS, HTTP_SQLALCHEMY)),
        ]
    return found


def _num(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1e3:.2f}"


def _total(http: HttpResults, label: str, counter: str) -> str:
    return str(sum(getattr(run, counter) for run in http.runs.get(label, [])))


def _pool_table(pool: PoolResults) -> list[str]:
    lines = [
        f"### Pool micro-benchmark ({pool.rounds} interleaved rounds of {pool.seconds:g} s per measurement; "
        "median ops/s)",
        "",
        "| contender | "
        + " | ".join(title for _, title in METRICS)
        + " | SELECT 1 vs raw | 64 tasks vs aiomysql pool |",
        "|---|" + "---:|" * (len(METRICS) + 2),
    ]
    for contender in pool.samples:
        cells = [_num(pool.median(contender, metric)) for metric, _ in METRICS]
        cells.append(_ratio(pool.ratio(contender, "select1", RAW)))
        cells.append(_ratio(pool.ratio(contender, "concurrent", AIOMYSQL)))
        lines.append(f"| {contender} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Client CPU per operation (this process only, median µs; steadier than ops/s on a busy machine):",
        "",
        "| contender | " + " | ".join(title for _, title in METRICS) + " |",
        "|---|" + "---:|" * len(METRICS),
    ]
    for contender in pool.cpu:
        cells = [_num(pool.cpu_us(contender, metric), 1) for metric, _ in METRICS]
        lines.append(f"| {contender} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Acquire+release, time per cycle: "
        + ", ".join(
            f"{name} {1e6 / ops:.2f} µs"
            for name in pool.samples
            if (ops := pool.median(name, "acquire_release")) is not None
        )
        + ".",
        "",
        f"Pools hold at most {MAXSIZE} connections; {TASKS} tasks share them. The raw connections have nothing to "
        f"acquire; in the {TASKS}-task workload the tasks take turns on the single connection.",
        f"Driver alone, SELECT 1 on a raw connection: asyncmy / aiomysql = "
        f"{_ratio(pool.ratio(RAW_ASYNCMY, 'select1', RAW))}.",
    ]
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
    pool: PoolResults | None,
    deps: DepsResults | None,
    http: Mapping[str, HttpResults] | None,
    command: str,
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
    found = targets(pool, http)
    if found:
        lines += ["### Targets (same-run ratios)", "", "| target | wanted | measured | met |", "|---|---:|---:|---|"]
        lines += [
            f"| {t.goal} | >= {t.wanted:g}x | {_ratio(t.measured)} | {'yes' if t.met else '**no**'} |" for t in found
        ]
        lines.append("")
    if pool is not None:
        lines += [*_pool_table(pool), ""]
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
