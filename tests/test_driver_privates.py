"""The private names of aiomysql, PyMySQL, asyncmy, asyncio, FastAPI and prometheus_client the package relies on.

The driver modules (``_aiomysql.py``, ``_asyncmy.py``) subclass the drivers' connection and result classes,
override some of their private methods and read some of their private state; ``_fastapi.py`` reads FastAPI's
exit stacks and the dependency tree of the request's route from the ASGI scope, and ``_metrics.py`` adds to a
histogram's buckets. None of that is a documented API, so any release may rename or reshape it. An upgrade that
does fails here, with the name, and tests/conftest.py runs this module before all others, so that is the first
failure the upgrade shows. Each name is looked up inside its own test: a missing one fails that test, not the
whole module.

`test_every_private_name_the_driver_modules_use_is_listed` keeps the lists true: it reads the driver modules,
and a ``._name`` that is neither listed here as the driver's nor as the package's own fails it.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import prometheus_client
import pytest
from fastapi import Depends, FastAPI
from starlette.requests import Request

import fastapi_mysqlpool
from fastapi_mysqlpool._fastapi import _FUNCTION_STACK, _REQUEST_STACK
from fastapi_mysqlpool._seam import get_driver
from fastapi_mysqlpool.testing import ExternalServer, MySQLServer

COROUTINE = "coroutine function"
METHOD = "method"
PROPERTY = "property"
CLASS = "class"

# (module, dotted name in it, kind): every private (or undocumented) method, class and module attribute the
# package overrides, calls or imports. The kind is what the code relies on: an override of a coroutine function
# that became a plain method would silently never be awaited.
PRIVATES: list[tuple[str, str, str]] = [
    # aiomysql (fastapi_mysqlpool/_aiomysql.py): the Connection and MySQLResult subclasses
    ("aiomysql.connection", "Connection._connect", COROUTINE),
    ("aiomysql.connection", "Connection._close_on_cancel", METHOD),
    ("aiomysql.connection", "Connection._execute_command", COROUTINE),
    ("aiomysql.connection", "Connection._read_ok_packet", COROUTINE),
    ("aiomysql.connection", "Connection._read_packet", COROUTINE),
    ("aiomysql.connection", "Connection._read_query_result", COROUTINE),
    ("aiomysql.connection", "MySQLResult", CLASS),
    ("aiomysql.connection", "MySQLResult._check_packet_is_eof", METHOD),
    ("aiomysql.connection", "MySQLResult._get_descriptions", COROUTINE),
    ("aiomysql.connection", "MySQLResult._read_load_local_packet", COROUTINE),
    ("aiomysql.connection", "MySQLResult._read_ok_packet", METHOD),
    ("aiomysql.connection", "MySQLResult._read_row_from_packet", METHOD),
    ("aiomysql.connection", "MySQLResult.init_unbuffered_query", COROUTINE),
    ("aiomysql.connection", "MySQLResult.read", COROUTINE),
    ("aiomysql.connection", "TEXT_TYPES", "set"),
    ("aiomysql.connection", "_StreamReader.eof_received", PROPERTY),
    # aiomysql (fastapi_mysqlpool/_aiomysql_cursors.py): the Cursor and DictCursor subclasses
    ("aiomysql.cursors", "Cursor._query", COROUTINE),
    ("aiomysql.cursors", "Cursor._escape_args", METHOD),
    ("aiomysql.cursors", "Cursor._show_warnings", COROUTINE),  # what `_warn` does in its stead
    ("aiomysql.cursors", "DictCursor._do_get_result", COROUTINE),  # the DictCursor's rows, through `_query`
    ("aiomysql.utils", "_ContextManager", CLASS),  # what `cursor()` returns
    # asyncio, under aiomysql's stream reader: the synchronous read of buffered packets
    ("asyncio", "StreamReader._maybe_resume_transport", METHOD),
    ("asyncio", "StreamReader._wait_for_data", COROUTINE),
    # PyMySQL, whose protocol code aiomysql runs
    ("pymysql.protocol", "EOFPacketWrapper", CLASS),
    ("pymysql.protocol", "FieldDescriptorPacket.description", METHOD),
    ("pymysql.protocol", "MysqlPacket.is_eof_packet", METHOD),
    ("pymysql.protocol", "MysqlPacket.is_error_packet", METHOD),
    ("pymysql.protocol", "MysqlPacket.raise_for_error", METHOD),
    ("pymysql.converters", "encoders", "dict"),
    ("pymysql.converters", "escape_item", "function"),
    ("pymysql.converters", "through", "function"),
    # the encoding `restore_charset` takes after a full reset (a bound method of PyMySQL's charset table)
    ("pymysql.charset", "charset_by_name", METHOD),
    # asyncmy (fastapi_mysqlpool/_asyncmy.py): the Connection and MySQLResult subclasses, the protocol
    ("asyncmy.connection", "Connection._execute_command", COROUTINE),
    ("asyncmy.connection", "Connection._read_ok_packet", COROUTINE),
    ("asyncmy.connection", "Connection._read_query_result", COROUTINE),
    ("asyncmy.connection", "Connection._send_autocommit_mode", COROUTINE),
    ("asyncmy.connection", "Connection.ensure_closed", COROUTINE),
    ("asyncmy.connection", "Connection._fill_buffer", COROUTINE),  # every wait for bytes: owner and read timeout
    ("asyncmy.connection", "Connection.query", COROUTINE),  # a plain query calls the send and the read itself
    ("asyncmy.connection", "Connection.read_packet", COROUTINE),  # the answer to `set_charset`'s SET NAMES
    ("asyncmy.connection", "MySQLResult", CLASS),
    ("asyncmy.connection", "MySQLResult._check_packet_is_eof", METHOD),
    ("asyncmy.connection", "MySQLResult.init_unbuffered_query", COROUTINE),
    ("asyncmy.connection", "MySQLResult._finish_unbuffered_query", COROUTINE),
    ("asyncmy.connection", "MySQLResult.read", COROUTINE),
    ("asyncmy.connection", "_MySQLProtocol.wait_closed", COROUTINE),
    ("asyncmy.protocol", "MysqlPacket.get_all_data", METHOD),
    ("asyncmy.converters", "escape_item", METHOD),
    ("asyncmy.charset", "charset_by_name", METHOD),  # compiled: a builtin, not a Python function
]

# The private names the driver modules define themselves, on their subclasses of the drivers' classes (and
# _connection.py on the mixin both subclasses put first). None of them may exist on the driver's class: a driver
# release that adds one would be shadowed without a word.
_MIXIN_NAMES = frozenset(
    {
        "_broken",
        "_before_command",
        "_check_owner",
        "_failed",
        "_opened",
        "_own_query",
        "_released",
        "_session_assignments",
        "_session_changed",
        "_tracks_sessions",
        "_touched",
        "_unconfirmed",
        "_waiting",
        "_watchdog",
    }
)
_AIOMYSQL = "aiomysql.connection.Connection"
_ASYNCMY = "asyncmy.connection.Connection"
OWN_NAMES: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {
    "_connection.py": ((_AIOMYSQL, _ASYNCMY), _MIXIN_NAMES),
    "_aiomysql.py": (
        (_AIOMYSQL, "aiomysql.connection.MySQLResult"),
        frozenset(
            {
                "_broken",
                "_buffered_reader",
                "_buffered_reads",
                "_check_owner",
                "_closed_writer",
                "_consume",
                "_field_cache",
                "_read_more_rows",
                "_released",
                "_session_assignments",
                "_session_changed",
                "_status",
                "_take_descriptions",
                "_take_rows",
                "_tracks_sessions",
                "_unconfirmed",
                "_waiting",
                "_read_progress",
                "_read_timed_out",
                "_unwatch",
                "_watch",
            }
        )
        | _MIXIN_NAMES,
    ),
    "_aiomysql_cursors.py": (
        ("aiomysql.cursors.Cursor", "aiomysql.cursors.DictCursor"),
        frozenset({"_plain_result", "_warn"}),
    ),
    "_asyncmy.py": (
        (_ASYNCMY,),
        frozenset({"_read_progress", "_read_timed_out", "_took", "_watch_answer", "_watched_fill"}) | _MIXIN_NAMES,
    ),
}

# The private state the driver modules read or set on live objects, which exists only once a connection is
# open: (attribute, the type it must have, or None for any).
AIOMYSQL_STATE: dict[str, dict[str, type | None]] = {
    "connection": {
        "_affected_rows": int,
        "_charset": str,
        "_echo": bool,
        "_encoding": str,
        "_host": str,
        "_last_usage": float,
        "_loop": asyncio.AbstractEventLoop,
        "_next_seq_id": int,
        "_port": int,
        "_password": None,
        "_reader": asyncio.StreamReader,
        "_result": None,
        "_writer": asyncio.StreamWriter,
        "client_flag": int,
        "decoders": dict,
        "server_capabilities": int,
        "use_unicode": bool,
    },
    "reader": {
        "_buffer": bytearray,
        "_eof": bool,
        "_eof_received": bool,
        "_exception": type(None),
        "eof_received": bool,
    },
    # The cursor's state, as aiomysql's __init__, _clear_result and _do_get_result set it.
    "cursor": {
        "_connection": None,
        "_description": None,
        "_echo": bool,
        "_executed": None,
        "_last_executed": None,
        "_lastrowid": None,
        "_loop": asyncio.AbstractEventLoop,
        "_result": None,
        "_rowcount": int,
        "_rownumber": int,
        "_rows": None,
    },
    "result": {
        "affected_rows": int,
        "connection": None,
        "field_count": int,
        "has_next": None,
        "rows": tuple,
        "server_status": int,
        "unbuffered_active": int,
        "warning_count": int,
    },
}
ASYNCMY_STATE: dict[str, dict[str, type | None]] = {
    "connection": {
        "_affected_rows": int,
        "_charset": str,
        "_client_flag": int,
        "_connected": bool,
        "_deprecate_eof": bool,
        "_db": None,
        "_encoders": dict,
        "_encoding": str,
        "_host": str,
        "_init_command": None,
        "_loop": asyncio.AbstractEventLoop,
        "_next_seq_id": int,
        "_port": int,
        "_proto": None,
        "_result": None,
        "_sql_mode": None,
        "_stmt_cache": dict,
        "_transport": asyncio.Transport,
        "server_status": int,
    },
    "protocol": {"_read_waiter": None, "buffer": bytearray, "eof": bool, "exc": type(None), "length": int, "pos": int},
    "result": {
        "affected_rows": int,
        "connection": None,
        "has_next": None,
        "server_status": int,
        "unbuffered_active": int,
    },
}


def resolve(module: str, dotted: str) -> tuple[Any, str]:
    """The owner of the last part of ``dotted`` in ``module``, and that part's name."""
    owner: Any = importlib.import_module(module)
    *path, name = dotted.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, name


