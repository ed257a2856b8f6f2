"""The FastAPI integration in-process, with the lifespan running: dependencies, transactions, errors, settings."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import aiomysql
import pymysql
import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

import fastapi_mysqlpool as mp
from fastapi_mysqlpool._fastapi import COMMIT_UNKNOWN_DETAIL
from fastapi_mysqlpool._settings import MySQLPoolSettings, env_pool_options
from fastapi_mysqlpool.testing import ExternalServer, MySQLServer
from tests import _drivers
from tests._drivers import db_errors
from tests._fastapi_support import StartupFailed, closed_port, serve
from tests._proxy import FaultProxy
from tests.conftest import proxied_dsn, query

pytestmark = pytest.mark.usefixtures("driver")


@pytest.fixture
def notes(admin: pymysql.connections.Connection, mysql_server: MySQLServer | ExternalServer) -> Iterator[str]:
    """An empty table ``fastapi_notes (id, text UNIQUE)``; ``admin`` uses the test database from now on."""
    admin.select_db(mysql_server.db)
    query(admin, "DROP TABLE IF EXISTS fastapi_notes")
    query(admin, "CREATE TABLE fastapi_notes (id INT AUTO_INCREMENT PRIMARY KEY, text VARCHAR(100) UNIQUE)")
    yield "fastapi_notes"
    query(admin, "DROP TABLE IF EXISTS fastapi_notes")


# Named pools' dependencies live at module level, like a user's: FastAPI resolves annotations in module globals.
analytics = mp.pool_dependencies("analytics")
real = mp.pool_dependencies("real")


def note_texts(admin: pymysql.connections.Connection) -> list[str]:
    return [row[0] for row in query(admin, "SELECT text FROM fastapi_notes ORDER BY id")]


async def until(condition: Callable[[], bool]) -> None:
    while not condition():  # noqa: ASYNC110 - the pool has no event for this; poll its stats
        await asyncio.sleep(0.01)


def in_use(lifespan: mp.MySQLLifespan) -> int:
    return int(lifespan.pool.stats()["in_use"])


# --------------------------------------------------------------------------- dependencies


async def test_conn_cursor_and_dict_cursor_dependencies_serve_queries(mysql_dsn: str) -> None:
    lifespan = mp.mysql_lifespan(mysql_dsn, maxsize=2)
    app = FastAPI(lifespan=lifespan)

    @app.get("/conn")
    async def conn_endpoint(conn: mp.ConnDep) -> dict[str, Any]:
        async with conn.cursor() as cursor:
            await cursor.execute("SELECT 41 + 1")
            return {"answer": (await cursor.fetchone())[0]}

    @app.get("/cursor")
    async def cursor_endpoint(cursor: Annotated[aiomysql.Cursor, Depends(mp.get_cursor)]) -> dict[str, Any]:
        await cursor.execute("SELECT 'tuple'")
        return {"row": list(await cursor.fetchone())}

    @app.get("/dict")
    async def dict_endpoint(cursor: mp.DictCursorDep) -> dict[str, Any]:
        await cursor.execute("SELECT 1 AS one, 'two' AS two")
        return {"row": await cursor.fetchone()}

    @app.get("/pool")
    async def pool_endpoint(pool: mp.PoolDep) -> dict[str, Any]:
        return {"maxsize": pool.maxsize}

    async with serve(app) as client:
        assert (await client.get("/conn")).json() == {"answer": 42}
        assert (await client.get("/cursor")).json() == {"row": ["tuple"]}
        assert (await client.get("/dict")).json() == {"row": {"one": 1, "two": "two"}}
        assert (await client.get("/pool")).json() == {"maxsize": 2}
        assert in_use(lifespan) == 0
        pool = lifespan.pool
    assert pool.closed


async def test_connection_is_back_in_the_pool_before_the_response_is_sent(mysql_dsn: str) -> None:
    lifespan = mp.mysql_lifespan(mysql_dsn)
    app = FastAPI(lifespan=lifespan)
    seen_while_sending: list[int] = []

    class RecordingResponse(JSONResponse):
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            seen_while_sending.append(in_use(lifespan))
            await super().__call__(scope, receive, send)

    @app.get("/", response_class=RecordingResponse)
    async def endpoint(cursor: mp.CursorDep) -> dict[str, Any]:
        await cursor.execute("SELECT 1")
        assert in_use(lifespan) == 1
        return {"ok": True}

    async with serve(app) as client:
        assert (await client.get("/")).status_code == 200
    assert seen_while_sending == [0]


async def test_cursor_and_transaction_share_the_request_connection(
    mysql_dsn: str, notes: str, admin: pymysql.connections.Connection
) -> None:
    app = FastAPI(lifespan=mp.mysql_lifespan(mysql_dsn))

    @app.post("/notes")
    async def add(text: str, conn: mp.TransactionDep, cursor: mp.CursorDep) -> dict[str, Any]:
        await cursor.execute("INSERT INTO fastapi_notes (text) VALUES (%s)", (text,))
        await cursor.execute("SELECT CONNECTION_ID()")
        (cursor_connection,) = await cursor.fetchone()
        return {"same": cursor_connection == conn.thread_id()}

    async with serve(app) as client:
        assert (await client.post("/notes", params={"text": "shared"})).json() == {"same": True}
    assert note_texts(admin) == ["shared"]


# --------------------------------------------------------------------------- transactions


async def test_transaction_commits_before_the_response(
    mysql_dsn: str, notes: str, admin: pymysql.connections.Connection
) -> None:
    app = FastAPI(lifespan=mp.mysql_lifespan(mysql_dsn))

    @app.post("/notes", status_code=201)
    async def add(text: str, conn: mp.TransactionDep) -> dict[str, Any]:
        async with conn.cursor() as cursor:
            await cursor.execute("INSERT INTO fastapi_notes (text) VALUES (%s)", (text,))
        return {"text": text}

    async with serve(app) as client:
        response = await client.post("/notes", params={"text": "kept"})
        assert response.status_code == 201
        # Visible to another session as soon as the client has the answer: committed, not merely pending.
        assert note_texts(admin) == ["kept"]


async def test_transaction_rolls_back_on_http_exception(
    mysql_dsn: str, notes: str, admin: pymysql.connections.Connection
) -> None:
    lifespan = mp.mysql_lifespan(mysql_dsn)
    app = FastAPI(lifespan=lifespan)

    @app.post("/notes")
    async def add(text: str, conn: mp.TransactionDep) -> None:
        async with conn.cursor() as cursor:
            await cursor.execute("INSERT INTO fastapi_notes (text) VALUES (%s)", (text,))
        raise HTTPException(409, "changed my mind")

    async with serve(app) as client:
        response = await client.post("/notes", params={"text": "dropped"})
        assert (response.status_code, response.json()) == (409, {"detail": "changed my mind"})
        assert in_use(lifespan) == 0
        assert lifespan.pool.stats()["closed_total"]["broken"] == 0  # rolled back and reused, not discarded
    assert note_texts(admin) == []


async def test_transaction_rolls_back_when_the_handler_crashes(
    mysql_dsn: str, notes: str, admin: pymysql.connections.Connection
) -> None:
    lifespan = mp.mysql_lifespan(mysql_dsn)
    app = FastAPI(lifespan=lifespan)

    @app.post("/notes")
    async def add(text: str, conn: mp.TransactionDep) -> None:
        async with conn.cursor() as cursor:
            await cursor.execute("INSERT INTO fastapi_notes (text) VALUES (%s)", (text,))
        raise ZeroDivisionError("a bug after the insert")

    async with serve(app) as client:
        assert (await client.post("/notes", params={"text": "dropped"})).status_code == 500
        assert in_use(lifespan) == 0
    assert note_texts(admin) == []


async def test_integrity_error_in_a_transaction_keeps_the_connection(
    mysql_dsn: str, notes: str, admin: pymysql.connections.Connection
) -> None:
    lifespan = mp.mysql_lifespan(mysql_dsn, minsize=1, maxsize=1)
    app = FastAPI(lifespan=lifespan)

    @app.post("/notes")
    async def add(text: str, conn: mp.TransactionDep) -> dict[str, Any]:
        async with conn.cursor() as cursor:
            try:
                await cursor.execute("INSERT INTO fastapi_notes (text) VALUES (%s)", (text,))
            except db_errors.IntegrityError:
                raise HTTPException(409, "duplicate") from None
        return {"text": text}

    async with serve(app) as client:
        assert (await client.post("/notes", params={"text": "once"})).status_code == 200
        assert (await client.post("/notes", params={"text": "once"})).status_code == 409
        assert (await client.post("/notes", params={"text": "twice"})).status_code == 200
        stats = lifespan.pool.stats()
    assert stats["created_total"] == 1 and stats["closed_total"]["broken"] == 0
    assert note_texts(admin) == ["once", "twice"]


@pytest.mark.parametrize("declared", ["Depends", "Annotated"])
async def test_failed_commit_is_never_2xx(
    declared: str, mysql_dsn: str, notes: str, admin: pymysql.connections.Connection
) -> None:
    lifespan = mp.mysql_lifespan(mysql_dsn)
    app = FastAPI(lifespan=lifespan)

    async def insert_then_lose_connection(conn: aiomysql.Connection) -> None:
        async with conn.cursor() as cursor:
            await cursor.execute("INSERT INTO fastapi_notes (text) VALUES ('lost')")
        # The server ends the session after the handler's last statement, before the commit.
        query(admin, f"KILL {conn.thread_id()}")

    if declared == "Depends":

        @app.post("/notes")
        async def add(conn: aiomysql.Connection = Depends(mp.get_transaction)) -> dict[str, Any]:  # noqa: B008
            await insert_then_lose_connection(conn)
            return {"saved": True}

    else:

        @app.post("/notes")
        async def add_annotated(conn: mp.TransactionDep) -> dict[str, Any]:
            await insert_then_lose_connection(conn)
            return {"saved": True}

    async with serve(app) as client:
        response = await client.post("/notes")
        assert response.status_code >= 500
        assert in_use(lifespan) == 0
        assert lifespan.pool.stats()["closed_total"]["broken"] == 1
    assert note_texts(admin) == []


async def test_streaming_response_reads_inside_its_own_acquire(mysql_dsn: str) -> None:
    lifespan = mp.mysql_lifespan(mysql_dsn)
    app = FastAPI(lifespan=lifespan)

    @app.get("/numbers")
    async def numbers(pool: mp.PoolDep) -> StreamingResponse:
        async def lines() -> AsyncIterator[bytes]:
            async with pool.acquire() as conn, conn.cursor(_drivers.unbuffered_cursor()) as cursor:
                await cursor.execute(
                    "WITH RECURSIVE s (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 100) SELECT n FROM s"
                )
                async for (n,) in cursor:
                    yield f"{n}\n".encode()

        return StreamingResponse(lines(), media_type="text/plain")

    async with serve(app) as client:
        response = await client.get("/numbers")
        assert response.text.split() == [str(n) for n in range(1, 101)]
        assert in_use(lifespan) == 0


# --------------------------------------------------------------------------- 503


async def test_exhausted_pool_answers_503_with_retry_after(mysql_dsn: str) -> None:
    lifespan = mp.mysql_lifespan(mysql_dsn, minsize=1, maxsize=1, acquire_timeout=0.2, max_waiting=1)
    app = FastAPI(lifespan=lifespan)

    @app.get("/")
    async def endpoint(conn: mp.ConnDep) -> dict[str, Any]:
        return {"ok": True}

    async with serve(app) as client:
        async with lifespan.pool.acquire():
            timed_out = await client.get("/")
            waiting = asyncio.ensure_future(client.get("/"))  # the one allowed waiter
            await until(lambda: lifespan.pool.stats()["waiting"] == 1)
            rejected = await client.get("/")
            waited = await waiting
        assert (await client.get("/")).status_code == 200
    for response, reason in ((timed_out, "in time"), (waited, "in time"), (rejected, "waiting")):
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert reason in response.json()["detail"]


async def test_unreachable_database_answers_503_after_a_degraded_start() -> None:
    dsn = f"mysql://app:secret-pw@127.0.0.1:{closed_port()}/app"
    lifespan = mp.mysql_lifespan(dsn, wait_open=False, acquire_timeout=0.3, fail_fast=True)
    app = FastAPI(lifespan=lifespan)

    @app.get("/")
    async def endpoint(conn: mp.ConnDep) -> dict[str, Any]:
        return {"ok": True}

    async with serve(app) as client:
        response = await client.get("/")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "secret-pw" not in response.text
    # Refused at once (fail_fast) or at the acquire deadline, depending on whether a connect is in flight.
    reasons = ("The database is unreachable.", "No database connection became available in time.")
    assert response.json()["detail"] in reasons


async def test_degraded_start_serves_once_the_database_answers(
    mysql_server: MySQLServer | ExternalServer, proxy: FaultProxy
) -> None:
    proxy.blackhole()
    lifespan = mp.mysql_lifespan(
        proxied_dsn(mysql_server, proxy), wait_open=False, connect_timeout=0.5, acquire_timeout=0.3
    )
    app = FastAPI(lifespan=lifespan)

    @app.get("/")
    async def endpoint(cursor: mp.CursorDep) -> dict[str, Any]:
        await cursor.execute("SELECT 1")
        return {"ok": True}

    async with serve(app) as client:
        assert (await client.get("/")).status_code == 503
        proxy.heal()
        deadline = time.monotonic() + 15
        while (response := await client.get("/")).status_code != 200:
            assert response.status_code == 503
            assert time.monotonic() < deadline, "the pool did not reconnect within 15 s of the network healing"


# --------------------------------------------------------------------------- startup and shutdown


async def test_startup_fails_clearly_when_the_database_is_unreachable() -> None:
    dsn = f"mysql://app:secret-pw@127.0.0.1:{closed_port()}/app"
    app = FastAPI(lifespan=mp.mysql_lifespan(dsn, open_timeout=0.5))
    with pytest.raises(StartupFailed) as failed:
        async with serve(app):
            pass
    message = str(failed.value)
    port = dsn.rsplit(":", 1)[1].split("/")[0]
    # One name for the pool, the one its own errors, logs and stats use: not the lifespan's key "default" as well.
    assert f"cannot open MySQL pool '127.0.0.1:{port}/app' at mysql://app:***@127.0.0.1:{port}/app" in message
    assert f"pool '127.0.0.1:{port}/app' could not open" in message
    assert "'default'" not in message
    assert "secret-pw" not in message


async def test_startup_fails_clearly_on_a_wrong_password(mysql_server: MySQLServer | ExternalServer) -> None:
    dsn = f"mysql://{mysql_server.user}:wrong-pw@{mysql_server.host}:{mysql_server.port}/"
    with pytest.raises(mp.PoolError) as failed:
        async with mp.mysql_lifespan(dsn):
            pass
    message = str(failed.value)
    assert "Access denied" in message
    assert "wrong-pw" not in message


async def test_shutdown_waits_for_requests_then_closes_the_pool(mysql_dsn: str) -> None:
    lifespan = mp.mysql_lifespan(mysql_dsn, close_timeout=0.2)
    async with lifespan:
        pool = lifespan.pool
        held = await pool.acquire()
    assert pool.closed
    assert pool.stats()["closed_total"]["terminated"] == 1  # the drain was bounded by close_timeout
    assert _drivers.closed(held)
    with pytest.raises(RuntimeError, match="not open"):
        _ = lifespan.pool


# --------------------------------------------------------------------------- configuration


async def test_database_url_and_mysqlpool_variables_configure_the_pool(
    mysql_dsn: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("DATABASE_URL", mysql_dsn)
    monkeypatch.setenv("MYSQLPOOL_MAXSIZE", "4")
    monkeypatch.setenv("MYSQLPOOL_ACQUIRE_TIMEOUT", "2.5")
    monkeypatch.setenv("MYSQLPOOL_PRE_PING", "off")
    from_env = mp.mysql_lifespan()
    async with from_env:
        options = from_env.pool.options
        assert (options.maxsize, options.acquire_timeout, options.pre_ping) == (4, 2.5, False)
    # Keyword arguments win over the DSN's query string, which wins over the environment.
    explicit = mp.mysql_lifespan(mysql_dsn + "?maxsize=6&acquire_timeout=1.5", maxsize=5)
    async with explicit:
        options = explicit.pool.options
        assert (options.maxsize, options.acquire_timeout, options.pre_ping) == (5, 1.5, False)


async def test_dotenv_file_configures_the_pool(mysql_dsn: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"DATABASE_URL={mysql_dsn}\nMYSQLPOOL_MINSIZE=2\nMYSQLPOOL_NAME=from-dotenv\n")
    lifespan = mp.mysql_lifespan()
    async with lifespan:
        assert (lifespan.pool.name, lifespan.pool.size) == ("from-dotenv", 2)


async def test_missing_database_url_fails_startup_clearly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(mp.PoolError, match="pass a DSN to mysql_lifespan\\(\\) or set DATABASE_URL"):
        async with mp.mysql_lifespan():
            pass


async def test_invalid_environment_value_names_the_option(
    mysql_dsn: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MYSQLPOOL_MAXSIZE", "lots")
    with pytest.raises(ValueError, match="'maxsize' in the environment \\(MYSQLPOOL_\\*\\): 'lots'"):
        async with mp.mysql_lifespan(mysql_dsn):
            pass


async def test_a_misspelt_environment_option_fails_startup_naming_the_closest(
    mysql_dsn: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MYSQLPOOL_MAXSISE", "5")
    with pytest.raises(
        ValueError,
        match=r"unknown pool option 'MYSQLPOOL_MAXSISE' in the environment \(did you mean 'MYSQLPOOL_MAXSIZE'\?\)",
    ):
        async with mp.mysql_lifespan(mysql_dsn):
            pass


async def test_a_misspelt_option_in_the_dotenv_file_fails_startup_naming_the_closest(
    mysql_dsn: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("MYSQLPOOL_MINSIZE=1\nmysqlpool_acquire_timout=2\n")
    with pytest.raises(
        ValueError,
        match=r"'mysqlpool_acquire_timout' in the \.env file \(did you mean 'MYSQLPOOL_ACQUIRE_TIMEOUT'\?\)",
    ):
        async with mp.mysql_lifespan(mysql_dsn):
            pass


def test_every_pool_option_has_an_environment_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    fields = dataclasses.fields(mp.PoolOptions)
    for f in fields:
        monkeypatch.setenv(f"MYSQLPOOL_{f.name.upper()}", "from-env" if f.default is None else str(f.default))
    options = env_pool_options(MySQLPoolSettings())
    assert options == {f.name: "from-env" if f.default is None else f.default for f in fields}


def test_malformed_dsn_fails_when_the_lifespan_is_made() -> None:
    with pytest.raises(ValueError, match="scheme") as failed:
        mp.mysql_lifespan("postgres://app:secret-pw@db/app")
    assert "secret-pw" not in str(failed.value)


# --------------------------------------------------------------------------- lifespans and named pools


async def test_user_lifespan_runs_inside_and_its_state_is_kept(mysql_dsn: str) -> None:
    @asynccontextmanager
    async def own_lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with database.pool.acquire() as conn, conn.cursor() as cursor:  # the pool is open already
            await cursor.execute("SELECT 'from startup'")
            (greeting,) = await cursor.fetchone()
        yield {"greeting": greeting}

    database = mp.mysql_lifespan(mysql_dsn, lifespan=own_lifespan)
    app = FastAPI(lifespan=database)

    @app.get("/")
    async def endpoint(request: Request, cursor: mp.CursorDep) -> dict[str, Any]:
        await cursor.execute("SELECT 1")
        return {"greeting": request.state.greeting, "pools": sorted(request.state.mysqlpools)}

    async with serve(app) as client:
        assert (await client.get("/")).json() == {"greeting": "from startup", "pools": ["default"]}


async def test_usable_as_a_context_manager_inside_an_own_lifespan(mysql_dsn: str) -> None:
    @asynccontextmanager
    async def own_lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with mp.mysql_lifespan(mysql_dsn, maxsize=3) as state:
            yield {**state, "flag": "set"}

    app = FastAPI(lifespan=own_lifespan)

    @app.get("/")
    async def endpoint(request: Request, pool: mp.PoolDep) -> dict[str, Any]:
        return {"flag": request.state.flag, "maxsize": pool.maxsize}

    async with serve(app) as client:
        assert (await client.get("/")).json() == {"flag": "set", "maxsize": 3}


async def test_named_pools_have_stable_dependencies_of_their_own(mysql_dsn: str) -> None:
    assert mp.pool_dependencies("analytics").get_conn is analytics.get_conn
    assert mp.pool_dependencies().get_conn is mp.get_conn
    main = mp.mysql_lifespan(mysql_dsn, maxsize=2)
    both = mp.mysql_lifespan(mysql_dsn, name="analytics", lifespan=main, maxsize=1)
    app = FastAPI(lifespan=both)

    @app.get("/")
    async def endpoint(
        default_pool: mp.PoolDep,
        analytics_conn: Annotated[aiomysql.Connection, Depends(analytics.get_conn)],
        analytics_pool: Annotated[mp.Pool, Depends(analytics.get_pool)],
    ) -> dict[str, Any]:
        return {
            "default": default_pool.maxsize,
            "analytics": [analytics_pool.name, analytics_pool.stats()["in_use"]],
        }

    async with serve(app) as client:
        assert (await client.get("/")).json() == {"default": 2, "analytics": ["analytics", 1]}


async def test_two_pools_with_one_name_fail_startup(mysql_dsn: str) -> None:
    twice = mp.mysql_lifespan(mysql_dsn, lifespan=mp.mysql_lifespan(mysql_dsn))
    with pytest.raises(ValueError, match="two MySQL pools are named 'default'"):
        async with twice:
            pass


async def test_dependency_overrides_replace_the_connection_or_the_pool(mysql_dsn: str, make_pool: Any) -> None:
    app = FastAPI(lifespan=mp.mysql_lifespan(mysql_dsn, name="real"))
    other = await make_pool(name="test-double", maxsize=1)

    @app.get("/conn")
    async def conn_endpoint(conn: Annotated[Any, Depends(real.get_conn)]) -> dict[str, Any]:
        return {"conn": conn}

    @app.get("/cursor")
    async def cursor_endpoint(cursor: Annotated[aiomysql.Cursor, Depends(real.get_cursor)]) -> dict[str, Any]:
        await cursor.execute("SELECT 1")
        return {"pool_in_use": other.stats()["in_use"]}

    async def fake_conn() -> str:
        return "fake"

    async def other_pool() -> mp.Pool:
        return other

    app.dependency_overrides[real.get_conn] = fake_conn
    async with serve(app) as client:
        assert (await client.get("/conn")).json() == {"conn": "fake"}
        app.dependency_overrides = {real.get_pool: other_pool}
        # The cursor comes from the overriding pool: get_cursor depends on get_conn, which depends on get_pool.
        assert (await client.get("/cursor")).json() == {"pool_in_use": 1}
    assert other.stats()["acquired_total"] == 1


def test_missing_pool_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match=r"FastAPI\(lifespan=mp.mysql_lifespan"):
        mp.pools_of(HTTPConnection({"type": "http", "state": {}}))


async def test_unknown_pool_name_is_a_clear_error(mysql_dsn: str) -> None:
    async with mp.mysql_lifespan(mysql_dsn) as state:
        connection = HTTPConnection({"type": "http", "state": state})
        with pytest.raises(RuntimeError, match=r"no MySQL pool named 'missing' on this app \(open: 'default'\)"):
            await mp.pool_dependencies("missing").get_pool(connection)


async def test_dependencies_called_outside_fastapi_fail_clearly_and_hold_nothing(mysql_dsn: str) -> None:
    # Outside a FastAPI request there is no function-scoped exit stack to release on: the
    # dependency must refuse before it acquires, or the connection would never come back.
    async with mp.mysql_lifespan(mysql_dsn) as state:
        connection = HTTPConnection({"type": "http", "state": state})
        pool = mp.pools_of(connection)["default"]
        with pytest.raises(RuntimeError, match=r"FastAPI >= 0\.121\.1"):
            await mp.get_conn(connection, pool)
        assert pool.stats()["in_use"] == 0
        async with pool.acquire() as conn:
            for dependency in (mp.get_cursor, mp.get_dict_cursor, mp.get_transaction):
                with pytest.raises(RuntimeError, match=r"exit stacks for its dependencies"):
                    await dependency(connection, conn)
            assert conn.get_transaction_status() is False  # no BEGIN was sent
        assert pool.stats()["in_use"] == 0


# --------------------------------------------------------------------------- Starlette


async def test_plain_starlette_app_with_error_handlers(mysql_dsn: str) -> None:
    lifespan = mp.mysql_lifespan(mysql_dsn, maxsize=1, acquire_timeout=0.2)

    async def endpoint(request: Request) -> Response:
        pool = await mp.get_pool(request)
        async with pool.acquire() as conn, conn.cursor() as cursor:
            await cursor.execute("SELECT 'starlette'")
            (value,) = await cursor.fetchone()
        return JSONResponse({"value": value})

    app = Starlette(lifespan=lifespan, routes=[Route("/", endpoint)])
    mp.install_error_handlers(app)
    async with serve(app) as client:
        assert (await client.get("/")).json() == {"value": "starlette"}
        async with lifespan.pool.acquire():
            exhausted = await client.get("/")
    assert exhausted.status_code == 503
    assert exhausted.headers["retry-after"] == "1"
    assert exhausted.json() == {"detail": "No database connection became available in time."}


async def test_installed_handlers_answer_a_lost_connection_with_503(mysql_dsn: str, admin: Any) -> None:
    app = FastAPI(lifespan=mp.mysql_lifespan(mysql_dsn, minsize=1, maxsize=2))
    mp.install_error_handlers(app)

    @app.get("/killed")
    async def killed(conn: mp.ConnDep) -> dict[str, str]:
        async with conn.cursor() as cur:
            await cur.execute("SELECT CONNECTION_ID()")
            (cid,) = await cur.fetchone()
            admin.cursor().execute(f"KILL {cid}")
            await cur.execute("SELECT 1")
        return {"unreachable": "code"}

    @app.get("/typo")
    async def typo(conn: mp.ConnDep) -> dict[str, str]:
        async with conn.cursor() as cur:
            await cur.execute("SELEC 1")
        return {"unreachable": "code"}

    async with serve(app) as client:
        lost = await client.get("/killed")
        assert lost.status_code == 503
        assert lost.headers["retry-after"]
        assert (await client.get("/typo")).status_code == 500  # a bug stays a bug: the app's 500 path


async def test_the_documented_schema_pattern_starts_twice_under_warnings_as_errors(
    mysql_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    # pytest runs this with filterwarnings = error: a server note re-raised as db_errors.Warning would fail it.
    @asynccontextmanager
    async def create_schema(app: FastAPI) -> AsyncIterator[None]:
        async with database.pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute("DROP TABLE IF EXISTS fastapi_schema_twice_missing")
            await cur.execute("CREATE TABLE IF NOT EXISTS fastapi_schema_twice (id INT PRIMARY KEY, note TEXT)")
        yield

    database = mp.mysql_lifespan(mysql_dsn, lifespan=create_schema)
    app = FastAPI(lifespan=database)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # the second start finds the table: the server answers with a note
            async with serve(app):
                pass
    assert [str(w.message) for w in caught] == []
    # Real warnings are still reported: a value out of range, accepted because of a non-strict sql_mode.
    async with database, database.pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("CREATE TEMPORARY TABLE fastapi_schema_small (n TINYINT)")
        await cur.execute("SET SESSION sql_mode = ''")
        if _drivers.current() == "aiomysql":  # aiomysql raises server warnings as Python warnings
            with pytest.warns(db_errors.Warning, match="Out of range value"):
                await cur.execute("INSERT INTO fastapi_schema_small VALUES (1000)")
        else:  # asyncmy logs them
            with caplog.at_level(logging.WARNING, logger="asyncmy"):
                await cur.execute("INSERT INTO fastapi_schema_small VALUES (1000)")
            assert any("Out of range value" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- errors that are not unavailability


async def test_a_commit_of_unknown_outcome_is_a_logged_500_without_retry_after(
    mysql_dsn: str, notes: str, admin: pymysql.connections.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    # The connection is lost during COMMIT: the server may have committed. A 503 with Retry-After would invite
    # the client to send the write again, and apply it twice.
    app = FastAPI(lifespan=mp.mysql_lifespan(mysql_dsn))
    mp.install_error_handlers(app)

    async def insert_then_lose_connection(conn: aiomysql.Connection) -> None:
        async with conn.cursor() as cursor:
            await cursor.execute("INSERT INTO fastapi_notes (text) VALUES ('unknown')")
        query(admin, f"KILL {conn.thread_id()}")  # the next command on conn is the COMMIT

    @app.post("/transaction")
    async def transaction(conn: mp.TransactionDep) -> dict[str, bool]:
        await insert_then_lose_connection(conn)
        return {"saved": True}

    @app.post("/run")
    async def run(run: mp.RunTransactionDep) -> dict[str, bool]:
        await run(insert_then_lose_connection)
        return {"saved": True}

    async with serve(app) as client:
        for path in ("/transaction", "/run"):
            caplog.clear()
            with caplog.at_level(logging.ERROR, logger="fastapi_mysqlpool"):
                response = await client.post(path)
            assert (response.status_code, response.json()) == (500, {"detail": COMMIT_UNKNOWN_DETAIL}), path
            assert "retry-after" not in response.headers, path
            logged = [r for r in caplog.records if getattr(r, "event", None) == "commit_outcome_unknown"]
            assert len(logged) == 1 and logged[0].levelno == logging.ERROR, path
            assert f"POST {path}" in logged[0].getMessage()
            assert isinstance(logged[0].exc_info and logged[0].exc_info[1], mp.CommitOutcomeUnknown)
    assert note_texts(admin) == []


@pytest.mark.parametrize("handlers", [True, False], ids=["error handlers", "no error handlers"])
async def test_pool_misuse_is_a_500_not_a_503(handlers: bool, mysql_dsn: str) -> None:
    # Using a connection after its release is a bug in the app, not the database being unavailable: no
    # Retry-After, and the app's 500 path (its error reporting) sees it.
    lifespan = mp.mysql_lifespan(mysql_dsn)
    app = FastAPI(lifespan=lifespan)
    if handlers:
        mp.install_error_handlers(app)

    async def use_a_released_connection(pool: mp.Pool) -> None:
        async with pool.acquire() as conn:
            pass
        async with conn.cursor() as cursor:
            await cursor.execute("SELECT 1")

    @app.get("/handler")
    async def handler(pool: mp.PoolDep) -> dict[str, str]:
        await use_a_released_connection(pool)
        return {"unreachable": "code"}

    @app.get("/run")
    async def run(pool: mp.PoolDep, run: mp.RunTransactionDep) -> dict[str, str]:
        async def transaction(conn: aiomysql.Connection) -> None:
            await use_a_released_connection(pool)

        await run(transaction)
        return {"unreachable": "code"}

    async with serve(app) as client:
        for path in ("/handler", "/run"):
            response = await client.get(path)
            assert response.status_code == 500, (path, response.text)
            assert "retry-after" not in response.headers, path
        assert in_use(lifespan) == 0


# --------------------------------------------------------------------------- what is known of each route


async def test_a_route_never_gets_the_read_routing_of_a_collected_route_with_its_id(
    mysql_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whether a route also writes (so its reads go to its primary connection) is worked out once per route. An
    # object's id() is reused once the object is collected, as routes are when a test's app is dropped: the
    # allocator makes that collision at will; here every object gets one id, so it happens every time.
    from fastapi_mysqlpool import _fastapi

    monkeypatch.setattr(_fastapi, "id", lambda obj: 1, raising=False)

    def app_with(path: str, writes: bool) -> FastAPI:
        app = FastAPI(lifespan=mp.mysql_lifespan(mysql_dsn, replicas=mysql_dsn))
        app.include_router(mp.pool_router)
        if writes:

            @app.get(path)
            async def read_then_write(cur: mp.ReadCursorDep, conn: mp.ConnDep) -> None:
                await cur.execute("SELECT 1")

        else:

            @app.get(path)
            async def read(cur: mp.ReadCursorDep) -> None:
                await cur.execute("SELECT 1")

        return app

    async def acquired(client: Any) -> dict[str, int]:
        pools = (await client.get("/pool/stats")).json()["pools"]
        return {name: stats["acquired_total"] for name, stats in pools.items()}

    writer = app_with("/read-then-write", writes=True)
    async with serve(writer) as client:
        assert (await client.get("/read-then-write")).status_code == 200
        assert await acquired(client) == {"default": 1, "default.replicas": 0}  # it writes: it reads where it writes
    del writer
    gc.collect()
    reader = app_with("/read", writes=False)
    async with serve(reader) as client:
        assert (await client.get("/read")).status_code == 200
        assert await acquired(client) == {"default": 0, "default.replicas": 1}


async def test_overriding_get_pool_redirects_every_dependency_reads_included(
    mysql_dsn: str, private_mysql_server: MySQLServer, make_pool: Any
) -> None:
    # The app reads on replicas; a test points get_pool at a pool of its own server, and then every dependency,
    # the read ones too, must talk to that server only.
    app = FastAPI(lifespan=mp.mysql_lifespan(mysql_dsn, replicas=mysql_dsn))
    other = await make_pool(private_mysql_server.dsn, maxsize=2)

    async def port_of(conn: aiomysql.Connection) -> int:
        async with conn.cursor() as cursor:
            await cursor.execute("SELECT @@port")
            ((port,),) = await cursor.fetchall()
        return int(port)

    @app.get("/conn")
    async def conn(conn: mp.ConnDep) -> int:
        return await port_of(conn)

    @app.get("/cursor")
    async def cursor(cursor: mp.CursorDep) -> int:
        return await port_of(cursor.connection)

    @app.get("/dict-cursor")
    async def dict_cursor(cursor: mp.DictCursorDep) -> int:
        return await port_of(cursor.connection)

    @app.get("/transaction")
    async def transaction(conn: mp.TransactionDep) -> int:
        return await port_of(conn)

    @app.get("/run")
    async def run(run: mp.RunTransactionDep) -> int:
        return int(await run(port_of))

    @app.get("/read-conn")
    async def read_conn(conn: mp.ReadConnDep) -> int:
        return await port_of(conn)

    @app.get("/read-cursor")
    async def read_cursor(cursor: mp.ReadCursorDep) -> int:
        return await port_of(cursor.connection)

    async def other_pool() -> mp.Pool:
        return other

    paths = ["/conn", "/cursor", "/dict-cursor", "/transaction", "/run", "/read-conn", "/read-cursor"]
    async with serve(app) as client:
        served = {path: (await client.get(path)).json() for path in paths}
        assert set(served.values()) != {private_mysql_server.port}  # without the override: the app's own server
        app.dependency_overrides[mp.get_pool] = other_pool
        served = {path: (await client.get(path)).json() for path in paths}
    assert served == dict.fromkeys(paths, private_mysql_server.port)
    assert other.stats()["acquired_total"] == len(paths)


# --------------------------------------------------------------------------- the user's own yield dependencies


async def test_a_request_scoped_yield_dependency_commits_after_the_yield_on_a_connection_still_its_own(
    mysql_dsn: str, notes: str, admin: pymysql.connections.Connection
) -> None:
    """FastAPI runs a default-scope generator's exit once the response has been sent, and a dependency's own
    dependencies are exited after it: the connection it was given must still be its own when it commits."""
    lifespan = mp.mysql_lifespan(mysql_dsn, maxsize=1)
    app = FastAPI(lifespan=lifespan)
    in_use_after_yield: list[int] = []

    async def unit_of_work(conn: mp.ConnDep, cursor: mp.CursorDep) -> AsyncIterator[aiomysql.Cursor]:
        await conn.begin()
        try:
            yield cursor
        except Exception:
            await conn.rollback()
            raise
        in_use_after_yield.append(in_use(lifespan))
        await cursor.execute("INSERT INTO fastapi_notes (text) VALUES ('after the yield')")
        await conn.commit()

    @app.post("/notes")
    async def add(text: str, cursor: aiomysql.Cursor = Depends(unit_of_work)) -> dict[str, Any]:  # noqa: B008
        await cursor.execute("INSERT INTO fastapi_notes (text) VALUES (%s)", (text,))
        if text == "fails":
            raise HTTPException(409)
        return {"text": text}

    async with serve(app) as client:
        assert (await client.post("/notes", params={"text": "kept"})).status_code == 200
        await until(lambda: in_use(lifespan) == 0)
        assert in_use_after_yield == [1]
        assert note_texts(admin) == ["kept", "after the yield"]
        assert (await client.post("/notes", params={"text": "fails"})).status_code == 409
        await until(lambda: in_use(lifespan) == 0)
        assert note_texts(admin) == ["kept", "after the yield"]  # rolled back in the dependency's except
        assert lifespan.pool.stats()["closed_total"]["broken"] == 0


async def test_a_function_scoped_yield_dependency_commits_before_the_response(
    mysql_dsn: str, notes: str, admin: pymysql.connections.Connection
) -> None:
    lifespan = mp.mysql_lifespan(mysql_dsn, maxsize=1)
    app = FastAPI(lifespan=lifespan)

    async def unit_of_work(conn: mp.ConnDep) -> AsyncIterator[aiomysql.Connection]:
        await conn.begin()
        yield conn
        await conn.commit()

    @app.post("/notes")
    async def add(
        text: str,
        conn: aiomysql.Connection = Depends(unit_of_work, scope="function"),  # noqa: B008
    ) -> dict[str, Any]:
        async with conn.cursor() as cursor:
            await cursor.execute("INSERT INTO fastapi_notes (text) VALUES (%s)", (text,))
        return {"text": text}

    async with serve(app) as client:
        assert (await client.post("/notes", params={"text": "kept"})).status_code == 200
        # Committed as soon as the client has its answer, and the connection is back.
        assert note_texts(admin) == ["kept"]
        assert in_use(lifespan) == 0


async def test_get_transaction_commits_before_the_response_under_a_request_scoped_yield_dependency(
    mysql_dsn: str, notes: str, admin: pymysql.connections.Connection
) -> None:
    """The commit stays before the response (a failed one is never a 2xx); the connection stays the
    dependency's until its exit, which FastAPI runs once the response has been sent."""
    lifespan = mp.mysql_lifespan(mysql_dsn, maxsize=1)
    app = FastAPI(lifespan=lifespan)
    after_yield: list[tuple[int, list[str]]] = []

    async def repository(conn: mp.TransactionDep) -> AsyncIterator[aiomysql.Connection]:
        yield conn
        after_yield.append((in_use(lifespan), note_texts(admin)))

    @app.post("/notes")
    async def add(text: str, conn: aiomysql.Connection = Depends(repository)) -> dict[str, Any]:  # noqa: B008
        async with conn.cursor() as cursor:
            await cursor.execute("INSERT INTO fastapi_notes (text) VALUES (%s)", (text,))
        return {"text": text}

    async with serve(app) as client:
        assert (await client.post("/notes", params={"text": "kept"})).status_code == 200
        await until(lambda: in_use(lifespan) == 0)
        assert after_yield == [(1, ["kept"])]
        assert (await client.post("/notes", params={"text": "kept"})).status_code == 500  # the duplicate
        await until(lambda: in_use(lifespan) == 0)
    assert note_texts(admin) == ["kept"]


