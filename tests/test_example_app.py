"""The example bookstore end to end: in-process with its lifespan, and as ``python -m example_app``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pymysql
import pytest

from example_app import create_app
from example_app.app import MAX_QUANTITY
from fastapi_mysqlpool.testing import ExternalServer, MySQLServer
from tests._fastapi_support import serve
from tests._uvicorn import ROOT, free_port
from tests.conftest import query

BOOK = {"isbn": "978-0-13-468599-1", "title": "The Pragmatic Programmer", "author": "Hunt, Thomas", "price_cents": 4200}


@pytest.fixture
async def bookstore(mysql_server: MySQLServer | ExternalServer) -> AsyncIterator[httpx.AsyncClient]:
    """The bookstore on empty tables (the app's startup creates them)."""
    admin = pymysql.connect(**mysql_server.root_connect_kwargs(), database=mysql_server.db, autocommit=True)
    try:
        for table in ("bookstore_stock", "bookstore_stores", "bookstore_books"):
            query(admin, f"DROP TABLE IF EXISTS {table}")
    finally:
        admin.close()
    async with serve(create_app(mysql_server.dsn, maxsize=4)) as client:
        yield client


async def add_book(client: httpx.AsyncClient, isbn: str, **fields: Any) -> dict[str, Any]:
    response = await client.post("/books", json={**BOOK, "isbn": isbn, **fields})
    assert response.status_code == 201, response.text
    book: dict[str, Any] = response.json()
    return book


async def test_books_crud_with_404_and_409(bookstore: httpx.AsyncClient) -> None:
    book = await add_book(bookstore, BOOK["isbn"])
    assert book == {**BOOK, "id": book["id"]}
    assert (await bookstore.get(f"/books/{book['id']}")).json() == book

    duplicate = await bookstore.post("/books", json=BOOK)
    assert duplicate.status_code == 409 and "Duplicate entry" in duplicate.json()["detail"]

    changed = {**BOOK, "title": "The Pragmatic Programmer, 2nd edition"}
    assert (await bookstore.put(f"/books/{book['id']}", json=changed)).json() == {**changed, "id": book["id"]}
    assert (await bookstore.get(f"/books/{book['id']}")).json()["title"].endswith("2nd edition")

    other = await add_book(bookstore, "978-1-59327-584-6")
    conflict = await bookstore.put(f"/books/{other['id']}", json=BOOK)  # takes the first book's ISBN
    assert conflict.status_code == 409

    assert (await bookstore.delete(f"/books/{book['id']}")).status_code == 204
    for response in (
        await bookstore.get(f"/books/{book['id']}"),
        await bookstore.put(f"/books/{book['id']}", json=BOOK),
        await bookstore.delete(f"/books/{book['id']}"),
    ):
        assert (response.status_code, response.json()) == (404, {"detail": f"no book {book['id']}"})
    assert (await bookstore.post("/books", json={**BOOK, "isbn": "not an isbn"})).status_code == 422


async def test_books_are_paginated_by_keyset(bookstore: httpx.AsyncClient) -> None:
    ids = [(await add_book(bookstore, f"978-0-00-00000{i}-0"))["id"] for i in range(5)]
    seen: list[int] = []
    after = 0
    while True:
        page = (await bookstore.get("/books", params={"limit": 2, "after": after})).json()
        seen += [book["id"] for book in page["items"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert seen == ids
    assert (await bookstore.get("/books", params={"limit": 101})).status_code == 422


async def test_transfer_moves_stock_between_two_rows_atomically(bookstore: httpx.AsyncClient) -> None:
    book = await add_book(bookstore, BOOK["isbn"])
    north = (await bookstore.post("/stores", json={"name": "North"})).json()
    south = (await bookstore.post("/stores", json={"name": "South"})).json()
    assert (await bookstore.post("/stores", json={"name": "North"})).status_code == 409
    assert (await bookstore.put(f"/stores/{north['id']}/stock/{book['id']}", json={"quantity": 5})).status_code == 200

    move = {"book_id": book["id"], "from_store_id": north["id"], "to_store_id": south["id"], "quantity": 3}
    moved = await bookstore.post("/transfers", json=move)
    assert moved.json() == {"book_id": book["id"], "from_quantity": 2, "to_quantity": 3}

    too_many = await bookstore.post("/transfers", json=move)
    assert too_many.status_code == 409
    missing_store = await bookstore.post("/transfers", json={**move, "to_store_id": 999_999})
    assert missing_store.status_code == 404

    async def quantity(store: dict[str, Any]) -> list[Any]:
        return [line["quantity"] for line in (await bookstore.get(f"/stores/{store['id']}/stock")).json()]

    assert (await quantity(north), await quantity(south)) == ([2], [3])  # the refused transfers changed nothing
    assert (await bookstore.delete(f"/books/{book['id']}")).status_code == 409  # still stocked
    assert (await bookstore.get("/stores/999999/stock")).status_code == 404
    assert (await bookstore.put(f"/stores/{north['id']}/stock/999999", json={"quantity": 1})).status_code == 404


async def test_a_transfer_of_a_book_that_does_not_exist_is_a_404(bookstore: httpx.AsyncClient) -> None:
    north = (await bookstore.post("/stores", json={"name": "North"})).json()
    south = (await bookstore.post("/stores", json={"name": "South"})).json()
    move = {"book_id": 999_999, "from_store_id": north["id"], "to_store_id": south["id"], "quantity": 1}
    missing = await bookstore.post("/transfers", json=move)
    assert (missing.status_code, missing.json()) == (404, {"detail": "no book 999999"})
    # A book that exists but that the store does not stock is a conflict with the stock held, not a 404.
    book = await add_book(bookstore, BOOK["isbn"])
    unstocked = await bookstore.post("/transfers", json={**move, "book_id": book["id"]})
    assert (unstocked.status_code, unstocked.json()) == (
        409,
        {"detail": f"store {north['id']} has 0 of book {book['id']}"},
    )


async def test_a_transfer_that_would_overflow_the_stock_is_a_409_and_changes_nothing(
    bookstore: httpx.AsyncClient,
) -> None:
    book = await add_book(bookstore, BOOK["isbn"])
    north = (await bookstore.post("/stores", json={"name": "North"})).json()
    south = (await bookstore.post("/stores", json={"name": "South"})).json()
    for store, quantity in ((north, 10), (south, MAX_QUANTITY - 5)):
        stocked = await bookstore.put(f"/stores/{store['id']}/stock/{book['id']}", json={"quantity": quantity})
        assert stocked.status_code == 200, stocked.text
    move = {"book_id": book["id"], "from_store_id": north["id"], "to_store_id": south["id"], "quantity": 6}
    overflow = await bookstore.post("/transfers", json=move)
    assert overflow.status_code == 409, overflow.text
    assert overflow.json() == {
        "detail": f"store {south['id']} cannot hold {MAX_QUANTITY + 1} of book {book['id']} (at most {MAX_QUANTITY})"
    }
    for store, quantity in ((north, 10), (south, MAX_QUANTITY - 5)):
        lines = (await bookstore.get(f"/stores/{store['id']}/stock")).json()
        assert [line["quantity"] for line in lines] == [quantity]
    # Up to the limit still moves.
    moved = await bookstore.post("/transfers", json={**move, "quantity": 5})
    assert moved.json() == {"book_id": book["id"], "from_quantity": 5, "to_quantity": MAX_QUANTITY}


async def test_unicode_titles_round_trip(bookstore: httpx.AsyncClient) -> None:
    # The throwaway server runs utf8mb4, as production MySQL 8 and Debian's MariaDB do: 4-byte characters too.
    book = await add_book(bookstore, BOOK["isbn"], title="日本語の本 📚", author="Łukasz Żółć")
    fetched = (await bookstore.get(f"/books/{book['id']}")).json()
    assert (fetched["title"], fetched["author"]) == ("日本語の本 📚", "Łukasz Żółć")


async def test_pool_router_is_mounted(bookstore: httpx.AsyncClient) -> None:
    assert (await bookstore.get("/pool/health")).status_code == 200
    stats = (await bookstore.get("/pool/stats")).json()["pools"]["default"]
    assert (stats["maxsize"], stats["in_use"]) == (4, 0)


@pytest.fixture
def run_example() -> Iterator[Any]:
    """Start ``python -m example_app`` on a free port; yields ``start(env) -> (process, base_url)``."""
    processes: list[subprocess.Popen[str]] = []

    def start(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "example_app", "--port", str(port)],
            cwd=ROOT,
            env={**env, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        processes.append(proc)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"example_app exited with {proc.returncode}"
            try:
                if httpx.get(f"{base}/pool/health", timeout=2).status_code == 200:
                    return proc, base
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "example_app did not become ready within 90 s"
            time.sleep(0.1)

    yield start
    for proc in processes:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def stop_with_ctrl_c(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    return output


def test_python_m_example_app_serves_database_url(run_example: Any, mysql_server: MySQLServer | ExternalServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYSQLPOOL_")}
    proc, base = run_example({**env, "DATABASE_URL": mysql_server.dsn})
    isbn = f"979-{os.getpid() % 10_000:04d}-{time.time_ns() % 1_000_000:06d}-1"
    created = httpx.post(f"{base}/books", json={**BOOK, "isbn": isbn}, timeout=10)
    assert created.status_code == 201
    assert httpx.get(f"{base}/books/{created.json()['id']}", timeout=10).json()["isbn"] == isbn
    output = stop_with_ctrl_c(proc)
    assert f"Bookstore serving on {base}" in output
    assert mysql_server.password not in output
    assert "Traceback" not in output


@pytest.mark.slow
def test_python_m_example_app_starts_a_throwaway_mariadb_and_removes_it_on_ctrl_c(run_example: Any) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("MYSQLPOOL_")}
    proc, base = run_example(env)
    assert httpx.post(f"{base}/books", json=BOOK, timeout=10).status_code == 201
    assert httpx.get(f"{base}/books", timeout=10).json()["items"][0]["isbn"] == BOOK["isbn"]
    output = stop_with_ctrl_c(proc)
    assert "starting a throwaway MariaDB" in output
    database_line = next(line for line in output.splitlines() if line.startswith("Database: "))
    port = int(database_line.rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass  # the throwaway server is gone


def test_python_m_example_app_says_where_it_serves_only_once_the_port_is_bound(
    mysql_server: MySQLServer | ExternalServer,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYSQLPOOL_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "example_app", "--port", "0"],
        cwd=ROOT,
        env={**env, "DATABASE_URL": mysql_server.dsn, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Bookstore serving on http://127.0.0.1:"), line
        port = int(line.split("http://127.0.0.1:", 1)[1].split()[0])
        # The moment the line is printed, the port accepts connections: nothing is refused.
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        assert httpx.get(f"http://127.0.0.1:{port}/pool/live", timeout=30).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output


def test_python_m_example_app_on_a_port_in_use_fails_saying_how_to_choose_another() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "example_app", "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": "mysql://app:pw@127.0.0.1:1/app", "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "make run PORT=8080" in result.stderr
    assert "serving on" not in result.stdout


def test_make_run_takes_the_port_and_installs_only_what_serving_needs() -> None:
    plan = subprocess.run(
        ["make", "-n", "-B", "run", "PORT=8123", "VENV=/nonexistent-venv"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "-m example_app --host 127.0.0.1 --port 8123" in plan
    assert "pip install -q -e '.[example]'" in plan
    assert ".[dev" not in plan and "docs" not in plan
