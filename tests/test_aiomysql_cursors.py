"""The pool's aiomysql cursors and its plain-query path behave exactly as aiomysql's.

``conn.cursor()`` on a pool connection gives the pool's subclasses of ``aiomysql.Cursor`` and
``aiomysql.DictCursor`` (`_aiomysql_cursors`), and a plain query sends itself without aiomysql's command
coroutines. Each test runs one script of cursor calls, the odd ones included (errors, closed cursors, result
sets left unread, warnings, echo), on a stock ``aiomysql.Connection`` and on the pool's, and compares all that a
caller can see.
"""

from __future__ import annotations

import asyncio
import collections.abc
import functools
import logging
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from unittest import mock

import aiomysql
import pymysql
import pytest

from fastapi_mysqlpool import _aiomysql_cursors
from fastapi_mysqlpool._aiomysql import Connection, is_clean
from fastapi_mysqlpool.testing import ExternalServer, MySQLServer
from tests.conftest import PoolFactory, query, raw_connect

Transcript = list[Any]


@pytest.fixture(scope="module")
def schema(mysql_server: MySQLServer | ExternalServer) -> Iterator[None]:
    admin = pymysql.connect(**mysql_server.root_connect_kwargs(), autocommit=True)
    try:
        query(admin, "CREATE OR REPLACE TABLE app.cursor_log (id INT AUTO_INCREMENT PRIMARY KEY, note TEXT)")
        query(
            admin,
            "CREATE OR REPLACE PROCEDURE app.cursor_two_results() "
            "BEGIN SELECT 1 AS a; SELECT 'two' AS b, NULL AS c; END",
        )
        yield
    finally:
        query(admin, "DROP TABLE IF EXISTS app.cursor_log")
        query(admin, "DROP PROCEDURE IF EXISTS app.cursor_two_results")
        admin.close()


@pytest.fixture
async def pair(mysql_dsn: str, schema: None) -> AsyncIterator[tuple[aiomysql.Connection, aiomysql.Connection]]:
    """(a stock aiomysql connection, the pool's connection class), both open on the test server."""
    stock = await raw_connect(aiomysql.Connection, mysql_dsn)
    ours = await raw_connect(Connection, mysql_dsn)
    yield stock, ours
    stock.close()
    ours.close()


async def _outcome(record: Transcript, step: Callable[[], Awaitable[Any]]) -> Any:
    """Append what ``step`` returned, or the error it raised (type and arguments), with any warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = await step()
        except Exception as exc:
            record.append(("raised", type(exc), exc.args))
            value = None
        else:
            record.append(("returned", value))
    if caught:
        # Where it was raised from, too: a filter on aiomysql's module, or the once-per-place default, reads it.
        record.append(("warned", [(w.category, str(w.message), w.filename, w.lineno) for w in caught]))
    return value


def _state(cur: aiomysql.Cursor) -> tuple[Any, ...]:
    return (cur.rowcount, cur.rownumber, cur.description, bool(cur.lastrowid), cur.closed)


async def _script(conn: aiomysql.Connection, cls: type[aiomysql.Cursor]) -> Transcript:
    """Every cursor call the pool's classes change, in the orders a caller may make them."""
    seen: Transcript = []
    cur = await conn.cursor(cls)
    await _outcome(seen, cur.fetchone)  # before any execute
    await _outcome(seen, lambda: cur.execute("SELECT %s, %s", (1, "a")))
    await _outcome(seen, cur.fetchone)
    await _outcome(seen, cur.fetchone)  # past the end
    seen.append(_state(cur))
    await _outcome(seen, lambda: cur.execute("SELECT %(x)s AS x, %(y)s AS y", {"x": 5, "y": None}))
    await _outcome(seen, lambda: cur.fetchmany(2))
    await _outcome(seen, lambda: cur.execute("SELECT seq FROM seq_1_to_5"))
    await _outcome(seen, cur.fetchone)
    await _outcome(seen, lambda: cur.fetchmany(2))
    await _outcome(seen, lambda: cur.scroll(0, "absolute"))
    await _outcome(seen, cur.fetchone)
    await _outcome(seen, cur.fetchall)
    seen.append([row async for row in cur])  # exhausted: nothing more
    await _outcome(seen, lambda: cur.execute("SELECT seq FROM seq_1_to_3"))
    seen.append([row async for row in cur])
    await _outcome(seen, lambda: cur.executemany("INSERT INTO cursor_log (note) VALUES (%s)", [("a",), ("b",)]))
    seen.append(_state(cur))
    await _outcome(seen, lambda: cur.execute("INSERT INTO cursor_log (note) VALUES (%s)", "c"))
    seen.append(_state(cur))
    # Result sets left unread: the next execute reads them first.
    await _outcome(seen, lambda: cur.execute("CALL cursor_two_results()"))
    await _outcome(seen, cur.fetchall)
    await _outcome(seen, lambda: cur.execute("SELECT 2"))
    await _outcome(seen, cur.fetchall)
    await _outcome(seen, lambda: cur.callproc("cursor_two_results"))
    await _outcome(seen, cur.fetchall)
    await _outcome(seen, cur.nextset)
    await _outcome(seen, cur.fetchall)
    await _outcome(seen, cur.nextset)
    await _outcome(seen, cur.nextset)
    await _outcome(seen, lambda: cur.execute("SELECT 1 / 0"))  # a warning, raised as a Warning
    await _outcome(seen, cur.fetchall)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", module="aiomysql")
        await cur.execute("SELECT 1 / 0, 2 / 0")
    seen.append(("warned despite the filter", [str(w.message) for w in caught]))
    await _outcome(seen, lambda: cur.execute("SELECT * FROM no_such_table"))
    seen.append(_state(cur))
    await _outcome(seen, lambda: cur.execute("SELECT 3"))
    await _outcome(seen, cur.fetchone)
    # Closed with result sets still to come: close() reads them, and the connection goes on.
    await _outcome(seen, lambda: cur.execute("CALL cursor_two_results()"))
    await _outcome(seen, cur.close)
    seen.append((_state(cur), conn._result.has_next))
    await _outcome(seen, cur.close)  # twice
    await _outcome(seen, lambda: cur.execute("SELECT 4"))
    await _outcome(seen, cur.fetchone)
    # The end of `async with` closes it the same way.
    async with conn.cursor(cls) as cur2:
        await _outcome(seen, lambda: cur2.execute("CALL cursor_two_results()"))
    seen.append((_state(cur2), conn._result.has_next))
    async with conn.cursor(cls) as cur3:
        await _outcome(seen, lambda: cur3.execute("SELECT 5"))
        await _outcome(seen, cur3.fetchall)
    seen.append(_state(cur3))
    seen.append(conn.get_transaction_status())
    return seen