def connection_keeper(lifespan: mp.MySQLLifespan, after_yield: list[Any]) -> Callable[..., Any]:
    """A default-scope yield dependency that runs a statement after its ``yield``, and records the connections in
    use then, or the error of a connection that was no longer its own."""

    async def keeper(conn: mp.ConnDep) -> AsyncIterator[aiomysql.Connection]:
        yield conn
        try:
            async with conn.cursor() as cursor:
                await cursor.execute("SELECT 1")
        except Exception as exc:
            after_yield.append(type(exc).__name__)
            raise
        after_yield.append(in_use(lifespan))

    return keeper


async def test_a_yield_dependency_added_by_include_router_keeps_the_connection_of_that_inclusion_only(
    mysql_dsn: str,
) -> None:
    """FastAPI runs a route of an included router with the dependency tree of that inclusion: its own, and those
    of ``include_router(dependencies=...)``. One router included twice is two such trees for one route."""
    lifespan = mp.mysql_lifespan(mysql_dsn, maxsize=1)
    app = FastAPI(lifespan=lifespan)
    after_yield: list[Any] = []
    in_use_while_sending: list[int] = []

    class RecordingResponse(JSONResponse):
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            in_use_while_sending.append(in_use(lifespan))
            await super().__call__(scope, receive, send)

    router = APIRouter()

    @router.get("/select", response_class=RecordingResponse)
    async def select(cursor: mp.CursorDep) -> dict[str, Any]:
        await cursor.execute("SELECT 1")
        return {}

    app.include_router(router, prefix="/plain")
    app.include_router(router, prefix="/kept", dependencies=[Depends(connection_keeper(lifespan, after_yield))])
    async with serve(app) as client:
        for path in ("/plain/select", "/kept/select", "/plain/select", "/kept/select"):
            assert (await client.get(path)).status_code == 200, path
            await until(lambda: in_use(lifespan) == 0)
        assert lifespan.pool.stats()["closed_total"]["broken"] == 0
    assert after_yield == [1, 1]
    assert in_use_while_sending == [0, 1, 0, 1]  # without the dependency, given back before the response