def kind(owner: Any, name: str) -> str:
    value = inspect.getattr_static(owner, name)
    if isinstance(value, property):
        return PROPERTY
    if inspect.isclass(value):
        return CLASS
    if inspect.iscoroutinefunction(getattr(owner, name)):
        return COROUTINE
    if inspect.isfunction(value) and inspect.ismodule(owner):
        return "function"
    if callable(value) or isinstance(value, (staticmethod, classmethod)):
        return METHOD
    return type(value).__name__


@pytest.mark.parametrize(("module", "name", "expected"), PRIVATES, ids=[f"{m}:{n}" for m, n, _ in PRIVATES])
def test_private_name_exists_with_the_expected_kind(module: str, name: str, expected: str) -> None:
    try:
        owner, last = resolve(module, name)
        found = kind(owner, last)
    except AttributeError as exc:
        pytest.fail(f"{module}.{name} no longer exists ({exc})")
    assert found == expected, f"{module}.{name} is no longer a {expected} but a {found}"


def _private_names_in(source: Path) -> set[str]:
    """The ``_name`` attributes a module reads or sets, and the ``_name`` members its classes define."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.ClassDef):
            for statement in node.body:
                if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(statement.name)
                elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                    names.add(statement.target.id)
                elif isinstance(statement, ast.Assign):
                    names.update(target.id for target in statement.targets if isinstance(target, ast.Name))
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


@pytest.mark.parametrize("module", sorted(OWN_NAMES))
def test_every_private_name_the_driver_modules_use_is_listed(module: str) -> None:
    listed = {name.rsplit(".", 1)[-1] for _, name, _ in PRIVATES}
    listed |= {name for table in (AIOMYSQL_STATE, ASYNCMY_STATE) for names in table.values() for name in names}
    own = OWN_NAMES[module][1]
    unlisted = _private_names_in(Path(fastapi_mysqlpool.__file__).parent / module) - listed - own
    assert not unlisted, (
        f"{module} uses private names listed neither as the driver's (PRIVATES, *_STATE) nor as its own "
        f"(OWN_NAMES): {sorted(unlisted)}"
    )


@pytest.mark.parametrize("module", sorted(OWN_NAMES))
def test_the_driver_modules_own_names_are_not_the_drivers(module: str) -> None:
    classes, own = OWN_NAMES[module]
    for dotted in classes:
        owner, name = resolve(*dotted.rsplit(".", 1))
        driver_class = getattr(owner, name)
        taken = sorted(name for name in own if hasattr(driver_class, name))
        assert not taken, f"{dotted} now defines {taken}, which {module} defines for itself"


def check_state(what: str, obj: Any, expected: dict[str, type | None]) -> None:
    for name, expected_type in expected.items():
        assert hasattr(obj, name), f"the driver's {what} has no {name!r} any more"
        if expected_type is not None:
            value = getattr(obj, name)
            assert isinstance(value, expected_type), f"the driver's {what}.{name} is a {type(value).__name__}"


# Each driver's live state: (driver, its table, the name of the object under the connection that holds the stream).
_LIVE_STATE = [("aiomysql", AIOMYSQL_STATE, "reader", "_reader"), ("asyncmy", ASYNCMY_STATE, "protocol", "_proto")]


@pytest.mark.parametrize(("name", "table", "stream", "attribute"), _LIVE_STATE, ids=[d for d, *_ in _LIVE_STATE])
async def test_driver_connection_state(
    name: str,
    table: dict[str, dict[str, type | None]],
    stream: str,
    attribute: str,
    mysql_server: MySQLServer | ExternalServer,
) -> None:
    driver = get_driver(name)
    conn = await driver.connect({**mysql_server.connect_kwargs, "connect_timeout": 10})
    try:
        async with await driver.cursor(conn, dict_rows=False) as cur:
            await cur.execute("SELECT 1")
            if "cursor" in table:
                check_state("cursor", cur, table["cursor"])
        check_state("connection", conn, table["connection"])
        check_state(stream, getattr(conn, attribute), table[stream])
        check_state("result", conn._result, table["result"])
    finally:
        await asyncio.wait_for(driver.quit(conn), 10)


async def test_fastapi_keeps_a_requests_dependency_exit_stacks_in_the_scope() -> None:
    seen: dict[str, object] = {}

    def stacks(request: Request) -> None:
        seen.update({key: request.scope.get(key) for key in (_FUNCTION_STACK, _REQUEST_STACK)})

    app = FastAPI()

    @app.get("/", dependencies=[Depends(stacks)])
    async def endpoint() -> None:
        return None

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        assert (await client.get("/")).status_code == 200
    for key in (_FUNCTION_STACK, _REQUEST_STACK):
        assert isinstance(seen.get(key), AsyncExitStack), f"FastAPI no longer keeps {key!r} in the ASGI scope"


def test_prometheus_histograms_keep_their_buckets_and_sum_as_values() -> None:
    # _metrics.py adds each bucket's increase to the child's value objects rather than replaying observations.
    histogram = prometheus_client.Histogram(
        "privates_check", "doc", ["pool"], buckets=(1.0, 2.0), registry=prometheus_client.CollectorRegistry()
    )
    child = histogram.labels("p")
    assert len(child._buckets) == 3, "prometheus_client's histogram no longer keeps one value per bucket"
    child._buckets[1].inc(2)
    child._sum.inc(3.0)
    samples = {(s.name, s.labels.get("le")): s.value for s in next(iter(histogram.collect())).samples}
    assert samples[("privates_check_bucket", "2.0")] == 2 and samples[("privates_check_sum", None)] == 3.0


async def test_fastapi_shows_the_dependency_tree_of_an_included_route() -> None:
    # _fastapi.py reads the tree FastAPI solves for a request: a route's own ``dependant`` (scope["route"]) or,
    # from FastAPI 0.16x, the route as its inclusion made it (scope["fastapi"]["effective_route_context"]), which
    # alone has the dependencies of include_router(..., dependencies=...) and of the app.
    from fastapi import APIRouter

    from fastapi_mysqlpool._fastapi import _route_facts

    def included() -> None:
        return None

    def of_the_app() -> None:
        return None

    seen: list[frozenset[Any]] = []

    def facts(request: Request) -> None:
        found = _route_facts(request)
        assert found is not None, "no dependency tree found for an included route"
        seen.append(found.calls)

    app = FastAPI(dependencies=[Depends(of_the_app)])
    router = APIRouter()

    @router.get("/", dependencies=[Depends(facts)])
    async def endpoint() -> None:
        return None

    app.include_router(router, prefix="/r", dependencies=[Depends(included)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        assert (await client.get("/r/")).status_code == 200
    assert len(seen) == 1 and {included, of_the_app, facts} <= seen[0], "FastAPI's included route lost its tree"
