"""Streaming endpoints and work after the response, through a real uvicorn and a real HTTP client.

The promises: a streaming endpoint never answers a complete 2xx for work that was not committed, never leaves a
transaction to the next request, and never shares its connection with another request; background work uses a
connection of its own. ``tests/_streaming_app.py`` is the app; each endpoint writes its ``text`` parameter into
``streaming_notes``, so the tests can ask the server what was committed.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiomysql
import httpx
import pymysql
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

import fastapi_mysqlpool as mp
from fastapi_mysqlpool.testing import ExternalServer, MySQLServer
from tests._fastapi_support import serve
from tests._uvicorn import uvicorn_server
from tests.conftest import query
from tests.test_fastapi_uvicorn import CLIENT_TIMEOUT, pool_stats, wait_for_stats


@pytest.fixture(scope="module")
def base_url(mysql_server: MySQLServer | ExternalServer, app_driver: str) -> Iterator[str]:
    admin = pymysql.connect(**mysql_server.root_connect_kwargs(), database=mysql_server.db, autocommit=True)
    try:
        query(admin, "DROP TABLE IF EXISTS streaming_notes")
        query(admin, "CREATE TABLE streaming_notes (id INT AUTO_INCREMENT PRIMARY KEY, text VARCHAR(100))")
        env = {"DATABASE_URL": mysql_server.dsn, "MYSQLPOOL_DRIVER": app_driver}
        with uvicorn_server("tests._streaming_app:app", env, ready="/pool/live") as url:
            yield url
    finally:
        query(admin, "DROP TABLE IF EXISTS streaming_notes")
        admin.close()


@pytest.fixture
async def http(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=CLIENT_TIMEOUT) as client:
        yield client
        # Whatever the test did, every connection is back in the pool once its request is over.
        await wait_for_stats(client, "default", "in_use", 0)
        await wait_for_stats(client, "tight", "in_use", 0)


def committed(server: MySQLServer | ExternalServer, text: str) -> bool:
    """Whether a row with ``text`` is committed, seen from a connection of its own."""
    conn = pymysql.connect(**server.root_connect_kwargs(), database=server.db)
    try:
        return bool(query(conn, "SELECT 1 FROM streaming_notes WHERE text = %s", text))
    finally:
        conn.close()


def items(path: str, body: str) -> list[dict[str, Any]]:
    """The items of a stream: JSON Lines, server-sent events or the raw endpoint's ``<id> <in_use>`` lines."""
    lines = [line for line in body.splitlines() if line]
    if path.endswith("/sse"):
        return [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]
    if path.endswith("/raw") or path.startswith("/response/"):
        first, *rest = lines
        connection_id, in_use = map(int, first.split())
        return [{"connection_id": connection_id, "in_use": in_use}, *({"committed": True} for _ in rest)]
    return [json.loads(line) for line in lines]


async def next_tight_state(http: httpx.AsyncClient) -> dict[str, Any]:
    """What the next acquirer of the ``tight`` pool's only connection finds."""
    response = await http.get("/tight/connection-state")
    assert response.status_code == 200
    state: dict[str, Any] = response.json()
    return state


# uvicorn closes the connection of a request whose app raised after the response had started, and does so once it
# has logged the error: a client that sends its next request on that connection before the close arrives has that
# request cut (a ReadError or RemoteProtocolError that has nothing to do with the endpoint under test). A request
# whose endpoint answers completely and raises afterwards asks for its connection to be closed, so that the
# client does not keep it for the next request.
CLOSE = {"Connection": "close"}

# --------------------------------------------------------------------------- generator endpoints

GENERATORS = ["/gen/conn", "/gen/cursor", "/gen/sse", "/gen/raw"]


@pytest.mark.parametrize("path", GENERATORS)
async def test_generator_endpoint_keeps_its_connection_and_commits_at_the_end(
    path: str, http: httpx.AsyncClient, mysql_server: MySQLServer | ExternalServer
) -> None:
    text = f"{path} kept"
    response = await http.post(path, params={"text": text})
    assert response.status_code == 200
    first, last = items(path, response.text)
    assert first["in_use"] == 1  # the body ran on a connection the pool still counted as lent
    assert last == {"committed": True}
    assert committed(mysql_server, text)


