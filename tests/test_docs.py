"""Every code example in README.md and docs/*.md runs against a real server, so a wrong example fails CI.

How to write an example (the convention this test enforces; docs/testing.md repeats it for contributors):

- ```python  A complete program. It reads its DSN from the ``DATABASE_URL`` environment variable
  (``os.environ["DATABASE_URL"]``, or ``mp.mysql_lifespan()`` with no DSN, which reads it too). Each block runs
  alone, in a fresh subprocess, in an empty temporary directory, with ``DATABASE_URL`` set to the test session's
  server and a 60 s timeout. What "runs" means depends on the block:

  * it defines test functions (``def test_...`` / ``async def test_...``): pytest runs the block, with
    ``FASTAPI_MYSQLPOOL_TEST_DSN`` also set to the session's server (so ``mysql_server``/``mysql_dsn`` reuse it)
    and ``asyncio_mode=auto``; every test must pass, and every warning is an error;
  * it defines a module-level ``app``: the block is imported as a module (an ``if __name__ == "__main__":``
    runner does not start), the app's lifespan runs, and every GET route without path parameters is requested;
    no answer may be a 5xx;
  * otherwise it runs as a script and must exit with status 0.

  In every case stderr must not show a traceback, an unclosed connection or "Event loop is closed", and no
  output may contain the server's password.
- ```py  A fragment that cannot run alone (names defined elsewhere, top-level ``await``). Keep it short. It is
  only compiled, so it must still be valid Python.
- ```bash, ```text, ```toml, ```yaml, ```json, ...: not run.

All examples share one database: create the tables you need with ``CREATE TABLE IF NOT EXISTS`` under a name
unique to your page (``docs_<page>_<table>``), or use ``TEMPORARY`` tables, and never rely on another example's
data. Test ids are ``<file>:<line of the opening fence>``, so a failure points at the example.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

import fastapi_mysqlpool

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60.0
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)")
_BAD_STDERR = ("Traceback (most recent call last)", "Unclosed connection", "Event loop is closed")


@dataclass(frozen=True)
class Example:
    path: Path
    line: int
    lang: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path.name}:{self.line}"


def extract(path: Path) -> list[Example]:
    """The fenced code blocks of a Markdown file, de-indented (blocks may sit in admonitions and lists)."""
    examples: list[Example] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence, lang = opening["indent"], opening["fence"], opening["lang"]
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not (lines[j].strip().startswith(fence) and lines[j].strip().strip(fence[0]) == ""):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        if j == len(lines):
            raise ValueError(f"{path}:{i + 1}: code fence is never closed")
        examples.append(Example(path, i + 1, lang, "\n".join(body) + "\n"))
        i = j + 1
    return examples


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _collect(lang: str) -> list[Example]:
    return [example for page in _pages() if page.exists() for example in extract(page) if example.lang == lang]


PROGRAMS = _collect("python")
FRAGMENTS = _collect("py")

# Imports the example as a module, runs its lifespan as a server would (the lifespan state copied into every
# request) and requests every GET route without path parameters: the OpenAPI paths of a FastAPI app, which
# include those of included routers, and the plain routes of a Starlette app.
_APP_RUNNER = """
import asyncio, importlib.util, sys
import httpx
from starlette.routing import Route

spec = importlib.util.spec_from_file_location("example", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["example"] = module
spec.loader.exec_module(module)
app = module.app


def get_paths():
    paths = {r.path for r in app.routes if isinstance(r, Route) and "GET" in (r.methods or ())}
    if hasattr(app, "openapi"):
        paths |= {path for path, ops in app.openapi()["paths"].items() if "get" in ops}
    return sorted(path for path in paths if "{" not in path)


async def main():
    state, to_app, from_app = {}, asyncio.Queue(), asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": state}
    lifespan = asyncio.create_task(app(scope, to_app.get, from_app.put))
    await to_app.put({"type": "lifespan.startup"})
    started = await from_app.get()
    if started["type"] != "lifespan.startup.complete":
        sys.exit(f"lifespan startup failed: {started}")

    async def with_state(scope, receive, send):
        await app({**scope, "state": dict(state)}, receive, send)

    failures = []
    transport = httpx.ASGITransport(app=with_state)
    async with httpx.AsyncClient(transport=transport, base_url="http://example") as client:
        for path in get_paths():
            response = await client.get(path)
            print("GET", path, response.status_code)
            if response.status_code >= 500:
                failures.append(f"GET {path} -> {response.status_code}: {response.text[:500]}")
    await to_app.put({"type": "lifespan.shutdown"})
    stopped = await from_app.get()
    await lifespan
    if stopped["type"] != "lifespan.shutdown.complete":
        failures.append(f"lifespan shutdown failed: {stopped}")
    if failures:
        sys.exit("\\n".join(failures))


asyncio.run(main())
"""


def _kind(code: str) -> str:
    tree = ast.parse(code)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
            return "pytest"
    for node in tree.body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(isinstance(target, ast.Name) and target.id == "app" for target in targets):
            return "app"
    return "script"


@pytest.mark.parametrize("example", PROGRAMS, ids=[e.id for e in PROGRAMS])
def test_python_example_runs(example: Example, mysql_dsn: str, tmp_path: Path) -> None:
    script = tmp_path / f"{example.path.stem.replace('-', '_')}_line{example.line}.py"
    script.write_text(example.code, encoding="utf-8")
    env = {**os.environ, "DATABASE_URL": mysql_dsn, "PYTHONPATH": str(ROOT)}
    env.pop("FASTAPI_MYSQLPOOL_TEST_DSN", None)
    kind = _kind(example.code)
    if kind == "pytest":
        env["FASTAPI_MYSQLPOOL_TEST_DSN"] = mysql_dsn
        argv = [
            "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error",
            "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function", str(script),
        ]  # fmt: skip
    elif kind == "app":
        argv = ["-c", _APP_RUNNER, str(script)]
    else:
        argv = [str(script)]
    result = subprocess.run(
        [sys.executable, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    report = (
        f"{example.id} ({kind}) exited {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    assert result.returncode == 0, report
    assert not [marker for marker in _BAD_STDERR if marker in result.stderr], report
    password = unquote(urlsplit(mysql_dsn).password or "")
    assert not password or password not in result.stdout + result.stderr, f"{example.id} printed the password"


@pytest.mark.parametrize("example", FRAGMENTS, ids=[e.id for e in FRAGMENTS])
def test_py_fragment_compiles(example: Example) -> None:
    compile(example.code, example.id, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def test_api_reference_lists_every_public_name() -> None:
    reference = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: fastapi_mysqlpool\.(\w+)$", reference, re.MULTILINE))
    public = set(fastapi_mysqlpool.__all__) - {"__version__"}
    assert public - documented == set(), "add these to docs/reference.md"
    assert documented - public == set(), "docs/reference.md documents names that are not public"


def test_every_fenced_block_is_found(tmp_path: Path) -> None:
    """Guards the extractor: a fence it failed to see would silently go untested."""
    sample = tmp_path / "sample.md"
    sample.write_text(
        "text\n\n```python\nprint(1)\n```\n\n!!! note\n    ```py\n    await x\n    ```\n\n~~~~bash\nls\n~~~~\n",
        encoding="utf-8",
    )
    found = [(e.line, e.lang, e.code) for e in extract(sample)]
    assert found == [(3, "python", "print(1)\n"), (8, "py", "await x\n"), (12, "bash", "ls\n")]
