"""FastAPI and Starlette integration: the lifespan hook, per-request dependencies, and pool errors as 503.

How a request gets its connection, and why it is given back where it is:

- `mysql_lifespan` opens the pool at startup and yields it as lifespan state under ``"mysqlpools"``
  (a ``{name: Pool}`` mapping); Starlette copies that state into every request's ``request.state``.
- Each public dependency (`get_conn`, `get_cursor`, ...) is a plain coroutine function that registers its exit
  (release, cursor close, commit or rollback) on FastAPI's function-scoped exit stack, the one behind
  ``Depends(..., scope="function")``. FastAPI unwinds it when the handler returns, *before* the response is sent,
  passing it the handler's exception; a default-scope generator would be exited after the response. So the
  transaction commits before the client sees a status (a failed commit is a 5xx, never a 2xx), and the connection
  is back in the pool while the response is still being written. ``Depends(mp.get_transaction)`` is right without
  the caller having to know any of this, and the callables are stable objects that ``app.dependency_overrides``
  can key on. Not being generators saves FastAPI's per-generator context manager and cancel scope, which cost
  more than acquiring and releasing the connection.
- A path operation written as a generator (JSON Lines, server-sent events, ``response_class=StreamingResponse``)
  is different: FastAPI only creates the generator before the function scope unwinds, and runs its body while
  the response streams. Its connection and cursor exits go on the request-scoped stack instead, which unwinds
  once the response has been sent, so the body keeps the connection it was given. `get_transaction` refuses
  such an endpoint: the status line is out before the body runs, so a commit after the body could no longer
  turn into an error response. The body commits itself instead, and a failed commit aborts the stream.
- So do the exits of a route where a request-scoped generator dependency of the user's depends on a
  connection: FastAPI exits that dependency after the response, and its code after ``yield`` must still find
  the connection its own. `get_transaction` still commits before the response there.
- When no connection can be had (`PoolTimeout`, `TooManyWaiters`, `PoolClosed`, a connect error) the dependency
  raises ``HTTPException(503)`` with ``Retry-After``: FastAPI's own handling answers it, so there is nothing to
  install, and an app's custom ``HTTPException`` handler formats it like every other error.
- `get_run_transaction` hands the handler ``pool.run_transaction`` bound to the app's pool, with the same 503
  for a connection that cannot be had. A statement the server stopped at ``max_statement_time`` is answered
  504 by `install_error_handlers`, a commit of unknown outcome (`CommitOutcomeUnknown`, from `get_transaction`
  too) a logged 500 (without ``Retry-After``: retrying it blindly could apply it twice).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Annotated, Any

import aiomysql
import anyio
from fastapi import Depends, HTTPException
from fastapi.dependencies.utils import get_dependant
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from ._config import mask_dsn, parse_dsn
from ._create import create_pool
from ._errors import CommitOutcomeUnknown, PoolClosed, PoolError, PoolMisuse, TooManyWaiters
from ._gtid import ReadYourWrites, wait_for_gtid
from ._history import attach as attach_history
from ._history import detach as detach_history
from ._hosts import parse_hosts
from ._logging import install_default_handler
from ._metrics import attach as attach_metrics
from ._metrics import detach as detach_metrics
from ._pool import Pool, _default_name
from ._retry import Transaction
from ._seam import DRIVERS, error_code, error_family, get_driver, is_disconnect, is_wrong_host
from ._settings import MySQLPoolSettings, env_pool_options
from ._statement import is_statement_timeout

logger = logging.getLogger("fastapi_mysqlpool")

__all__ = [
    "COMMIT_UNKNOWN_DETAIL",
    "DEFAULT_POOL",
    "REPLICAS_SUFFIX",
    "RETRY_AFTER",
    "STATEMENT_TIMEOUT_DETAIL",
    "STATE_KEY",
    "ConnDep",
    "CursorDep",
    "DictCursorDep",
    "MySQLLifespan",
    "PoolDep",
    "PoolDependencies",
    "ReadConnDep",
    "ReadCursorDep",
    "RunTransaction",
    "RunTransactionDep",
    "TransactionDep",
    "get_conn",
    "get_cursor",
    "get_dict_cursor",
    "get_pool",
    "get_read_conn",
    "get_read_cursor",
    "get_run_transaction",
    "get_transaction",
    "install_error_handlers",
    "mysql_lifespan",
    "pool_dependencies",
    "pools_of",
]

#: Key of the ``{name: Pool}`` mapping in the lifespan state and on ``request.state``.
STATE_KEY = "mysqlpools"
#: Name of the pool opened by ``mysql_lifespan()`` when no ``name`` is given.
DEFAULT_POOL = "default"
#: The replica pool of ``mysql_lifespan(dsn, replicas=...)`` is keyed ``name + REPLICAS_SUFFIX`` in the state.
REPLICAS_SUFFIX = ".replicas"
# Where the request's primary connection of a pool is kept, so that reads of a handler that also writes share it.
_HELD = "mysqlpool.held."
# Where it is noted that `get_transaction` began the transaction on that connection. FastAPI calls a dependency
# once per request for each cache key, and the key has the scope it was declared with (``Depends(...,
# scope="function")`` and ``mp.TransactionDep`` are two), and ``use_cache=False`` opts out: a second call must
# join the transaction, since a second BEGIN would commit what the request wrote before it, out of reach of the
# rollback.
_IN_TRANSACTION = "mysqlpool.transaction."
# Where the lifespan keeps each pool's `ReadYourWrites`, in the lifespan state.
_RYW_KEY = "mysqlpool_read_your_writes"
#: Seconds a client is asked to wait before retrying a 503 (``Retry-After``).
RETRY_AFTER = 1

Lifespan = Callable[[Any], AbstractAsyncContextManager[Mapping[str, Any] | None]]
#: What `get_run_transaction` gives a handler: ``await run(fn, retries=3)``, as ``pool.run_transaction``.
RunTransaction = Callable[..., Awaitable[Any]]

# What `pool.acquire()` raises when the database cannot serve the request right now.


def _is_unavailable(exc: BaseException) -> bool:
    """What an acquire raises when no connection can be had: the pool's own errors, the network, or a
    driver's ``OperationalError`` (whichever driver the pool uses). Not `PoolMisuse`: that is a bug in the
    app, which a retry would not fix, so it stays a 500 for the app's error reporting to see."""
    if isinstance(exc, PoolMisuse):
        return False
    return isinstance(exc, (PoolError, OSError)) or error_family(exc) == "operational"


