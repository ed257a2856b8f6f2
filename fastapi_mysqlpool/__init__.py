"""Production-grade MySQL/MariaDB access for FastAPI and Starlette.

A robust asyncio connection pool with aiomysql's API (`create_pool`, `Pool`), and its
FastAPI integration: a lifespan hook, per-request dependencies and a stats/health router.
"""

from __future__ import annotations

from ._config import PoolOptions, mask_dsn, parse_dsn
from ._create import create_pool
from ._driver import is_disconnect
from ._errors import PoolClosed, PoolError, PoolTimeout, TooManyWaiters
from ._pool import Pool

__version__ = "0.1.0"

__all__ = [
    "Pool",
    "PoolClosed",
    "PoolError",
    "PoolOptions",
    "PoolTimeout",
    "TooManyWaiters",
    "__version__",
    "create_pool",
    "is_disconnect",
    "mask_dsn",
    "parse_dsn",
]
