"""Many worker processes, one server: does ``maxsize`` times the workers fit in what the server allows?

Each worker process (uvicorn ``--workers``, gunicorn ``-w``) owns its own pool, so the server sees up to
``maxsize`` x workers connections from one deployment, while it allows ``max_connections`` in all (minus one
kept for an administrator with SUPER / CONNECTION ADMIN) and ``max_user_connections`` per account. Past that,
connects fail with 1040 (too many connections) or 1203 (the account's limit), and the requests of whichever
worker lost the race wait and fail. The number of workers comes from the ``workers`` option, else from
``WEB_CONCURRENCY`` (the convention of uvicorn, gunicorn and most platforms), else from the server's command
line (``--workers N``, ``-w N``, and ``GUNICORN_CMD_ARGS``); a worker process started by uvicorn or gunicorn
sees its supervisor's command line.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._config import PoolOptions

__all__ = ["check_capacity", "detect_workers"]

logger = logging.getLogger("fastapi_mysqlpool")


def _from_argv(argv: Sequence[str]) -> int | None:
    for i, arg in enumerate(argv):
        for flag in ("--workers", "-w"):
            if arg == flag and i + 1 < len(argv) and argv[i + 1].isdigit():
                return int(argv[i + 1])
            if arg.startswith(f"{flag}=") and arg.partition("=")[2].isdigit():
                return int(arg.partition("=")[2])
        if arg.startswith("-w") and arg[2:].isdigit():
            return int(arg[2:])
    return None


def detect_workers(configured: int) -> tuple[int, str]:
    """How many worker processes share the server, and where that number came from."""
    if configured:
        return configured, "the workers option"
    text = os.environ.get("WEB_CONCURRENCY", "").strip()
    if text.isdigit() and int(text) > 0:
        return int(text), "WEB_CONCURRENCY"
    command = os.path.basename(sys.argv[0]) if sys.argv else ""
    if "uvicorn" in command or "gunicorn" in command:
        found = _from_argv(sys.argv[1:])
        if found:
            return found, f"{command} --workers"
    gunicorn = _from_argv(shlex.split(os.environ.get("GUNICORN_CMD_ARGS", "")))
    if gunicorn:
        return gunicorn, "GUNICORN_CMD_ARGS"
    return 1, "default (one process)"


def check_capacity(name: str, options: PoolOptions, max_connections: int, max_user_connections: int) -> dict[str, Any]:
    """The limits for `Pool.stats()`; logs one WARNING when ``maxsize`` x workers exceeds them."""
    workers, source = detect_workers(options.workers)
    demand = options.maxsize * workers
    # max_user_connections is the account's own limit, or the server-wide default for accounts (0: none).
    allowed = min(limit for limit in (max_connections, max_user_connections) if limit > 0) if max_connections else 0
    limits = {
        "max_connections": max_connections,
        "max_user_connections": max_user_connections,
        "workers": workers,
        "workers_source": source,
        "demand": demand,
    }
    if allowed and demand > allowed:
        which = (
            "max_user_connections" if max_user_connections and allowed == max_user_connections else "max_connections"
        )
        logger.warning(
            "pool %s: maxsize %d x %d worker(s) (%s) = %d connections, over the server's %s of %d: connects will "
            "fail with 1040/1203 and requests wait. Lower maxsize to %d or fewer, or raise %s, counting every "
            "other client of the server", name, options.maxsize, workers, source, demand, which, allowed,
            max(1, allowed // workers), which,
            extra={"pool": name, "event": "capacity", "demand": demand, "allowed": allowed, "workers": workers},
        )  # fmt: skip
    return limits
