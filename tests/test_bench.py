"""The benchmarks keep running: a quick pass of every contender and every app produces figures.

Nothing here judges speed (the machine's load decides that); only that each benchmark still
measures what it claims to, and that the report keeps the hand-written analysis around it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.deps import VARIANTS
from bench.http import APPS, SERVERS, parse_wrk
from bench.pool import CONTENDERS, LOOPS, METRICS
from bench.report import END, START

ROOT = Path(__file__).resolve().parent.parent

WRK_OUTPUT = """\
Running 1s test @ http://127.0.0.1:8000/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    10.33ms    3.02ms  41.20ms   88.10%
    Req/Sec     3.11k   210.00     3.40k    70.00%
  Latency Distribution
     50%  812.00us
     75%   11.00ms
     90%   13.00ms
     99%    1.20s
  6200 requests in 1.00s, 0.90MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:   6199.51
Transfer/sec:      0.90MB
"""


def test_wrk_output_is_read_with_units_and_failures() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert result.rps == 6199.51
    assert result.p50 == 812e-6
    assert result.p99 == 1.2
    assert (result.errors, result.non_2xx) == (5, 7)


def test_quick_run_measures_every_contender_and_keeps_the_analysis(mysql_dsn: str, tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    output.write_text(f"# Benchmarks\n\nAnalysis before.\n\n{START}\nold figures\n{END}\n\nAnalysis after.\n")
    figures = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--pool-seconds", "0.02", "--deps-requests", "20",
         "--dsn", mysql_dsn, "--output", str(output), "--json", str(figures)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    results = json.loads(figures.read_text())
    assert list(results["pool"]) == list(LOOPS)  # asyncio and uvloop both ran
    for loop, pool in results["pool"].items():
        assert pool["loop"] == loop
        ops = pool["median_ops"]
        assert list(ops) == [contender.name for contender in CONTENDERS]
        for contender in CONTENDERS:
            raw = contender.name.startswith("raw ")
            for metric, _ in METRICS:
                if raw and metric == "acquire_release":
                    assert metric not in ops[contender.name]
                else:
                    assert ops[contender.name][metric] > 0, (loop, contender.name, metric)
    costs = results["deps"]["median_cpu_us"]
    assert all(costs[label] > 0 for label, _ in VARIANTS)
    http = results["http"]
    assert list(http) == [key for key, *_ in SERVERS]  # both uvicorn configurations ran
    for key, figures in http.items():
        assert figures["failures"] == {}, key
        for _, label in APPS:
            median = figures["median"][label]
            assert median["rps"] > 0 and median["p99"] >= median["p50"] > 0, (key, label)
            assert median["non_2xx"] == 0, (key, label)
    # Per event loop the six pool targets; per uvicorn configuration the two ceiling ones, then the earlier three.
    assert len(results["targets"]) == 6 * len(LOOPS) + 5 * len(SERVERS)
    assert all(target["measured"] is not None for target in results["targets"])
    assert [t["issue"] for t in results["targets"]].count("14") == 6 * len(LOOPS) + 2 * len(SERVERS)

    text = output.read_text()
    assert text.startswith("# Benchmarks\n\nAnalysis before.\n")
    assert text.endswith(f"{END}\n\nAnalysis after.\n")
    assert "old figures" not in text
    assert "| fastapi_mysqlpool: Depends(get_conn) |" in text
    assert "| fastapi_mysqlpool on asyncmy: Depends(get_conn) |" in text
    # The table of the pool: one column per contender, one row per workload and event loop, every cell filled
    # but the acquire+release of the raw connections, which have nothing to acquire.
    header = "| | " + " | ".join(contender.name for contender in CONTENDERS) + " |"
    assert header in text
    table = text.split(header, 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    assert len(table) == len(METRICS) * len(LOOPS)
    for row, (metric, loop) in zip(table, [(m, loop) for m, _ in METRICS for loop in LOOPS], strict=True):
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert f"({loop})" in cells[0], row
        for contender, cell in zip(CONTENDERS, cells[1:], strict=True):
            if metric == "acquire_release" and contender.name.startswith("raw "):
                assert cell == "", row
            else:
                assert cell and cell != "n/a", (row, contender.name)
    assert text.count("PASS") + text.count("MISS") == len(results["targets"])
    # The native client's floor is measured, or the report says why not (no C compiler or client library).
    floor = results["floor"]
    assert (isinstance(floor, dict) and floor["wall_us"] > floor["cpu_us"] > 0) or floor.startswith("not measured")
    assert "Physical floor, a native client" in text
    assert mysql_dsn.split("@")[0].split(":")[-1] not in text  # the password stays out of the report


def test_every_instruction_count_workload_runs(mysql_dsn: str) -> None:
    # Under callgrind these take minutes; run plainly, each workload must still complete.
    from bench.instructions import VARIANTS as COUNTED

    for variant, _ in COUNTED:
        done = subprocess.run(
            [sys.executable, "-m", "bench.instructions", "--child", variant, "--dsn", mysql_dsn, "--operations", "5"],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0 and not done.stderr, (variant, done.stderr)