@pytest.mark.parametrize("path", [path for path in GENERATORS if path != "/gen/sse"])
async def test_generator_endpoint_aborts_the_stream_when_its_commit_fails(
    path: str, http: httpx.AsyncClient, mysql_server: MySQLServer | ExternalServer
) -> None:
    text = f"{path} lost"
    # The status line went out with the first item; all that is left to tell the client is to cut the stream.
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post(path, params={"text": text, "fail": "true"})
    assert not committed(mysql_server, text)
    assert (await http.post(path, params={"text": f"{path} after"})).status_code == 200


async def test_event_stream_ends_without_its_final_event_when_the_commit_fails(
    http: httpx.AsyncClient, mysql_server: MySQLServer | ExternalServer
) -> None:
    # FastAPI ends an event stream normally when its generator raises (the error then reaches uvicorn, which logs
    # it and closes the connection), so the stream's own last event is what tells the client that the work was
    # committed.
    response = await http.post("/gen/sse", params={"text": "event lost", "fail": "true"}, headers=CLOSE)
    assert response.status_code == 200
    assert [item.keys() for item in items("/gen/sse", response.text)] == [{"connection_id", "in_use"}]
    assert not committed(mysql_server, "event lost")
    assert (await http.post("/gen/sse", params={"text": "event after"})).status_code == 200


async def test_transaction_dependency_refuses_a_generator_endpoint(
    http: httpx.AsyncClient, mysql_server: MySQLServer | ExternalServer
) -> None:
    # The 500 is sent before the refusal reaches uvicorn.
    response = await http.post("/gen/transaction", params={"text": "refused"}, headers=CLOSE)
    assert response.status_code == 500
    assert not committed(mysql_server, "refused")


@pytest.mark.usefixtures("driver")
async def test_transaction_refusal_names_the_pattern_to_use(mysql_dsn: str) -> None:
    lifespan = mp.mysql_lifespan(mysql_dsn, maxsize=1)
    app = FastAPI(lifespan=lifespan)

    @app.exception_handler(RuntimeError)
    async def show(request: Request, exc: RuntimeError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=500)

    @app.get("/rows")
    async def rows(conn: mp.TransactionDep) -> AsyncIterator[int]:
        yield 1

    async with serve(app) as client:
        response = await client.get("/rows")
        assert response.status_code == 500
        error = response.json()["error"]
        assert "rows(), a generator path operation" in error
        assert "mp.ConnDep" in error and "await conn.commit()" in error and "Streaming from the database" in error
        assert lifespan.pool.stats()["in_use"] == 0


async def test_generator_endpoint_holds_its_connection_until_the_client_goes_away(
    http: httpx.AsyncClient, mysql_server: MySQLServer | ExternalServer
) -> None:
    async with http.stream("POST", "/gen/tight", params={"text": "abandoned", "hold": 60}) as response:
        assert response.status_code == 200
        # Kept referenced: an abandoned line iterator would close the stream when it is collected.
        lines = response.aiter_lines()
        assert "connection_id" in json.loads(await anext(lines))
        # The pool's only connection is lent to the stream; nobody else may use it meanwhile.
        assert (await pool_stats(http, "tight"))["in_use"] == 1
        assert (await http.get("/tight/connection-state")).status_code == 503
        assert (await pool_stats(http, "tight"))["in_use"] == 1
        await lines.aclose()
    # The client went away before the commit: the server cancels the body, and the pool rolls back.
    await wait_for_stats(http, "tight", "in_use", 0)
    state = await next_tight_state(http)
    assert state["in_transaction"] is False
    assert not committed(mysql_server, "abandoned")


# --------------------------------------------------------------------------- StreamingResponse from a handler


async def test_streaming_response_body_commits_on_a_connection_of_its_own(
    http: httpx.AsyncClient, mysql_server: MySQLServer | ExternalServer
) -> None:
    response = await http.post("/response/pool", params={"text": "own body"})
    assert response.status_code == 200
    first, last = items("/response/pool", response.text)
    assert first["in_use"] == 1 and last == {"committed": True}
    assert committed(mysql_server, "own body")


async def test_streaming_response_aborts_when_its_commit_fails(
    http: httpx.AsyncClient, mysql_server: MySQLServer | ExternalServer
) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post("/response/pool", params={"text": "own body lost", "fail": "true"})
    assert not committed(mysql_server, "own body lost")


