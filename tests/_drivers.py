"""The drivers the suites run over, and their DB-API errors under one name.

The pool, reliability and FastAPI suites take the ``driver`` fixture (tests/conftest.py): each test runs once
per driver. ``db_errors.OperationalError`` is the error class of the driver the current test runs on, so a test
is written once: aiomysql raises PyMySQL's ``pymysql.err`` classes, asyncmy its own ``asyncmy.errors``, with
the same names and the same hierarchy.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["DRIVER_NAMES", "current", "db_errors"]

DRIVER_NAMES = ("aiomysql", "asyncmy")
_ERROR_MODULES = {"aiomysql": "pymysql.err", "asyncmy": "asyncmy.errors"}
# The driver of the test that runs now (set by the ``driver`` fixture); aiomysql, the default, otherwise.
_current = ["aiomysql"]


def current() -> str:
    """The driver the running test uses."""
    return _current[0]


def select(name: str) -> None:
    _current[0] = name


class _Errors:
    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module(_ERROR_MODULES[_current[0]]), name)


db_errors: Any = _Errors()
