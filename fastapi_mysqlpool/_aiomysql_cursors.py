"""The cursors the pool's aiomysql connections hand out: aiomysql's, with a shorter way through each statement.

``conn.cursor()`` on a pool connection gives a `Cursor` (or, for ``aiomysql.DictCursor``, a `DictCursor`): a
subclass of aiomysql's class, so ``isinstance`` checks, the attributes and every method behave as they do on
aiomysql's, and ``conn.cursor()`` returns what aiomysql's returns (awaitable, an async context manager, a
coroutine to asyncio). What changes is how many Python calls a statement takes. aiomysql's ``execute`` looks the
connection up five times (each a call that raises once the cursor is closed) and asks twice whether result sets
are still to come, and its ``fetchone`` builds two futures where it returns one. Here:

- ``execute`` tests the cursor and the result sets still to come once; on a `Cursor` it also reads the answer
  in the same call, where aiomysql's goes through two more coroutines (``_query``, ``_do_get_result``). A
  cursor closed while the answer was awaited raises aiomysql's "Cursor closed".
- Server warnings are raised as aiomysql raises them, at the place in aiomysql's ``execute`` that its own
  warnings name, so that a filter on aiomysql's module, and the once-per-place default, work the same.
- ``fetchone`` returns one completed future.
- ``close`` (and so the end of ``async with``) only drops the connection when no result set is still to come.

Anything else (an echoing cursor, a closed one, result sets still unread before the statement, ``callproc``,
``executemany``'s own loop) takes aiomysql's own code, which raises, logs and warns what it always did. The
unbuffered cursors and any other class are aiomysql's.
"""

from __future__ import annotations

import dis
import inspect
import warnings
from collections.abc import Callable
from typing import Any

import aiomysql
import aiomysql.cursors
from pymysql.err import ProgrammingError
from pymysql.err import Warning as ServerWarning

__all__ = ["Cursor", "DictCursor", "lean_cursor_class"]


def _line_calling(function: Callable[..., Any], name: str) -> int | None:
    """The line of ``function`` that looks up the attribute ``name``, or None when it does not."""
    line = None
    for instruction in dis.get_instructions(function):
        number = getattr(instruction, "line_number", None)  # Python 3.13 on; before, starts_line is the number
        if number is None and type(instruction.starts_line) is int:
            number = instruction.starts_line
        if number is not None:
            line = number
        if instruction.argval == name and instruction.opname in ("LOAD_ATTR", "LOAD_METHOD"):
            return line
    return None


_place: tuple[str, int] | None = None


def _warned_from() -> tuple[str, int] | None:
    """Where aiomysql's own server warnings point: `_show_warnings` warns four frames up, through
    `_do_get_result` and `_query`, at its `execute`'s call of `_query`. None if that cannot be told (aiomysql's
    `execute` replaced by a mock, say): the warning then points at the caller of `execute`."""
    global _place
    if _place is None:
        execute = inspect.unwrap(aiomysql.Cursor.execute)
        try:
            line = _line_calling(execute, "_query")
        except TypeError:  # not a function
            return None
        if line is not None:
            _place = (execute.__code__.co_filename, line)
    return _place


class _Lean:
    """What `Cursor` and `DictCursor` change of aiomysql's cursor (see the module docstring). Put first."""

    _connection: Any
    _result: Any
    _rows: Any
    _rownumber: int
    _rowcount: int
    _description: Any
    _lastrowid: Any
    _executed: Any
    _last_executed: Any
    _echo: bool
    _loop: Any
    # The answer is read here; a `DictCursor` converts its rows in aiomysql's own ``_do_get_result``.
    _plain_result = True

    async def execute(self, query: Any, args: Any = None) -> int:
        conn = self._connection
        result = self._result
        if not conn or self._echo or (result is not None and result.has_next and result is conn._result):
            # Closed, echoing, or result sets still to come (read first, their warnings raised from aiomysql's
            # `execute`): aiomysql's own.
            done: int = await super().execute(query, args)  # type: ignore[misc]
            return done
        if args is not None:
            query = query % self._escape_args(args, conn)  # type: ignore[attr-defined]
        if not self._plain_result:
            await self._query(query)  # type: ignore[attr-defined]  # aiomysql's
        else:
            # aiomysql's `_query`: its `_clear_result`, the query, then its `_do_get_result`.
            self._last_executed = query
            self._rownumber = 0
            self._result = None
            self._rowcount = 0
            self._description = None
            self._lastrowid = None
            self._rows = None
            await conn.query(query)
            if not self._connection:
                raise ProgrammingError("Cursor closed")  # closed while the answer was awaited
            self._result = result = conn._result
            self._rowcount = result.affected_rows
            self._description = result.description
            self._lastrowid = result.insert_id
            self._rows = result.rows
            if result.warning_count > 0:
                await self._warn(conn)
        self._executed = query
        return self._rowcount

    async def _warn(self, conn: Any) -> None:
        """aiomysql's ``_show_warnings``, raising each warning where aiomysql's own would be raised from."""
        if self._result and self._result.has_next:
            return
        rows = await conn.show_warnings()
        if rows is None:
            return
        place = _warned_from()
        module_globals = vars(aiomysql.cursors)
        for row in rows:
            if place is None:
                warnings.warn(str(row[-1]), ServerWarning, 3)  # at the call of `execute`
                continue
            warnings.warn_explicit(
                str(row[-1]),
                ServerWarning,
                *place,
                module=module_globals["__name__"],
                registry=module_globals.setdefault("__warningregistry__", {}),
                module_globals=module_globals,
            )

    def fetchone(self) -> Any:
        if not self._executed:
            raise ProgrammingError("execute() first")
        fut = self._loop.create_future()
        rows = self._rows
        number = self._rownumber
        if rows is None or number >= len(rows):
            fut.set_result(None)
        else:
            self._rownumber = number + 1
            fut.set_result(rows[number])
        return fut

    async def close(self) -> None:
        conn = self._connection
        if conn is None:
            return
        result = self._result
        if result is not None and result.has_next and result is conn._result:
            await super().close()  # type: ignore[misc]  # reads the result sets still to come
        else:
            self._connection = None


class Cursor(_Lean, aiomysql.Cursor):  # type: ignore[misc]
    """``aiomysql.Cursor``, with fewer calls per statement (see the module docstring)."""


class DictCursor(_Lean, aiomysql.DictCursor):  # type: ignore[misc]
    """``aiomysql.DictCursor``, with fewer calls per statement (see the module docstring)."""

    _plain_result = False


def lean_cursor_class(requested: object) -> Any:
    """The pool's class for aiomysql's `requested` cursor class, or None: aiomysql's own class serves."""
    # Identity, not a dict lookup: anything may be passed, and aiomysql's own check reports what is wrong with it.
    if requested is aiomysql.Cursor:
        return Cursor
    if requested is aiomysql.DictCursor:
        return DictCursor
    return None