@pytest.mark.parametrize(
    "path",
    [
        "/response/conn",
        "/response/cursor",
        "/response/transaction",
    ],
)
async def test_streaming_response_body_cannot_use_the_request_connection(
    path: str, http: httpx.AsyncClient, mysql_server: MySQLServer | ExternalServer
) -> None:
    text = f"{path} after release"
    # The handler returned, so its connection went back to the pool before the body ran: the body's first
    # statement fails, and the stream is cut instead of completing a 200 for work that was not committed.
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post(path, params={"text": text})
    await wait_for_stats(http, "tight", "in_use", 0)
    state = await next_tight_state(http)
    assert state["in_transaction"] is False
    assert not committed(mysql_server, text)


# --------------------------------------------------------------------------- work after the response


async def wait_until_committed(server: MySQLServer | ExternalServer, text: str) -> None:
    deadline = time.monotonic() + 15
    while not committed(server, text):
        assert time.monotonic() < deadline, f"{text!r} was not committed within 15 s"
        await asyncio.sleep(0.05)


async def test_background_task_uses_a_connection_of_its_own(
    http: httpx.AsyncClient, mysql_server: MySQLServer | ExternalServer
) -> None:
    before = await pool_stats(http, "tight")
    response = await http.post("/background/own", params={"text": "order"})
    assert response.status_code == 200
    # The pool has one connection: the task could only get one because the request had given its own back.
    await wait_until_committed(mysql_server, "order (background)")
    assert committed(mysql_server, "order")
    after = await pool_stats(http, "tight")
    assert after["timeouts_total"] == before["timeouts_total"]
    assert after["acquired_total"] - before["acquired_total"] == 2


async def test_background_task_cannot_use_the_request_connection(
    http: httpx.AsyncClient, mysql_server: MySQLServer | ExternalServer
) -> None:
    assert (await http.post("/background/request-conn", params={"text": "borrowed"})).status_code == 200
    deadline = time.monotonic() + 15
    while (outcome := (await http.get("/background/outcome", params={"text": "borrowed"})).json()["outcome"]) is None:
        assert time.monotonic() < deadline, "the background task did not finish within 15 s"
        await asyncio.sleep(0.05)
    assert outcome != "ok"
    assert "release" in outcome
    state = await next_tight_state(http)
    assert state["in_transaction"] is False
    assert not committed(mysql_server, "borrowed")


# --------------------------------------------------------------------------- generator endpoints in disguise


def logged(endpoint: Callable[..., AsyncIterator[dict[str, int]]]) -> Callable[..., AsyncIterator[dict[str, int]]]:
    """A decorator as apps write them: a plain function that calls the endpoint, with its signature."""

    @functools.wraps(endpoint)
    def wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[dict[str, int]]:
        return endpoint(*args, **kwargs)

    return wrapper


async def _rows_while_streaming(pool: mp.Pool, conn: aiomysql.Connection) -> AsyncIterator[dict[str, int]]:
    """Two items, each read on ``conn`` after the previous one was sent: the body uses its connection throughout."""
    for _ in range(2):
        async with conn.cursor() as cursor:
            await cursor.execute("SELECT CONNECTION_ID()")
            ((connection_id,),) = await cursor.fetchall()
        yield {"connection_id": int(connection_id), "in_use": int(pool.stats()["in_use"])}


class Rows:
    """A callable object whose ``__call__`` is the generator: FastAPI streams it like a generator function."""

    async def __call__(self, pool: mp.PoolDep, conn: mp.ConnDep) -> AsyncIterator[dict[str, int]]:
        async for row in _rows_while_streaming(pool, conn):
            yield row


@logged
async def wrapped_rows(pool: mp.PoolDep, conn: mp.ConnDep) -> AsyncIterator[dict[str, int]]:
    async for row in _rows_while_streaming(pool, conn):
        yield row


@pytest.mark.usefixtures("driver")
@pytest.mark.parametrize("endpoint", [wrapped_rows, Rows()], ids=["functools.wraps", "callable object"])
async def test_a_wrapped_or_object_generator_endpoint_keeps_its_connection_while_it_streams(
    endpoint: Callable[..., Any], mysql_dsn: str
) -> None:
    lifespan = mp.mysql_lifespan(mysql_dsn, maxsize=2)
    app = FastAPI(lifespan=lifespan)
    app.get("/rows")(endpoint)
    async with serve(app) as client:
        response = await client.get("/rows")
        assert response.status_code == 200
        rows = [json.loads(line) for line in response.text.splitlines()]
        assert len(rows) == 2 and rows[0] == rows[1]  # both read on one connection, still lent to the stream
        assert rows[0]["in_use"] == 1
        assert lifespan.pool.stats()["in_use"] == 0  # and given back once the response was sent