async def test_a_yield_dependency_of_the_app_keeps_the_connection_on_the_routes_of_an_included_router(
    mysql_dsn: str,
) -> None:
    lifespan = mp.mysql_lifespan(mysql_dsn, maxsize=1)
    after_yield: list[Any] = []
    app = FastAPI(lifespan=lifespan, dependencies=[Depends(connection_keeper(lifespan, after_yield))])
    router = APIRouter(prefix="/router")

    @router.get("/")
    async def routed(cursor: mp.CursorDep) -> dict[str, Any]:
        await cursor.execute("SELECT 1")
        return {}

    @app.get("/")
    async def direct() -> dict[str, Any]:
        return {}

    app.include_router(router)
    async with serve(app) as client:
        for path in ("/", "/router/"):
            assert (await client.get(path)).status_code == 200, path
            await until(lambda: in_use(lifespan) == 0)
    assert after_yield == [1, 1]


async def test_an_override_that_holds_the_connection_across_a_yield_keeps_it_until_its_exit(mysql_dsn: str) -> None:
    """``app.dependency_overrides`` puts the overriding dependency's tree in place of the overridden one's: a plain
    dependency overridden by a yield dependency (a test's, which inspects the connection afterwards) holds it."""
    lifespan = mp.mysql_lifespan(mysql_dsn, maxsize=1)
    app = FastAPI(lifespan=lifespan)
    after_yield: list[Any] = []

    async def repository(conn: mp.ConnDep) -> aiomysql.Connection:
        return conn

    @app.get("/")
    async def endpoint(conn: aiomysql.Connection = Depends(repository)) -> dict[str, Any]:  # noqa: B008
        async with conn.cursor() as cursor:
            await cursor.execute("SELECT 1")
        return {}

    async with serve(app) as client:
        assert (await client.get("/")).status_code == 200  # the route's own tree, worked out first
        app.dependency_overrides[repository] = connection_keeper(lifespan, after_yield)
        assert (await client.get("/")).status_code == 200
        await until(lambda: in_use(lifespan) == 0)
        app.dependency_overrides.clear()
        assert (await client.get("/")).status_code == 200
        assert in_use(lifespan) == 0
    assert after_yield == [1]


