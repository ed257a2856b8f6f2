"""Where a request's time goes: FastAPI dependency shapes, called in-process without a network.

Each variant is a FastAPI app whose ``GET /`` answers without a query: with no dependency, with one
that returns a constant (what FastAPI's resolution of one dependency costs), or taking a connection in
each of the ways compared. They are driven straight through ASGI, so neither uvicorn, the socket nor the
server adds noise, and timed in CPU time of this process: what remains is the framework,
the dependency machinery and the pool. Differences between the variants are the cost of
each layer.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

import aiomysql
from fastapi import Depends, FastAPI, Request

import fastapi_mysqlpool as mp

__all__ = ["VARIANTS", "DepsResults", "run_deps_bench"]


def _no_db(dsn: str) -> FastAPI:
    app = FastAPI()

    @app.get("/")
    async def one() -> dict[str, int]:
        return {"value": 1}

    return app


def _in_handler(dsn: str) -> FastAPI:
    app = FastAPI(lifespan=mp.mysql_lifespan(dsn))

    @app.get("/")
    async def one(request: Request) -> dict[str, int]:
        async with mp.pools_of(request)["default"].acquire():
            return {"value": 1}

    return app


# Dependencies live at module level: FastAPI resolves the (string) annotations in the module's globals.
async def _constant() -> int:
    return 1


def _trivial(dsn: str) -> FastAPI:
    app = FastAPI()

    @app.get("/")
    async def one(value: Annotated[int, Depends(_constant)]) -> dict[str, int]:
        return {"value": value}

    return app


def _pool_dependency(dsn: str) -> FastAPI:
    app = FastAPI(lifespan=mp.mysql_lifespan(dsn))

    @app.get("/")
    async def one(pool: Annotated[mp.Pool, Depends(mp.get_pool)]) -> dict[str, int]:
        async with pool.acquire():
            return {"value": 1}

    return app


async def _conn_scope(request: Request) -> AsyncIterator[Any]:
    async with mp.pools_of(request)["default"].acquire() as conn:
        yield conn


async def _aiomysql_conn(request: Request) -> AsyncIterator[Any]:
    async with request.app.state.pool.acquire() as conn:
        yield conn


def _one_generator(dsn: str) -> FastAPI:
    app = FastAPI(lifespan=mp.mysql_lifespan(dsn))

    @app.get("/")
    async def one(conn: Annotated[Any, Depends(_conn_scope, scope="function")]) -> dict[str, int]:
        return {"value": 1}

    return app


def _get_conn(dsn: str) -> FastAPI:
    app = FastAPI(lifespan=mp.mysql_lifespan(dsn))

    @app.get("/")
    async def one(conn: Annotated[Any, Depends(mp.get_conn)]) -> dict[str, int]:
        return {"value": 1}

    return app


def _handwritten(dsn: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await aiomysql.create_pool(**mp.parse_dsn(dsn).connect_kwargs)
        yield
        app.state.pool.close()
        await app.state.pool.wait_closed()

    app = FastAPI(lifespan=lifespan)

    @app.get("/")
    async def one(conn: Annotated[Any, Depends(_aiomysql_conn)]) -> dict[str, int]:
        return {"value": 1}

    return app


#: (label, app factory), cheapest first.
VARIANTS: tuple[tuple[str, Callable[[str], FastAPI]], ...] = (
    ("no dependency, no database", _no_db),
    ("one dependency returning a constant, no database", _trivial),
    ("our pool, acquired in the handler (no dependency)", _in_handler),
    ("our pool: Depends(get_pool), acquired in the handler", _pool_dependency),
    ("our pool, one function-scoped generator dependency", _one_generator),
    ("fastapi_mysqlpool Depends(get_conn)", _get_conn),
    ("hand-written: aiomysql pool + yield dependency", _handwritten),
)

_SCOPE: dict[str, Any] = {
    "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
    "path": "/", "raw_path": b"/", "query_string": b"", "root_path": "", "headers": [(b"host", b"bench")],
    "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
}  # fmt: skip


@dataclass
class DepsResults:
    rounds: int
    requests: int
    cpu_us: dict[str, list[float]] = field(default_factory=dict)

    def median(self, label: str) -> float | None:
        values = self.cpu_us.get(label)
        return statistics.median(values) if values else None

    def to_json(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "requests": self.requests,
            "median_cpu_us": {k: self.median(k) for k in self.cpu_us},
        }


class _Running:
    """An app with its lifespan started, and a way to send it one request."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": self.state}
        self._task = asyncio.create_task(self.app(scope, self._to_app.get, self._from_app.put))
        await self._to_app.put({"type": "lifespan.startup"})
        message = await self._from_app.get()
        if message["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"lifespan startup failed: {message}")

    async def stop(self) -> None:
        await self._to_app.put({"type": "lifespan.shutdown"})
        await self._from_app.get()
        if self._task is not None:
            await self._task

    async def request(self) -> None:
        status = 0

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await self.app({**_SCOPE, "state": dict(self.state)}, receive, send)
        if status != 200:
            raise RuntimeError(f"GET / answered {status}")


async def _timed(call: Callable[[], Awaitable[None]], requests: int) -> float:
    started = time.process_time()
    for _ in range(requests):
        await call()
    return (time.process_time() - started) / requests * 1e6


async def run_deps_bench(dsn: str, *, rounds: int, requests: int, log: Callable[[str], None] = print) -> DepsResults:
    """CPU µs per request of each variant; the variants alternate within every round."""
    results = DepsResults(rounds=rounds, requests=requests)
    running: dict[str, _Running] = {}
    try:
        for label, factory in VARIANTS:
            app = _Running(factory(dsn))
            await app.start()
            running[label] = app
            results.cpu_us[label] = []
            await _timed(app.request, max(1, requests // 10))  # warm-up
        for r in range(rounds):
            for label, app in running.items():
                results.cpu_us[label].append(await _timed(app.request, requests))
            log(f"  dependency round {r + 1}/{rounds} done")
    finally:
        for app in running.values():
            await app.stop()
    return results
