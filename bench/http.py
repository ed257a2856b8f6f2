"""HTTP benchmark: each app in its own uvicorn worker, loaded in turn by ``wrk``.

All the apps run at once, each on its own port, so the rounds can interleave them:
every round loads each app once, in an order that rotates from round to round, and the
report takes the median over the rounds. Idle apps cost nothing but an open pool.

Every app runs under two uvicorn configurations (`SERVERS`): the one FastAPI recommends for
production (``fastapi[standard]`` installs ``uvicorn[standard]``: the uvloop event loop and the
httptools parser), and plain asyncio with the pure-Python h11 parser, what a bare
``pip install uvicorn`` gives. The HTTP stack is a large, shared part of every request, so
the ratios between the apps differ between the two.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["APPS", "CONNECTIONS", "SERVERS", "HttpResults", "WrkResult", "parse_wrk", "run_http_bench"]

#: (module in bench.apps, row label), the ceiling first.
APPS = (
    ("nodb", "no database (ceiling)"),
    ("nodriver", "no driver: the query's packet on a raw connection (the bound)"),
    ("handwritten", "hand-written: aiomysql pool + yield dependency"),
    ("mysqlpool", "fastapi_mysqlpool: Depends(get_conn)"),
    ("mysqlpool_asyncmy", "fastapi_mysqlpool on asyncmy: Depends(get_conn)"),
    ("sqlalchemy", "SQLAlchemy AsyncSession"),
)
#: (key, title, uvicorn options, modules it needs): the production configuration first.
SERVERS = (
    ("standard", "uvicorn[standard]: uvloop + httptools", ("--loop", "uvloop", "--http", "httptools"),
     ("uvloop", "httptools")),
    ("plain", "plain asyncio + h11", ("--loop", "asyncio", "--http", "h11"), ("h11",)),
)  # fmt: skip
CONNECTIONS = 64
THREADS = 2
_ROOT = Path(__file__).resolve().parent.parent
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


@dataclass
class WrkResult:
    """One wrk run: requests per second, latency percentiles in seconds, socket errors and non-2xx answers."""

    rps: float
    p50: float
    p99: float
    errors: int
    non_2xx: int


@dataclass
class HttpResults:
    """The runs of every app under one uvicorn configuration (`SERVERS`)."""

    server: str
    rounds: int
    seconds: float
    runs: dict[str, list[WrkResult]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    def median(self, app: str, metric: str) -> float | None:
        runs = self.runs.get(app)
        return statistics.median(getattr(run, metric) for run in runs) if runs else None

    def ratio(self, app: str, baseline: str, metric: str = "rps") -> float | None:
        mine, theirs = self.median(app, metric), self.median(baseline, metric)
        return mine / theirs if mine and theirs else None

    def to_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "rounds": self.rounds,
            "seconds": self.seconds,
            "median": {
                app: {metric: self.median(app, metric) for metric in ("rps", "p50", "p99", "errors", "non_2xx")}
                for app in self.runs
            },
            "runs": {app: [vars(run) for run in runs] for app, runs in self.runs.items()},
            "failures": self.failures,
        }


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def parse_wrk(output: str) -> WrkResult:
    """Read rps, p50, p99 and the error count from ``wrk --latency`` output."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    if rps is None or p50 is None or p99 is None:
        raise ValueError(f"cannot read wrk output:\n{output}")
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        rps=float(rps[1]),
        p50=_seconds(p50[1]),
        p99=_seconds(p99[1]),
        errors=sum(int(n) for n in socket_errors.groups()) if socket_errors else 0,
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
    )


def wrk_binary() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed: sudo apt-get install -y wrk")
    return wrk


def _wrk(url: str, seconds: float) -> WrkResult:
    duration = f"{max(1, round(seconds))}s"
    cmd = [wrk_binary(), f"-c{CONNECTIONS}", f"-t{THREADS}", f"-d{duration}", "--latency", url]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 60)
    return parse_wrk(done.stdout)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _App:
    """``bench.apps.<module>:app`` in one uvicorn worker of its own."""

    def __init__(self, module: str, dsn: str, options: tuple[str, ...]) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}/"
        cmd = [
            sys.executable, "-m", "uvicorn", f"bench.apps.{module}:app", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--no-access-log", "--log-level", "warning", *options,
        ]  # fmt: skip
        env = {**os.environ, "DATABASE_URL": dsn, "PYTHONPATH": str(_ROOT)}
        # A file, not a pipe: nobody reads stderr during the run, and a full pipe would stall the app.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop())
        self._proc = subprocess.Popen(cmd, cwd=_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self._stderr)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._stderr.seek(0)
                text = self._stderr.read().decode(errors="replace")
                raise RuntimeError(f"the app exited with code {self._proc.returncode}:\n{text[-3000:]}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the app did not answer on {self.url} within {timeout:g} s")

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._stderr.close()


def run_http_bench(
    dsn: str, *, rounds: int, seconds: float, warmup: float, log: Callable[[str], None] = print
) -> dict[str, HttpResults]:
    """Start every app under every available configuration, warm each up, then run ``rounds``
    interleaved rounds of wrk. Results by configuration key; one whose modules are missing is left out."""
    servers = []
    for key, title, options, modules in SERVERS:
        missing = [name for name in modules if importlib.util.find_spec(name) is None]
        if missing:
            log(f"  {title}: skipped, {', '.join(missing)} not installed (pip install 'uvicorn[standard]')")
        else:
            servers.append((key, title, options))
    results = {key: HttpResults(server=title, rounds=rounds, seconds=seconds) for key, title, _ in servers}
    with ExitStack() as stack:
        # Started together, so their imports overlap; then each must answer before any load.
        started: dict[tuple[str, str], _App] = {}
        for key, _, options in servers:
            for module, label in APPS:
                started[key, label] = app = _App(module, dsn, options)
                stack.callback(app.stop)
        urls: dict[tuple[str, str], str] = {}
        for (key, label), app in started.items():
            try:
                app.wait_ready()
            except RuntimeError as exc:
                results[key].failures[label] = str(exc)
                log(f"  {label} ({key}): could not start: {str(exc).splitlines()[-1]}")
            else:
                urls[key, label] = app.url
                results[key].runs[label] = []
        order = list(urls)
        if warmup > 0:
            for run in order:
                _wrk(urls[run], warmup)
        for r in range(rounds):
            shift = r % len(order) if order else 0
            for key, label in order[shift:] + order[:shift]:
                results[key].runs[label].append(_wrk(urls[key, label], seconds))
            log(f"  http round {r + 1}/{rounds} done")
    return results
