"""A newcomer's own project, built from the README and the docs alone: its app, its tests on the pytest plugin,
unicode data, and warnings as errors (the configuration docs/testing.md recommends). It runs as that user would
run it: pytest in a fresh process, in a directory of its own, with a throwaway server the plugin starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PYPROJECT = """\
[tool.pytest.ini_options]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
filterwarnings = ["error"]
"""

APP = """\
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import BaseModel

import fastapi_mysqlpool as mp


class Note(BaseModel):
    text: str


def create_app(dsn: str | None = None) -> FastAPI:
    @asynccontextmanager
    async def create_schema(app: FastAPI) -> AsyncIterator[None]:
        async with database.pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute("CREATE TABLE IF NOT EXISTS notes (id INT AUTO_INCREMENT PRIMARY KEY, text TEXT)")
        yield

    database = mp.mysql_lifespan(dsn, lifespan=create_schema)
    app = FastAPI(lifespan=database)
    app.include_router(mp.pool_router)

    @app.post("/notes", status_code=201)
    async def add_note(note: Note, conn: mp.TransactionDep) -> dict[str, int]:
        async with conn.cursor() as cur:
            await cur.execute("INSERT INTO notes (text) VALUES (%s)", (note.text,))
            return {"id": cur.lastrowid}

    @app.get("/notes/{note_id}")
    async def get_note(note_id: int, cur: mp.DictCursorDep) -> dict[str, object]:
        await cur.execute("SELECT id, text FROM notes WHERE id = %s", (note_id,))
        return dict(await cur.fetchone())

    return app
"""

TESTS = """\
import pytest

from fastapi_mysqlpool.testing import lifespan_client

from app import create_app


@pytest.mark.parametrize("text", ["plain", "日本語", "emoji 📚🎉", "Łódź, naïve café"])
async def test_notes_round_trip_unicode(mysql_dsn: str, text: str) -> None:
    # Every test starts the app again: from the second on, CREATE TABLE IF NOT EXISTS finds the table.
    async with lifespan_client(create_app(mysql_dsn)) as client:
        created = await client.post("/notes", json={"text": text})
        assert created.status_code == 201, created.text
        fetched = await client.get(f"/notes/{created.json()['id']}")
        assert fetched.json() == {"id": created.json()["id"], "text": text}


async def test_the_pool_is_healthy_and_idle(mysql_dsn: str) -> None:
    async with lifespan_client(create_app(mysql_dsn)) as client:
        assert (await client.head("/pool/health")).status_code == 200
        stats = (await client.get("/pool/stats")).json()["pools"]["default"]
        assert stats["in_use"] == 0
"""


def test_an_own_app_with_its_own_tests_passes_with_unicode_and_warnings_as_errors(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT, encoding="utf-8")
    (tmp_path / "app.py").write_text(APP, encoding="utf-8")
    (tmp_path / "test_app.py").write_text(TESTS, encoding="utf-8")
    # The user's machine: no variable of this project's test run, and the plugin starts its own server.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FASTAPI_MYSQLPOOL_", "MYSQLPOOL_", "PYTEST_"))}
    env.pop("DATABASE_URL", None)
    env["PYTHONPATH"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    report = f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert result.returncode == 0, report
    assert "5 passed" in result.stdout, report