@pytest.mark.parametrize("cls", [aiomysql.Cursor, aiomysql.DictCursor])
async def test_cursor_calls_behave_as_aiomysqls(
    pair: tuple[aiomysql.Connection, aiomysql.Connection], cls: type[aiomysql.Cursor]
) -> None:
    stock, ours = pair
    expected = await _script(stock, cls)
    seen = await _script(ours, cls)
    assert seen == expected
    assert ours._next_seq_id == stock._next_seq_id
    assert is_clean(ours)


async def test_the_pools_classes_are_aiomysqls_subclasses(mysql_dsn: str) -> None:
    conn = await raw_connect(Connection, mysql_dsn)
    try:
        default = await conn.cursor()
        assert type(default) is _aiomysql_cursors.Cursor
        assert isinstance(default, aiomysql.Cursor)
        named = await conn.cursor(aiomysql.Cursor)
        assert type(named) is _aiomysql_cursors.Cursor
        as_dicts = await conn.cursor(aiomysql.DictCursor)
        assert type(as_dicts) is _aiomysql_cursors.DictCursor
        assert isinstance(as_dicts, aiomysql.DictCursor)
        async with conn.cursor() as entered:
            assert type(entered) is _aiomysql_cursors.Cursor
        assert entered.closed
        # Any other class, and a mix of classes, are aiomysql's own, as aiomysql builds them.
        for other in (aiomysql.SSCursor, aiomysql.SSDictCursor, aiomysql.cursors.DeserializationCursor):
            assert type(await conn.cursor(other)) is other
        mixed = await conn.cursor(aiomysql.cursors.DeserializationCursor, aiomysql.DictCursor)
        assert type(mixed).__name__ == "DeserializationDictCursor"
        with pytest.raises(TypeError, match="subclass of Cursor"):
            conn.cursor(dict)
    finally:
        conn.close()


async def test_the_connections_cursor_class_is_followed(mysql_dsn: str) -> None:
    conn = await raw_connect(Connection, mysql_dsn, cursorclass=aiomysql.DictCursor)
    try:
        async with conn.cursor() as cur:
            assert type(cur) is _aiomysql_cursors.DictCursor
            await cur.execute("SELECT 1 AS a")
            assert await cur.fetchall() == [{"a": 1}]
    finally:
        conn.close()
    unbuffered = await raw_connect(Connection, mysql_dsn, cursorclass=aiomysql.SSCursor)
    try:
        async with unbuffered.cursor() as cur:
            assert type(cur) is aiomysql.SSCursor
            await cur.execute("SELECT seq FROM seq_1_to_3")
            assert await cur.fetchall() == [(1,), (2,), (3,)]
    finally:
        unbuffered.close()


