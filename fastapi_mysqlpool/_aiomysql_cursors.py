"""The cursors the pool's aiomysql connections hand out: aiomysql's, with a shorter way through each statement.

``conn.cursor()`` on a pool connection gives a `Cursor` (or, for ``aiomysql.DictCursor``, a `DictCursor`): a
subclass of aiomysql's class, so ``isinstance`` checks, the attributes and every method behave as they do on
aiomysql's. What changes is how many Python calls a statement takes. aiomysql's cursor looks its connection up
five times per ``execute`` (each a call that raises once the cursor is closed), asks twice whether result sets
are still to come, builds two futures per ``fetchone`` where one is returned, and wraps ``cursor()`` in a future
and a coroutine. Here each of those is one test, in place:

- ``conn.cursor()`` returns an object that is both awaitable and an async context manager, as aiomysql's is,
  without the future and the coroutine behind it.
- ``execute`` tests the cursor and the result sets still to come once, and reads the answer in the same call.
  Result sets still unread (of a stored procedure, say) are read first, as aiomysql does.
- ``fetchone`` returns one completed future.
- ``close`` (and the end of ``async with``) only drops the connection when no result set is still to come.

Anything else (an echoing cursor, a closed one, warnings to report) takes aiomysql's own code, which raises and
logs what it always did. The unbuffered cursors and any other class are aiomysql's, unchanged.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import aiomysql
from pymysql.err import ProgrammingError

__all__ = ["LEAN_CURSORS", "Cursor", "CursorContext", "DictCursor"]


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
    # aiomysql's own ``_do_get_result`` reads the answer (a `DictCursor` converts its rows in its own).
    _plain_result = True

    async def execute(self, query: Any, args: Any = None) -> int:
        conn = self._connection
        if not conn or self._echo:
            done: int = await super().execute(query, args)  # type: ignore[misc]  # raises or logs, as aiomysql does
            return done
        result = self._result
        if result is not None and result.has_next and result is conn._result:
            while await self.nextset():  # type: ignore[attr-defined]
                pass
        if args is not None:
            query = query % self._escape_args(args, conn)  # type: ignore[attr-defined]
        await self._query(query)
        self._executed = query
        return self._rowcount

    async def _query(self, q: Any) -> None:
        conn = self._connection
        if not conn:
            raise ProgrammingError("Cursor closed")
        self._last_executed = q
        # aiomysql's ``_clear_result``, then its ``_do_get_result`` for a plain cursor.
        self._rownumber = 0
        self._result = None
        self._rowcount = 0
        self._description = None
        self._lastrowid = None
        self._rows = None
        await conn.query(q)
        if not self._plain_result:
            await self._do_get_result()  # type: ignore[attr-defined]
            return
        self._result = result = conn._result
        self._rowcount = result.affected_rows
        self._description = result.description
        self._lastrowid = result.insert_id
        self._rows = result.rows
        if result.warning_count > 0:
            await self._show_warnings(conn)  # type: ignore[attr-defined]

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


#: aiomysql's cursor classes and the pool's class for each.
LEAN_CURSORS: dict[Any, Any] = {aiomysql.Cursor: Cursor, aiomysql.DictCursor: DictCursor}


class CursorContext:
    """What ``conn.cursor()`` returns: awaited, the cursor; in ``async with``, the cursor, closed at the end."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def __await__(self) -> Generator[Any, None, Any]:
        return self._cursor
        yield  # a generator that returns at once: awaiting it never suspends

    async def __aenter__(self) -> Any:
        return self._cursor

    async def __aexit__(self, *exc_info: object) -> None:
        await self._cursor.close()
