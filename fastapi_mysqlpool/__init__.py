"""Production-grade MySQL/MariaDB access for FastAPI and Starlette.

A robust asyncio connection pool with aiomysql's API (`create_pool`, `Pool`), and its
FastAPI integration: a lifespan hook, per-request dependencies and a stats/health router.
"""

from __future__ import annotations

import types

from ._config import PoolOptions, mask_dsn, parse_dsn
from ._create import create_pool
from ._errors import CommitOutcomeUnknown, HookError, PoolClosed, PoolError, PoolMisuse, PoolTimeout, TooManyWaiters
from ._fastapi import (
    ConnDep,
    CursorDep,
    DictCursorDep,
    MySQLLifespan,
    PoolDep,
    PoolDependencies,
    ReadConnDep,
    ReadCursorDep,
    RunTransaction,
    RunTransactionDep,
    TransactionDep,
    get_conn,
    get_cursor,
    get_dict_cursor,
    get_pool,
    get_read_conn,
    get_read_cursor,
    get_run_transaction,
    get_transaction,
    install_error_handlers,
    mysql_lifespan,
    pool_dependencies,
    pools_of,
)
from ._gtid import ReadYourWrites, session_gtid
from ._hooks import Hooks
from ._pool import Pool
from ._router import pool_router
from ._seam import is_disconnect
from ._statement import is_statement_timeout

__version__ = "0.1.0"

__all__ = [
    "CommitOutcomeUnknown",
    "ConnDep",
    "CursorDep",
    "DictCursorDep",
    "HookError",
    "Hooks",
    "MySQLLifespan",
    "Pool",
    "PoolClosed",
    "PoolDep",
    "PoolDependencies",
    "PoolError",
    "PoolMisuse",
    "PoolOptions",
    "PoolTimeout",
    "ReadConnDep",
    "ReadCursorDep",
    "ReadYourWrites",
    "RunTransaction",
    "RunTransactionDep",
    "TooManyWaiters",
    "TransactionDep",
    "__version__",
    "create_pool",
    "get_conn",
    "get_cursor",
    "get_dict_cursor",
    "get_pool",
    "get_read_conn",
    "get_read_cursor",
    "get_run_transaction",
    "get_transaction",
    "install_error_handlers",
    "is_disconnect",
    "is_statement_timeout",
    "mask_dsn",
    "mysql_lifespan",
    "parse_dsn",
    "pool_dependencies",
    "pool_router",
    "pools_of",
    "session_gtid",
]

# Tracebacks, reprs and pickles name a class by its __module__: give the public classes the module users import
# them from, so an error prints as fastapi_mysqlpool.PoolTimeout, as the docs write it, not as the private
# module that happens to define it.
for _name in __all__:
    _obj = globals()[_name]
    # A generic alias (``Callable[...]``) passes for a type before Python 3.11, and its __module__ is read-only.
    if isinstance(_obj, type) and not isinstance(_obj, types.GenericAlias):
        _obj.__module__ = __name__
del _name, _obj