#: The 504 answer to a statement stopped by the server's statement timeout.
STATEMENT_TIMEOUT_DETAIL = "The database statement took too long and was stopped."
#: The 503 answer to an error meaning the host changed role or left its cluster (`is_wrong_host`).
_WRONG_HOST_DETAIL = "The database host cannot serve this request right now."
#: The 500 answer to a commit whose outcome is unknown.
COMMIT_UNKNOWN_DETAIL = "The connection to the database was lost during the commit; its outcome is unknown."
# Where FastAPI keeps the exit stack of a request's function-scoped dependencies.
_FUNCTION_STACK = "fastapi_function_astack"
# Where it keeps the request-scoped one, which unwinds once the response has been sent.
_REQUEST_STACK = "fastapi_inner_astack"


# --------------------------------------------------------------------------- lifespan


class MySQLLifespan:
    """Opens one pool when the app starts and closes it when the app stops.

    Made by `mysql_lifespan`. Pass it as ``FastAPI(lifespan=...)`` or ``Starlette(lifespan=...)``, or enter it
    yourself inside your own lifespan: ``async with mp.mysql_lifespan(dsn) as state: ... yield state``.
    """

    def __init__(
        self,
        dsn: str | None,
        name: str | None,
        lifespan: Lifespan | None,
        pool_options: dict[str, Any],
        replicas: str | None = None,
        read_your_writes: ReadYourWrites | None = None,
    ) -> None:
        for text in (dsn, replicas):
            if text is not None:
                parse_dsn(text)  # a malformed DSN fails here, at import time, not at the first deploy
        self._dsn = dsn
        self._replicas = replicas
        self._read_your_writes = read_your_writes
        self._name = name or DEFAULT_POOL
        self._options = pool_options if name is None else {**pool_options, "name": name}
        self._lifespan = lifespan
        self._pool: Pool | None = None
        self._entered: list[AbstractAsyncContextManager[dict[str, Any]]] = []

    @property
    def name(self) -> str:
        """The pool's name: its key in the lifespan state, and the argument of `pool_dependencies`."""
        return self._name

    @property
    def pool(self) -> Pool:
        """The pool opened by this lifespan, while it runs; for startup work in a wrapped lifespan."""
        if self._pool is None:
            raise RuntimeError(f"MySQL pool {self._name!r} is not open: its lifespan is not running")
        return self._pool

    def __repr__(self) -> str:
        return f"<MySQLLifespan {self._name!r} {mask_dsn(self._dsn) if self._dsn else 'DATABASE_URL'}>"

    def __call__(self, app: Any) -> AbstractAsyncContextManager[dict[str, Any]]:
        return self._run(app)

    async def __aenter__(self) -> dict[str, Any]:
        context = self._run(None)
        state = await context.__aenter__()
        self._entered.append(context)
        return state

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        return await self._entered.pop().__aexit__(exc_type, exc, tb)

    @asynccontextmanager
    async def _run(self, app: Any) -> AsyncIterator[dict[str, Any]]:
        async with AsyncExitStack() as stack:
            pool = await self._open()
            stack.push_async_callback(self._close, pool)
            self._pool = pool
            # The user's lifespan runs inside ours: its startup and shutdown can use the pool.
            state: dict[str, Any] = {}
            if self._lifespan is not None:
                user_state = await stack.enter_async_context(self._lifespan(app))
                state.update(user_state or {})
            pools = dict(state.get(STATE_KEY, {}))
            if self._name in pools:
                raise ValueError(f"two MySQL pools are named {self._name!r}; give each mysql_lifespan() its own name")
            pools[self._name] = pool
            if self._replicas is not None:
                replica_pool = await self._open_replicas(pool)
                stack.push_async_callback(self._close, replica_pool)
                pools[self._name + REPLICAS_SUFFIX] = replica_pool
            state[STATE_KEY] = pools
            if self._read_your_writes is not None:
                state[_RYW_KEY] = {**state.get(_RYW_KEY, {}), self._name: self._read_your_writes}
            yield state

    async def _open(self) -> Pool:
        settings = MySQLPoolSettings()
        dsn = self._dsn or settings.database_url
        if not dsn:
            raise PoolError(
                f"no database configured for MySQL pool {self._name!r}: "
                "pass a DSN to mysql_lifespan() or set DATABASE_URL"
            )
        install_default_handler()
        parsed = parse_dsn(dsn)
        # Precedence: keyword arguments, then the DSN's query string, then MYSQLPOOL_* variables.
        options = {**env_pool_options(settings), **parsed.pool_options, **self._options}
        try:
            pool = await create_pool(dsn=dsn, **options)
        except Exception as exc:
            # The name the pool itself uses in its errors and logs, not the lifespan's key ("default"): one pool,
            # one name, in every line about it.
            name = options.get("name") or _default_name(parsed.connect_kwargs)
            raise PoolError(f"cannot open MySQL pool {name!r} at {mask_dsn(dsn)}: {type(exc).__name__}: {exc}") from exc
        attach_metrics(pool)
        attach_history(pool)
        return pool

    async def _open_replicas(self, primary: Pool) -> Pool:
        """The read pool: the replicas, then the primary's hosts, which serve only while no replica qualifies."""
        assert self._replicas is not None
        parsed = parse_dsn(self._replicas)
        hosts = parse_hosts(parsed.connect_kwargs["host"], parsed.connect_kwargs.get("port", 3306))
        hosts += [(h.host, h.port) for h in primary._hosts.hosts if (h.host, h.port) not in hosts]
        options = {
            **env_pool_options(MySQLPoolSettings()),
            **parsed.pool_options,
            **{k: v for k, v in self._options.items() if k != "name"},
            "role": "replica",
            "host": hosts,
            "name": f"{primary.name}{REPLICAS_SUFFIX}",
        }
        options.update({k: v for k, v in parsed.pool_options.items() if k == "role"})
        try:
            pool = await create_pool(dsn=self._replicas, **options)
        except Exception as exc:
            await self._close(primary)
            raise PoolError(
                f"cannot open the replica pool of {primary.name!r} at {mask_dsn(self._replicas)}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        attach_metrics(pool)
        attach_history(pool)
        return pool

    async def _close(self, pool: Pool) -> None:
        self._pool = None
        detach_metrics(pool)
        detach_history(pool)
        pool.close()
        await pool.wait_closed()


def mysql_lifespan(
    dsn: str | None = None,
    *,
    name: str | None = None,
    lifespan: Lifespan | None = None,
    replicas: str | None = None,
    read_your_writes: ReadYourWrites | None = None,
    **pool_options: Any,
) -> MySQLLifespan:
    """A lifespan that opens a pool at startup and closes it, with a bounded drain, at shutdown.

    - ``dsn``: ``mysql://user:password@host:3306/db?maxsize=20``; default: the ``DATABASE_URL`` variable.
    - ``name``: the pool's name, for several pools (``pool_dependencies(name)``); default ``"default"``.
    - ``lifespan``: your own lifespan, run inside this one; its state is kept next to the pools.
    - ``**pool_options``: as for `create_pool`. ``MYSQLPOOL_<OPTION>`` variables (or a ``.env`` file) set the
      options that neither these arguments nor the DSN set.

    Startup waits for ``minsize`` connections and fails, within ``open_timeout``, with a `PoolError` that names
    the pool and the masked DSN; ``wait_open=False`` starts degraded and keeps reconnecting in the background.
    Several pools: ``mysql_lifespan(dsn2, name="analytics", lifespan=mysql_lifespan(dsn1))``.

    - ``replicas``: ``mysql://user:password@r1,r2/db``, a second pool with ``role=replica`` that `get_read_conn`
      and `get_read_cursor` read through; it falls back to the primary's hosts while no replica qualifies.
    - ``read_your_writes``: a `ReadYourWrites`, the header or cookie that carries a GTID token from a write to
      the client's next read, which then waits for it on the replica or goes to the primary.
    """
    return MySQLLifespan(dsn, name, lifespan, pool_options, replicas, read_your_writes)


# --------------------------------------------------------------------------- dependencies


def pools_of(connection: HTTPConnection) -> Mapping[str, Pool]:
    """Every pool opened by a `mysql_lifespan` of this app, by name, from the request's state."""
    pools: Mapping[str, Pool] | None = getattr(connection.state, STATE_KEY, None)
    if pools is None:
        raise RuntimeError(
            "no MySQL pool on this app: create it with FastAPI(lifespan=mp.mysql_lifespan(...)), "
            "or yield the state of `async with mp.mysql_lifespan(...) as state` from your own lifespan"
        )
    return pools


def _unavailable(exc: BaseException) -> tuple[str, dict[str, str]]:
    """The short client-facing reason and headers for a 503; details stay in the server's log."""
    if isinstance(exc, TooManyWaiters):
        reason = "Too many requests are waiting for a database connection."
    elif isinstance(exc, PoolClosed):
        reason = "The database pool is shutting down."
    elif isinstance(exc, TimeoutError):
        reason = "No database connection became available in time."
    else:
        reason = "The database is unreachable."
    return reason, {"Retry-After": str(RETRY_AFTER)}


def _is_connect_error(exc: BaseException) -> bool:
    """A network error or a client-side MySQL error (2000-2999): what a failed connect raises."""
    if isinstance(exc, OSError):
        return True
    return error_family(exc) == "operational" and (error_code(exc) or 0) >= 2000


def _is_generator_function(fn: Any) -> bool:
    """Whether calling ``fn`` makes a generator, as FastAPI tells: through ``functools.partial`` and the
    ``__wrapped__`` of ``functools.wraps``, so that a decorated generator is one."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return any(inspect.isasyncgenfunction(f) or inspect.isgeneratorfunction(f) for f in (fn, inspect.unwrap(fn)))


def _is_generator_callable(call: Any) -> bool:
    """`_is_generator_function`, or a callable object whose ``__call__`` is one: what FastAPI runs as a
    generator, a path operation that streams or a dependency with an exit."""
    if _is_generator_function(call):
        return True
    while isinstance(call, functools.partial):
        call = call.func
    call = inspect.unwrap(call)
    return not inspect.isclass(call) and _is_generator_function(getattr(call, "__call__", None))  # noqa: B004


@functools.cache
def _streams(endpoint: Callable[..., Any]) -> bool:
    """Whether FastAPI runs ``endpoint``'s body as the response streams: a generator path operation."""
    return _is_generator_callable(endpoint)


def _is_streaming(connection: HTTPConnection) -> bool:
    endpoint = connection.scope.get("endpoint")
    if endpoint is None:
        return False
    try:
        return _streams(endpoint)
    except TypeError:  # an endpoint object that cannot be hashed, so not cached
        return _streams.__wrapped__(endpoint)


def _exit_stack(connection: HTTPConnection) -> AsyncExitStack:
    """The exit stack for a connection's release and a cursor's close. FastAPI's function-scoped one unwinds
    when the handler returns, before the response is sent, and receives the handler's exception. Two kinds of
    route need the connection longer, and get the request-scoped stack, which unwinds once the response has been
    sent and receives the exception of the handler or of the stream:

    - a generator path operation, which has not run yet when the function scope unwinds: its body is the
      response;
    - a route where a request-scoped generator dependency (a ``yield`` dependency of the default scope) depends
      on the connection: FastAPI exits it once the response has been sent, after the function scope, and a
      dependency's exit must still find its own dependencies' values alive, as FastAPI's own scopes promise. The
      tree is the one FastAPI solves (see `_route_facts`): with the dependencies of the app and of the routers
      the route was included through, and with the app's ``dependency_overrides`` in place."""
    facts = _route_facts(connection)
    later = _is_streaming(connection) if facts is None else facts.exits_after_response
    return _stack(connection, _REQUEST_STACK if later else _FUNCTION_STACK)


def _stack(connection: HTTPConnection, key: str) -> AsyncExitStack:
    stack = connection.scope.get(key)
    if not isinstance(stack, AsyncExitStack):
        raise RuntimeError(
            "fastapi_mysqlpool's dependencies need FastAPI >= 0.121.1, which gives every request exit "
            f"stacks for its dependencies ({key!r} in the ASGI scope); none found"
        )
    return stack


class _Transaction:
    """The end of a `get_transaction` transaction, on the request's function-scoped exit stack."""

    __slots__ = ("conn",)

    def __init__(self, conn: aiomysql.Connection) -> None:
        self.conn = conn

    async def end(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Commit, or roll back when the handler raised; an exit callback, so it never suppresses the error."""
        # Shielded, as FastAPI shields the exit of its own dependencies: a cancellation arriving
        # now must not leave the outcome of a commit to chance.
        with anyio.CancelScope(shield=True):
            if exc is None:
                try:
                    await self.conn.commit()
                except Exception as error:
                    if not is_disconnect(error):
                        raise  # the server answered: it did not commit
                    # Lost while COMMIT was in flight: the server may have committed. Not a 503 then, whose
                    # Retry-After would invite the client to send the write again and apply it twice.
                    raise CommitOutcomeUnknown(
                        "connection lost during the COMMIT of the request's transaction; it may or may not have "
                        f"been committed ({type(error).__name__}: {error})"
                    ) from error
            elif isinstance(exc, Exception):
                # A failed rollback means a broken connection; the release discards it, and the
                # handler's own error is the one worth reporting.
                with contextlib.suppress(Exception):
                    await self.conn.rollback()
            # Cancelled (BaseException): no I/O here. aiomysql closes a connection cancelled mid-read and
            # the pool rolls back, in a task of its own, one returned inside a transaction.


class _Release:
    """The exit of a request's connection: release it, and answer 503 (not 500) for a wrong-host error."""

    __slots__ = ("acquired",)

    def __init__(self, acquired: Any) -> None:
        self.acquired = acquired

    async def exit(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        await self.acquired.__aexit__(exc_type, exc, tb)
        if exc is not None and is_wrong_host(exc):
            # The host was demoted or lost quorum mid-request; the pool has discarded the connection and looks
            # for a host that serves, so a retry in a moment succeeds.
            raise HTTPException(503, _WRONG_HOST_DETAIL, {"Retry-After": str(RETRY_AFTER)}) from exc
        return False


async def _acquire_for(connection: HTTPConnection, pool: Pool) -> aiomysql.Connection:
    """A connection of ``pool`` held until the handler returns (see `_exit_stack`); 503 when none can be had."""
    stack = _exit_stack(connection)
    acquired = pool.acquire()
    try:
        conn = await acquired.__aenter__()
    except Exception as exc:
        if not _is_unavailable(exc):
            raise
        reason, headers = _unavailable(exc)
        raise HTTPException(503, reason, headers) from exc
    # Released when the handler returns, with its exception if it raised one: the pool
    # decides by the error whether the connection may be reused.
    stack.push_async_exit(_Release(acquired).exit)
    return conn


def _writes(connection: HTTPConnection, write_calls: set[Callable[..., Any]]) -> bool:
    """Whether the request's route also holds a write dependency of the same pool (connection, cursor,
    transaction), so its reads must go where its writes go."""
    facts = _route_facts(connection)
    return facts is not None and not facts.calls.isdisjoint(write_calls)


# Every dependency of ours that holds a connection or a cursor until an exit, of every named pool.
_HOLDING_CALLS: set[Callable[..., Any]] = set()


@dataclasses.dataclass(frozen=True, slots=True)
class _RouteFacts:
    """What the dependencies need to know of a route's dependency tree, worked out once per route."""

    calls: frozenset[Any]  # every dependency callable in the tree
    # The route streams (a generator path operation), or a request-scoped generator dependency depends on a
    # connection of ours: its connections are released once the response has been sent (see `_exit_stack`).
    exits_after_response: bool
    # What holds the route's ``dependency_overrides`` (the app), or None. While it has any, FastAPI solves the
    # tree of each overriding callable in place of the one it overrides, so the facts are those of that tree.
    overrides_provider: Any = None


def _is_request_scoped_generator(dependant: Any) -> bool:
    """A dependency FastAPI exits once the response has been sent: a generator not declared
    ``scope="function"``."""
    return getattr(dependant, "scope", None) != "function" and _is_generator_callable(dependant.call)


def _facts_of(route: Any, dependant: Any, overrides: Mapping[Any, Any]) -> _RouteFacts:
    """The facts of the tree FastAPI solves: ``dependant``'s, with each call in ``overrides`` replaced by its
    override and that one's own dependencies, as `fastapi.dependencies.utils.solve_dependencies` does (keeping
    the scope the overridden dependency was declared with)."""
    calls: set[Any] = set()
    held_past_function = False

    def walk(node: Any, *, under_request_generator: bool) -> bool:
        """Collects the calls below ``node``; whether it or a dependency of it holds a connection of ours."""
        nonlocal held_past_function
        if overrides:
            override = overrides.get(node.call, node.call)
            if override is not node.call:
                node = get_dependant(path=node.path, call=override, name=node.name, scope=node.scope)
        calls.add(node.call)
        below = under_request_generator or _is_request_scoped_generator(node)
        holds = node.call in _HOLDING_CALLS
        for sub in node.dependencies:
            holds = walk(sub, under_request_generator=below) or holds
        if holds and under_request_generator:
            held_past_function = True
        return holds

    for sub in dependant.dependencies:  # the root is the path operation, told apart by `_streams`
        walk(sub, under_request_generator=False)
    endpoint = getattr(route, "endpoint", None)
    try:
        streams = endpoint is not None and _streams(endpoint)
    except TypeError:  # an endpoint object that cannot be hashed, so not cached
        streams = _streams.__wrapped__(endpoint)
    provider = getattr(route, "dependency_overrides_provider", None)
    return _RouteFacts(frozenset(calls), streams or held_past_function, provider)


# The facts of each route, computed once per route. Keyed by id(): FastAPI's routes and dependants
# are not hashable. An id is reused once its object is collected (an app dropped and another one made, as tests
# do), so each entry holds a weak reference to its route and serves that very object only; the reference's
# callback drops the entry when the route goes.
_ROUTE_FACTS: dict[int, tuple[weakref.ref[Any], _RouteFacts]] = {}
# Where FastAPI keeps its own state of a request in the ASGI scope, and in it, for a route of an included
# APIRouter, the route as that inclusion made it: its dependency tree has the dependencies of the routers it was
# included through, of ``include_router(..., dependencies=...)`` and of the app too, which the route's own
# ``dependant`` lacks, and one router included twice makes two of them for one route.
_FASTAPI_STATE = "fastapi"
_INCLUDED_ROUTE = "effective_route_context"
# Where the facts of a request's route are kept while ``dependency_overrides`` change them: each of the request's
# dependencies asks, and one walk of the overridden tree serves them all.
_OVERRIDDEN_FACTS = "mysqlpool.route_facts"
_NO_STATE: Mapping[str, Any] = {}


def _route_facts(connection: HTTPConnection) -> _RouteFacts | None:
    scope = connection.scope
    route: Any = scope.get("route")
    included = scope.get(_FASTAPI_STATE, _NO_STATE).get(_INCLUDED_ROUTE)
    if included is not None and getattr(included, "original_route", None) is route:
        route = included  # what FastAPI solves for this request: the route as included
    key = id(route)
    entry = _ROUTE_FACTS.get(key)
    if entry is not None and entry[0]() is route:
        facts = entry[1]
    else:
        dependant = getattr(route, "dependant", None)
        if dependant is None:
            return None
        facts = _facts_of(route, dependant, _NO_STATE)
        try:
            ref = weakref.ref(route, functools.partial(_forget_route, key))
        except TypeError:  # a route class without weak references: worked out on every request
            pass
        else:
            _ROUTE_FACTS[key] = (ref, facts)
    provider = facts.overrides_provider
    # Read on every request, as FastAPI reads it: a test sets, clears or replaces the overrides between requests.
    overrides: Mapping[Any, Any] | None = provider.dependency_overrides if provider is not None else None
    if not overrides:
        return facts
    kept: tuple[Any, _RouteFacts] | None = scope.get(_OVERRIDDEN_FACTS)
    if kept is not None and kept[0] is route:
        return kept[1]
    overridden = _facts_of(route, route.dependant, overrides)
    scope[_OVERRIDDEN_FACTS] = (route, overridden)
    return overridden


def _forget_route(key: int, ref: weakref.ref[Any]) -> None:
    entry = _ROUTE_FACTS.get(key)
    if entry is not None and entry[0] is ref:  # the entry this reference was made for, not a later one
        del _ROUTE_FACTS[key]


class PoolDependencies:
    """The dependency callables of one named pool. Get it with `pool_dependencies`.

    - ``get_pool``: the `Pool` itself.
    - ``get_conn``: a connection, held until the handler returns; for a generator path operation (a streaming
      body), or on a route where a default-scope ``yield`` dependency depends on it, until the response has been
      sent.
    - ``get_cursor`` / ``get_dict_cursor``: a cursor (tuples / dicts) on that connection.
    - ``get_transaction``: that connection inside a transaction, committed before the response is sent and
      rolled back when the handler raises (``HTTPException`` included). Refuses a generator path operation,
      whose body runs after the status line was sent: there, take the connection and commit in the body.
    - ``get_run_transaction``: ``await run(fn, retries=3)``, the pool's `Pool.run_transaction`: a transaction
      of its own (not the request's connection), rerun on deadlock; 503 when no connection can be had.

    Within one request they share one connection: a handler that asks for both a cursor and the transaction
    gets a cursor inside the transaction.
    """

    __slots__ = (
        "get_conn",
        "get_cursor",
        "get_dict_cursor",
        "get_pool",
        "get_read_conn",
        "get_read_cursor",
        "get_run_transaction",
        "get_transaction",
        "name",
    )

    get_pool: Callable[[HTTPConnection], Awaitable[Pool]]
    get_conn: Callable[..., Awaitable[aiomysql.Connection]]
    get_cursor: Callable[..., Awaitable[aiomysql.Cursor]]
    get_dict_cursor: Callable[..., Awaitable[aiomysql.DictCursor]]
    get_transaction: Callable[..., Awaitable[aiomysql.Connection]]
    get_run_transaction: Callable[..., Awaitable[RunTransaction]]
    get_read_conn: Callable[..., Awaitable[aiomysql.Connection]]
    get_read_cursor: Callable[..., Awaitable[aiomysql.Cursor]]

    def __init__(self, name: str) -> None:
        self.name = name
        held_key = _HELD + name
        transaction_key = _IN_TRANSACTION + name
        # Filled in below: the dependencies that mean "this handler writes", for `_writes`.
        write_calls: set[Callable[..., Any]] = set()

        async def get_pool(connection: HTTPConnection) -> Pool:
            pools = pools_of(connection)
            try:
                return pools[name]
            except KeyError:
                raise RuntimeError(
                    f"no MySQL pool named {name!r} on this app (open: {', '.join(map(repr, pools))}); "
                    f"open it with mp.mysql_lifespan(dsn, name={name!r})"
                ) from None

        # Dependencies are declared with defaults, not `Annotated`: these are closures, and FastAPI resolves
        # string annotations in the module's globals, where closure variables do not exist.
        # Depends on get_pool (rather than calling it) so that overriding get_pool in a test
        # redirects every connection, cursor and transaction to the overriding pool.
        async def get_conn(
            connection: HTTPConnection,
            pool: Pool = Depends(get_pool),  # noqa: B008
        ) -> aiomysql.Connection:
            held: aiomysql.Connection | None = connection.scope.get(held_key)
            if held is not None:  # taken already for a read of this request (read-your-writes)
                return held
            conn = await _acquire_for(connection, pool)
            connection.scope[held_key] = conn
            return conn

        async def get_read_conn(
            connection: HTTPConnection,
            pool: Pool = Depends(get_pool),  # noqa: B008
        ) -> aiomysql.Connection:
            if held_key in connection.scope or _writes(connection, write_calls):
                # The handler writes too: its reads go to its primary connection and see its own writes.
                return await get_conn(connection, pool)
            pools: Mapping[str, Pool] = getattr(connection.state, STATE_KEY, None) or {}
            if pools.get(name) is not pool:
                # get_pool is overridden (app.dependency_overrides): its pool serves the reads too, not the
                # replicas of the pool it stands in for.
                return await _acquire_for(connection, pool)
            replicas = pools.get(name + REPLICAS_SUFFIX)
            if replicas is None:
                return await _acquire_for(connection, pool)  # no replicas configured: the primary serves reads
            ryw: ReadYourWrites | None = connection.scope.get("state", {}).get(_RYW_KEY, {}).get(name)
            token = ryw.token(connection) if ryw is not None else None
            if token is None:
                return await _acquire_for(connection, replicas)
            acquired = replicas.acquire()
            try:
                conn = await acquired.__aenter__()
            except Exception as exc:
                if not _is_unavailable(exc):
                    raise
                return await _acquire_for(connection, pool)
            try:
                assert ryw is not None
                reached = await wait_for_gtid(conn, token, ryw.wait)
                conn.forget_last_statement()  # the handler's connection shows no figure of the pool's wait
            except Exception as exc:
                # The replica could not wait (GTIDs off, a lost connection, ...): the primary has the write.
                await acquired.__aexit__(type(exc), exc, exc.__traceback__)
                logger.warning(
                    "pool %s: a read-your-writes wait failed on a replica (%s: %s); reading on the primary",
                    replicas.name, type(exc).__name__, exc,
                    extra={"pool": replicas.name, "event": "gtid_wait_failed"},
                )  # fmt: skip
                return await _acquire_for(connection, pool)
            except BaseException as exc:
                await acquired.__aexit__(type(exc), exc, exc.__traceback__)
                raise
            if not reached:
                # This replica has not applied the client's last write yet: the primary has.
                await acquired.__aexit__(None, None, None)
                return await _acquire_for(connection, pool)
            _exit_stack(connection).push_async_exit(_Release(acquired).exit)
            return conn

        def cursor_dependency(dict_rows: bool) -> Callable[..., Awaitable[Any]]:
            async def get_cursor(
                connection: HTTPConnection,
                conn: aiomysql.Connection = Depends(get_conn),  # noqa: B008
                pool: Pool = Depends(get_pool),  # noqa: B008
            ) -> Any:
                stack = _exit_stack(connection)
                cursor = await pool.driver.cursor(conn, dict_rows=dict_rows)
                stack.push_async_exit(cursor)  # closed before the connection goes back
                return cursor

            return get_cursor

        get_cursor = cursor_dependency(False)
        get_dict_cursor = cursor_dependency(True)

        def read_cursor_dependency() -> Callable[..., Awaitable[Any]]:
            async def get_read_cursor(
                connection: HTTPConnection,
                conn: aiomysql.Connection = Depends(get_read_conn),  # noqa: B008
                pool: Pool = Depends(get_pool),  # noqa: B008
            ) -> Any:
                cursor = await pool.driver.cursor(conn, dict_rows=False)
                _exit_stack(connection).push_async_exit(cursor)
                return cursor

            return get_read_cursor

        get_read_cursor = read_cursor_dependency()

        async def get_transaction(
            connection: HTTPConnection,
            conn: aiomysql.Connection = Depends(get_conn),  # noqa: B008
        ) -> aiomysql.Connection:
            if _is_streaming(connection):
                endpoint = connection.scope["endpoint"]
                name = getattr(endpoint, "__qualname__", repr(endpoint))
                raise RuntimeError(
                    f"get_transaction cannot serve {name}(), a generator path operation: its body "
                    "runs after the response's status line was sent, so a commit after the body could not turn "
                    "into an error response any more. Ask for the connection (mp.ConnDep) and commit at the end "
                    "of the body, where a failed commit aborts the stream: await conn.begin() ... yield ... "
                    "await conn.commit(). See 'Streaming from the database' in fastapi_mysqlpool's FastAPI docs."
                )
            if connection.scope.get(transaction_key) is conn:
                return conn  # begun by an earlier call of this request, and ended once (see _IN_TRANSACTION)
            # Always on the function-scoped stack: committed before the response is sent, whatever holds the
            # connection longer (see `_exit_stack`).
            stack = _stack(connection, _FUNCTION_STACK)
            await conn.begin()
            connection.scope[transaction_key] = conn
            stack.push_async_exit(_Transaction(conn).end)  # ended before the connection goes back
            return conn

        async def get_run_transaction(pool: Pool = Depends(get_pool)) -> RunTransaction:  # noqa: B008
            async def run(fn: Transaction[Any], *, retries: int = 3, acquire_timeout: float | None = None) -> Any:
                try:
                    return await pool.run_transaction(fn, retries=retries, acquire_timeout=acquire_timeout)
                except Exception as exc:
                    if not _is_unavailable(exc):
                        raise
                    # Only the acquire raises these as "unavailable": statement errors and a commit of
                    # unknown outcome pass through to the app's handlers.
                    if isinstance(exc, CommitOutcomeUnknown) or not (
                        isinstance(exc, PoolError) or _is_connect_error(exc)
                    ):
                        raise
                    reason, headers = _unavailable(exc)
                    raise HTTPException(503, reason, headers) from exc

            return run

        dependencies = {
            "get_pool": get_pool,
            "get_conn": get_conn,
            "get_cursor": get_cursor,
            "get_dict_cursor": get_dict_cursor,
            "get_transaction": get_transaction,
            "get_run_transaction": get_run_transaction,
            "get_read_conn": get_read_conn,
            "get_read_cursor": get_read_cursor,
        }
        write_calls.update((get_conn, get_cursor, get_dict_cursor, get_transaction))
        _HOLDING_CALLS.update(write_calls, (get_read_conn, get_read_cursor))
        for attribute, fn in dependencies.items():
            fn.__name__ = attribute
            fn.__qualname__ = f"pool_dependencies({name!r}).{attribute}"
            setattr(self, attribute, fn)

    def __repr__(self) -> str:
        return f"pool_dependencies({self.name!r})"


_dependencies: dict[str, PoolDependencies] = {}


def pool_dependencies(name: str = DEFAULT_POOL) -> PoolDependencies:
    """The dependencies of the pool ``name``; the same objects on every call, so overrides keep working."""
    deps = _dependencies.get(name)
    if deps is None:
        deps = _dependencies[name] = PoolDependencies(name)
    return deps


_default = pool_dependencies()
# The docstrings after each name are for the API reference, which reads them from the source.
get_pool = _default.get_pool
"""``Depends(mp.get_pool)``: the default pool itself (`Pool`), for a handler that acquires on its own."""
get_conn = _default.get_conn
"""``Depends(mp.get_conn)``: a connection of the default pool, held until the handler returns, then released.

No connection in time (exhausted pool, database down, pool closing): ``503`` with ``Retry-After``."""
get_cursor = _default.get_cursor
"""``Depends(mp.get_cursor)``: an ``aiomysql.Cursor`` (rows as tuples) on the request's connection; closed
before the connection goes back."""
get_dict_cursor = _default.get_dict_cursor
"""``Depends(mp.get_dict_cursor)``: an ``aiomysql.DictCursor`` (rows as dicts) on the request's connection."""
get_transaction = _default.get_transaction
"""``Depends(mp.get_transaction)``: the request's connection inside a transaction. It commits when the handler
returns, *before* the response is sent (a failed commit is an error response, never a 2xx), and rolls back when
the handler raises, ``HTTPException`` included."""
get_run_transaction = _default.get_run_transaction
"""``Depends(mp.get_run_transaction)``: ``await run(fn, retries=3)`` runs ``fn(conn)`` in a transaction of its own
(`Pool.run_transaction`), rerun on deadlock; 503 when no connection can be had."""

PoolDep = Annotated[Pool, Depends(get_pool)]
"""``pool: mp.PoolDep`` is ``pool: Pool = Depends(mp.get_pool)``."""
ConnDep = Annotated[aiomysql.Connection, Depends(get_conn)]
"""``conn: mp.ConnDep`` is ``conn = Depends(mp.get_conn)``."""
CursorDep = Annotated[aiomysql.Cursor, Depends(get_cursor)]
"""``cur: mp.CursorDep`` is ``cur = Depends(mp.get_cursor)``."""
DictCursorDep = Annotated[aiomysql.DictCursor, Depends(get_dict_cursor)]
"""``cur: mp.DictCursorDep`` is ``cur = Depends(mp.get_dict_cursor)``."""
TransactionDep = Annotated[aiomysql.Connection, Depends(get_transaction)]
"""``conn: mp.TransactionDep`` is ``conn = Depends(mp.get_transaction)``."""
get_read_conn = _default.get_read_conn
"""``Depends(mp.get_read_conn)``: a connection for reads: from the replica pool of ``mysql_lifespan(dsn,
replicas=...)`` (the primary while no replica qualifies, or without replicas), the request's own primary
connection when the handler also holds a write dependency, and the primary when the client's GTID token
(`ReadYourWrites`) is not applied on the replica within its wait."""
get_read_cursor = _default.get_read_cursor
"""``Depends(mp.get_read_cursor)``: an ``aiomysql.Cursor`` on the request's read connection."""
ReadConnDep = Annotated[aiomysql.Connection, Depends(get_read_conn)]
"""``conn: mp.ReadConnDep`` is ``conn = Depends(mp.get_read_conn)``."""
ReadCursorDep = Annotated[aiomysql.Cursor, Depends(get_read_cursor)]
"""``cur: mp.ReadCursorDep`` is ``cur = Depends(mp.get_read_cursor)``."""
RunTransactionDep = Annotated[RunTransaction, Depends(get_run_transaction)]
"""``run: mp.RunTransactionDep`` is ``run = Depends(mp.get_run_transaction)``."""


# --------------------------------------------------------------------------- errors


def install_error_handlers(app: Starlette) -> None:
    """Answer `PoolError` (timeout, too many waiters, closed) and a connection lost mid-request (see
    `is_disconnect`) with 503 and ``Retry-After`` anywhere in ``app``, but not `PoolMisuse`, a bug in the app
    that stays the app's 500; a statement the server stopped at
    ``max_statement_time`` (see `is_statement_timeout`) with 504; `CommitOutcomeUnknown` with 500, without
    ``Retry-After``, and logged at ERROR.

    Only needed where code calls ``pool.acquire()`` itself (plain Starlette, a background part of a handler):
    the dependencies already answer 503. Exception handlers cannot be added from a lifespan, because Starlette
    has built its middleware stack before the lifespan starts; hence this explicit call.
    """
    app.add_exception_handler(PoolError, _pool_error_response)
    # A connection lost mid-request (server restarted, network cut) is the database being
    # unavailable too, not a bug in the handler: a retry will get a fresh connection.
    for name in DRIVERS:
        try:
            driver = get_driver(name)
        except ValueError:
            continue  # not installed: none of its errors can occur
        for error in driver.connection_errors:
            app.add_exception_handler(error, _pool_error_response)


async def _pool_error_response(request: Request, exc: Exception) -> Response:
    if is_statement_timeout(exc):
        return JSONResponse({"detail": STATEMENT_TIMEOUT_DETAIL}, status_code=504)
    if isinstance(exc, CommitOutcomeUnknown):
        # Answered here rather than raised on to the server, which would log it: someone has to find out
        # whether the write happened, so it is logged, with the request it belongs to.
        logger.error(
            "%s %s: %s", request.method, request.url.path, exc,
            exc_info=exc, extra={"event": "commit_outcome_unknown"},
        )  # fmt: skip
        return JSONResponse({"detail": COMMIT_UNKNOWN_DETAIL}, status_code=500)
    if is_wrong_host(exc):
        return JSONResponse({"detail": _WRONG_HOST_DETAIL}, status_code=503, headers={"Retry-After": str(RETRY_AFTER)})
    if isinstance(exc, PoolMisuse) or not (isinstance(exc, PoolError) or is_disconnect(exc)):
        raise exc  # a statement-level error or a bug in the app: the app's own 500 handling applies
    reason, headers = _unavailable(exc)
    return JSONResponse({"detail": reason}, status_code=503, headers=headers)