async def test_what_cursor_returns_is_aiomysqls(pair: tuple[aiomysql.Connection, aiomysql.Connection]) -> None:
    # A coroutine to asyncio, awaitable, an async context manager; asyncio's helpers treat both the same.
    seen = []
    for conn in pair:
        made = conn.cursor()
        kinds = (type(made), asyncio.iscoroutine(made), isinstance(made, collections.abc.Coroutine))
        await made
        outcomes = []
        for use in (asyncio.ensure_future, lambda c: asyncio.wait_for(c, 5), asyncio.gather):
            try:
                value = await use(conn.cursor())
            except Exception as exc:
                outcomes.append((type(exc), str(exc)))
            else:
                outcomes.append(type(value).__mro__[-3])  # aiomysql's Cursor, under the pool's subclass
        seen.append((kinds, outcomes))
    assert seen[0] == seen[1]


@pytest.mark.parametrize("argument", [{}, [], "Cursor", dict])
async def test_a_wrong_cursor_class_fails_as_in_aiomysql(
    pair: tuple[aiomysql.Connection, aiomysql.Connection], argument: Any
) -> None:
    raised = []
    for closed in (False, True):
        for conn in pair:
            if closed:
                conn.close()
            try:
                conn.cursor(argument)
            except Exception as exc:
                raised.append((closed, type(exc), exc.args))
    assert raised[0::2] == raised[1::2]
    assert len(raised) == 4


@pytest.mark.parametrize("cls", [aiomysql.Cursor, aiomysql.DictCursor])
async def test_a_cursor_closed_while_its_answer_is_awaited_fails_as_in_aiomysql(
    pair: tuple[aiomysql.Connection, aiomysql.Connection], cls: type[aiomysql.Cursor]
) -> None:
    seen = []
    for conn in pair:
        cur = await conn.cursor(cls)

        async def close_soon(cur: aiomysql.Cursor = cur) -> None:
            await asyncio.sleep(0.1)
            await cur.close()

        closing = asyncio.create_task(close_soon())
        try:
            await cur.execute("SELECT SLEEP(0.4)")
        except pymysql.err.ProgrammingError as exc:
            seen.append((exc.args, _state(cur), cur._executed))
        await closing
    assert seen[0] == seen[1]
    assert seen[0][0] == ("Cursor closed",)


async def test_a_cursor_of_a_closed_connection_fails_as_in_aiomysql(
    pair: tuple[aiomysql.Connection, aiomysql.Connection],
) -> None:
    raised = []
    for conn in pair:
        conn.close()
        with pytest.raises(pymysql.err.InterfaceError) as info:
            conn.cursor()
        raised.append(info.value.args)
    assert raised[0] == raised[1]


async def test_an_echoing_cursor_logs_as_in_aiomysql(
    mysql_dsn: str, schema: None, caplog: pytest.LogCaptureFixture
) -> None:
    logged = []
    for cls in (aiomysql.Connection, Connection):
        conn = await raw_connect(cls, mysql_dsn, echo=True)
        try:
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="aiomysql"):
                async with conn.cursor() as cur:
                    await cur.execute("SELECT %s", (7,))
                    assert await cur.fetchone() == (7,)
            logged.append([(r.name, r.getMessage()) for r in caplog.records])
        finally:
            conn.close()
    assert logged[0] == logged[1]
    assert ("aiomysql", "SELECT 7") in logged[1]


def _rows(conn: aiomysql.Connection) -> Any:
    return None if conn._result is None else (conn._result.rows, bool(conn._result.has_next))


async def _plain_queries(conn: aiomysql.Connection) -> Transcript:
    """The plain-query path and each case it leaves to aiomysql's: what is read, and what is warned."""
    seen: Transcript = []
    await _outcome(seen, lambda: conn.query("SELECT 1"))
    seen.append(_rows(conn))
    await _outcome(seen, lambda: conn.query(b"SELECT 'bytes'"))
    seen.append(_rows(conn))
    # A stored procedure's second result set is still to come: the next query reads it first.
    await _outcome(seen, lambda: conn.query("CALL cursor_two_results()"))
    seen.append(_rows(conn))
    await _outcome(seen, lambda: conn.query("SELECT 6"))
    seen.append(_rows(conn))
    # An unbuffered result left half read: aiomysql warns and finishes it.
    cur = await conn.cursor(aiomysql.SSCursor)
    await cur.execute("SELECT seq FROM seq_1_to_50")
    seen.append(await cur.fetchone())
    await _outcome(seen, lambda: conn.query("SELECT 7"))
    seen.append(_rows(conn))
    await _outcome(seen, lambda: conn.query("SELECT * FROM no_such_table"))
    await _outcome(seen, lambda: conn.query("SELECT HEX('\udcff')"))  # a lone surrogate: sent as its byte
    seen.append(_rows(conn))
    await _outcome(seen, lambda: conn.query("SELECT 8", unbuffered=True))
    seen.append(_rows(conn))
    await _outcome(seen, lambda: conn.query("SELECT 9"))
    seen.append((_rows(conn), conn.get_transaction_status(), conn._next_seq_id))
    return seen


