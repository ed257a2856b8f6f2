"""The public surface changes only on purpose: `__all__` is pinned here, and every module declares its own."""

from __future__ import annotations

import importlib
import importlib.metadata
import pickle
import pkgutil
import traceback
import types

import pytest

import fastapi_mysqlpool as mp

# Fixed by the design: users, the docs and acceptance checks rely on these names.
CONTRACT = {
    "create_pool",
    "Pool",
    "PoolError",
    "PoolMisuse",
    "PoolTimeout",
    "PoolClosed",
    "mysql_lifespan",
    "pool_router",
    "get_conn",
    "get_cursor",
    "get_transaction",
    # Several servers (issue 17)
    "get_read_conn",
    "get_read_cursor",
    "ReadConnDep",
    "ReadCursorDep",
}
# Public beyond the contract, each on purpose. A new public name is added here in the same change.
ADDITIONS = {
    "__version__",
    # Options and DSNs
    "PoolOptions",
    "mask_dsn",
    "parse_dsn",
    # Errors and their classification
    "TooManyWaiters",
    "is_disconnect",
    "HookError",
    "CommitOutcomeUnknown",
    "is_statement_timeout",
    # Controls
    "Hooks",
    # FastAPI
    "ConnDep",
    "CursorDep",
    "DictCursorDep",
    "MySQLLifespan",
    "PoolDep",
    "PoolDependencies",
    "TransactionDep",
    "RunTransaction",
    "RunTransactionDep",
    "get_run_transaction",
    "get_dict_cursor",
    "get_pool",
    "install_error_handlers",
    "pool_dependencies",
    "pools_of",
    # Read-your-writes across requests by GTID
    "ReadYourWrites",
    "session_gtid",
}
# Importable by users without an underscore; everything else is an implementation detail.
PUBLIC_MODULES = {"testing"}

MODULES = sorted(info.name for info in pkgutil.iter_modules(mp.__path__))


def test_public_names_are_exactly_the_intended_ones() -> None:
    assert sorted(mp.__all__) == sorted(CONTRACT | ADDITIONS)


def test_all_lists_each_name_once() -> None:
    assert len(mp.__all__) == len(set(mp.__all__))


def test_every_public_name_exists() -> None:
    for name in mp.__all__:
        assert getattr(mp, name) is not None, name


def test_star_import_gives_exactly_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from fastapi_mysqlpool import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(mp.__all__)


def test_only_the_intended_modules_are_public() -> None:
    assert {name for name in MODULES if not name.startswith("_")} == PUBLIC_MODULES


@pytest.mark.parametrize("module_name", MODULES)
def test_every_module_declares_all_and_defines_what_it_lists(module_name: str) -> None:
    module = importlib.import_module(f"fastapi_mysqlpool.{module_name}")
    names = module.__dict__.get("__all__")
    assert isinstance(names, (list, tuple)), f"{module_name} has no __all__"
    assert len(names) == len(set(names)), f"{module_name}.__all__ repeats a name"
    for name in names:
        assert hasattr(module, name), f"{module_name}.__all__ lists {name!r}, which it does not define"


def test_timeout_is_a_pool_error_and_a_builtin_timeout() -> None:
    assert issubclass(mp.PoolTimeout, mp.PoolError)
    assert issubclass(mp.PoolTimeout, TimeoutError)
    assert issubclass(mp.PoolClosed, mp.PoolError)


def test_public_classes_are_named_after_the_public_module() -> None:
    # Generic aliases (``Callable[...]``) pass for types before Python 3.11: they are not classes.
    objects = [getattr(mp, name) for name in mp.__all__]
    classes = [obj for obj in objects if isinstance(obj, type) and not isinstance(obj, types.GenericAlias)]
    assert {cls.__name__ for cls in classes} >= {"Pool", "PoolError", "PoolTimeout", "PoolClosed", "TooManyWaiters"}
    assert [cls for cls in classes if cls.__module__ != "fastapi_mysqlpool"] == []
    # What a traceback's last line shows, and what the docs write.
    assert traceback.format_exception_only(mp.PoolTimeout("no connection")) == [
        "fastapi_mysqlpool.PoolTimeout: no connection\n"
    ]
    assert repr(mp.PoolError) == "<class 'fastapi_mysqlpool.PoolError'>"
    assert pickle.loads(pickle.dumps(mp.PoolClosed("closed"))).args == ("closed",)


def test_version_matches_the_installed_distribution() -> None:
    assert mp.__version__ == importlib.metadata.version("fastapi-mysqlpool")


def test_importing_the_package_leaves_aiomysql_untouched() -> None:
    # The pool's status tracking lives in its own connection subclass; other aiomysql code in
    # the same process keeps aiomysql's behaviour.
    import aiomysql
    import aiomysql.connection

    from fastapi_mysqlpool._aiomysql import Connection

    assert issubclass(Connection, aiomysql.Connection) and Connection is not aiomysql.Connection
    for name in ("_execute_command", "_read_packet", "_read_query_result", "_connect"):
        assert getattr(aiomysql.Connection, name).__module__ == "aiomysql.connection", name
    assert aiomysql.connection.MySQLResult._check_packet_is_eof.__module__ == "aiomysql.connection"