@pytest.mark.parametrize(
    "again",
    [Depends(mp.get_transaction, use_cache=False), Depends(mp.get_transaction, scope="function")],
    ids=["use_cache=False", "scope=function"],
)
async def test_get_transaction_asked_for_twice_in_a_request_is_one_transaction(
    again: Any, mysql_dsn: str, notes: str, admin: pymysql.connections.Connection
) -> None:
    """FastAPI calls a dependency again for another cache key (its declared scope is part of it) or without the
    cache: the second call must not BEGIN again, which would commit what the request wrote before it."""
    lifespan = mp.mysql_lifespan(mysql_dsn, maxsize=1)
    app = FastAPI(lifespan=lifespan)

    async def add_note(conn: mp.TransactionDep) -> aiomysql.Connection:
        async with conn.cursor() as cursor:
            await cursor.execute("INSERT INTO fastapi_notes (text) VALUES ('written by a dependency')")
        return conn

    async def joins(conn: aiomysql.Connection = again) -> aiomysql.Connection:
        return conn

    @app.post("/notes")
    async def add(
        fail: bool,
        first: aiomysql.Connection = Depends(add_note),  # noqa: B008
        second: aiomysql.Connection = Depends(joins),  # noqa: B008
    ) -> dict[str, Any]:
        assert first is second
        if fail:
            raise HTTPException(409)
        return {}

    async with serve(app) as client:
        assert (await client.post("/notes", params={"fail": True})).status_code == 409
        assert note_texts(admin) == []  # rolled back, all of it
        assert (await client.post("/notes", params={"fail": False})).status_code == 200
        assert note_texts(admin) == ["written by a dependency"]
        assert in_use(lifespan) == 0


@pytest.mark.parametrize("scope", ["request", "function"])
async def test_background_tasks_run_before_a_default_scope_yield_dependency_gives_the_connection_back(
    scope: str, mysql_dsn: str
) -> None:
    """FastAPI runs a response's background tasks as part of sending it, and exits default-scope dependencies
    after that: a task that acquires needs a connection besides the one such a dependency holds (see 'Your own
    yield dependencies' in docs/fastapi.md). Declared ``scope="function"``, the dependency has given it back."""
    lifespan = mp.mysql_lifespan(mysql_dsn, maxsize=2)
    app = FastAPI(lifespan=lifespan)
    in_use_in_task: list[int] = []

    async def holder(conn: mp.ConnDep) -> AsyncIterator[aiomysql.Connection]:
        yield conn

    async def task() -> None:
        in_use_in_task.append(in_use(lifespan))

    @app.get("/")
    async def endpoint(conn: aiomysql.Connection = Depends(holder, scope=scope)) -> Response:  # noqa: B008
        return JSONResponse({}, background=BackgroundTask(task))

    async with serve(app) as client:
        assert (await client.get("/")).status_code == 200
        assert in_use(lifespan) == 0
    assert in_use_in_task == [1 if scope == "request" else 0]