async def test_plain_queries_behave_as_aiomysqls(pair: tuple[aiomysql.Connection, aiomysql.Connection]) -> None:
    stock, ours = pair
    assert await _plain_queries(ours) == await _plain_queries(stock)
    assert is_clean(ours)


async def test_a_query_longer_than_one_packet_goes_in_several(
    mysql_dsn: str, schema: None, admin: pymysql.connections.Connection
) -> None:
    # 16 MiB - 1 is the most one packet carries: a longer query is cut into packets, as aiomysql cuts it.
    (previous,) = query(admin, "SELECT @@GLOBAL.max_allowed_packet")[0]
    query(admin, "SET GLOBAL max_allowed_packet = 64 * 1024 * 1024")
    try:
        answers = []
        for cls in (aiomysql.Connection, Connection):
            conn = await raw_connect(cls, mysql_dsn)
            try:
                # The last length one packet takes, with the command's byte; one more; and well beyond.
                for size in (0xFFFFFF - 2, 0xFFFFFF - 1, 0xFFFFFF, 0xFFFFFF + 1000):
                    sql = "SELECT LENGTH('" + "x" * (size - len("SELECT LENGTH('')")) + "')"
                    await asyncio.wait_for(conn.query(sql), 60)  # a packet short of its end would hang
                    answers.append((cls.__name__, len(sql), conn._result.rows))
            finally:
                conn.close()
        assert [a[1:] for a in answers[:4]] == [a[1:] for a in answers[4:]]
        assert answers[-1][2] == ((0xFFFFFF + 1000 - len("SELECT LENGTH('')"),),)
    finally:
        query(admin, f"SET GLOBAL max_allowed_packet = {int(previous)}")


async def test_pooled_cursors_keep_the_pools_guarantees(make_pool: PoolFactory, schema: None) -> None:
    # Through a pool: a cursor left with result sets still to come, and a transaction left open, are both
    # settled by the release; the next acquirer starts clean.
    pool = await make_pool(minsize=1, maxsize=1, driver="aiomysql")
    async with pool.acquire() as conn:
        await conn.begin()
        cur = await conn.cursor()
        await cur.execute("INSERT INTO cursor_log (note) VALUES ('rolled back')")
        await cur.execute("CALL cursor_two_results()")
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT COUNT(*) FROM cursor_log WHERE note = 'rolled back'")
        assert await cur.fetchone() == (0,)
        assert not conn._result.has_next


async def test_warnings_of_result_sets_read_first_are_raised_as_in_aiomysql(mysql_dsn: str) -> None:
    # execute() reads the result sets a multi-statement left unread before it runs; their warnings come from
    # aiomysql's own code, at its own place.
    seen = []
    for cls in (aiomysql.Connection, Connection):
        conn = await raw_connect(cls, mysql_dsn, client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)
        try:
            cur = await conn.cursor()
            await cur.execute("SELECT 1; SELECT 1 / 0")
            record: Transcript = []
            await _outcome(record, lambda cur=cur: cur.execute("SELECT 2"))
            await _outcome(record, cur.fetchall)
            seen.append(record)
        finally:
            conn.close()
    assert seen[0] == seen[1]
    assert any(entry[0] == "warned" for entry in seen[1])


async def test_a_wrapped_or_mocked_execute_still_warns(
    mysql_dsn: str, schema: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Code that wraps aiomysql's execute (tracing, say) keeps aiomysql's place; a mock that cannot be read
    # makes the warning point at the caller instead of failing.
    original = aiomysql.Cursor.execute

    @functools.wraps(original)
    async def wrapped(self: aiomysql.Cursor, query: Any, args: Any = None) -> int:
        result: int = await original(self, query, args)
        return result

    conn = await raw_connect(Connection, mysql_dsn)
    try:
        for replacement, place in ((wrapped, original.__code__.co_filename), (mock.AsyncMock(), __file__)):
            monkeypatch.setattr(aiomysql.Cursor, "execute", replacement)
            monkeypatch.setattr(_aiomysql_cursors, "_place", None)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                async with conn.cursor() as cur:
                    await cur.execute("SELECT 1 / 0")
            assert [(str(w.message), w.filename) for w in caught] == [("Division by 0", place)]
    finally:
        conn.close()
