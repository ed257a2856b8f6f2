"""Each driver answers `take` and `released` in one pass of its own over the connection's attributes, for
speed; the seam defines both answers from the three predicates `is_clean`, `session_changed` and
`session_dirty` (`Driver.take`, `Driver.released`). Here both are asked in every state a real connection can
be put in, on a real server, and must agree, so that the one-pass code and the predicates cannot drift apart.
(`take` tests the session only when a command reached the connection since its release; here, as if one had.)"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pymysql
import pytest

from fastapi_mysqlpool._seam import BROKEN, READY, RESTORE, ROLLBACK, Driver
from tests import _drivers
from tests._drivers import db_errors
from tests.conftest import PoolFactory, query
from tests.test_pool import conn_id, fetch

pytestmark = pytest.mark.usefixtures("driver")

COM_QUERY = 3
State = Callable[[Any, pymysql.connections.Connection], Awaitable[None]]


async def _nothing(conn: Any, admin: pymysql.connections.Connection) -> None:
    pass


async def _after_a_read(conn: Any, admin: pymysql.connections.Connection) -> None:
    assert await fetch(conn, "SELECT 1") == [(1,)]


async def _in_a_transaction(conn: Any, admin: pymysql.connections.Connection) -> None:
    await conn.begin()
    await fetch(conn, "SELECT 1")


async def _autocommit_off(conn: Any, admin: pymysql.connections.Connection) -> None:
    await conn.autocommit(False)


async def _a_user_variable(conn: Any, admin: pymysql.connections.Connection) -> None:
    await fetch(conn, "SET @answers = 1")


async def _result_sets_to_come(conn: Any, admin: pymysql.connections.Connection) -> None:
    cur = await _drivers.open_cursor(conn)
    await cur.execute("CALL app.answers_two_results()")  # reads the first of three results only; no close()
    assert conn._result.has_next


async def _unbuffered_rows_unread(conn: Any, admin: pymysql.connections.Connection) -> None:
    cur = await _drivers.open_cursor(conn, _drivers.unbuffered_cursor())
    await cur.execute("SELECT seq FROM seq_1_to_100")


async def _bytes_nobody_asked_for(conn: Any, admin: pymysql.connections.Connection) -> None:
    await conn._execute_command(COM_QUERY, "SELECT 1")  # sent, its answer never read
    await asyncio.sleep(0.2)


async def _an_answer_still_to_come(conn: Any, admin: pymysql.connections.Connection) -> None:
    await conn._execute_command(COM_QUERY, "SELECT SLEEP(0.5)")  # asked for just now: nothing arrived yet


async def _killed_by_the_server(conn: Any, admin: pymysql.connections.Connection) -> None:
    query(admin, f"KILL {await conn_id(conn)}")
    await asyncio.sleep(0.2)


_READERS: list[asyncio.Task[Any]] = []


async def _another_task_waits_for_an_answer(conn: Any, admin: pymysql.connections.Connection) -> None:
    _READERS.append(asyncio.create_task(fetch(conn, "SELECT SLEEP(0.5)")))
    await asyncio.sleep(0.1)  # the query is sent and its task waits for the answer
    assert conn._waiting is _READERS[-1]


async def _marked_broken(conn: Any, admin: pymysql.connections.Connection) -> None:
    conn._broken = True


# Each state, what `released` must answer with the pool's autocommit (True) and exact reset, and whether a
# connection on the free list can be in it: only those are asked of `take`. The free list holds connections
# that a release found `READY`, which a socket event or a defect of the pool itself can change afterwards;
# `take` tests exactly that, and nothing a caller's block could leave (the broken mark, unread rows).
STATES: dict[str, tuple[State, int, bool]] = {
    "just acquired": (_nothing, READY, True),
    "after a read": (_after_a_read, READY, True),
    "in a transaction": (_in_a_transaction, ROLLBACK, True),
    "autocommit off": (_autocommit_off, RESTORE, True),
    "a user variable": (_a_user_variable, RESTORE, True),
    "result sets to come": (_result_sets_to_come, ROLLBACK, True),
    "unbuffered rows unread": (_unbuffered_rows_unread, BROKEN, False),
    "bytes nobody asked for": (_bytes_nobody_asked_for, BROKEN, True),
    "an answer still to come": (_an_answer_still_to_come, ROLLBACK, True),
    "killed by the server": (_killed_by_the_server, BROKEN, True),
    "another task waits for an answer": (_another_task_waits_for_an_answer, BROKEN, False),
    "marked broken": (_marked_broken, BROKEN, False),
}


@pytest.fixture
def two_results(admin: pymysql.connections.Connection) -> Any:
    query(
        admin,
        "CREATE OR REPLACE PROCEDURE app.answers_two_results() BEGIN SELECT 1 AS a; SELECT 2 AS b; END",
    )
    yield
    query(admin, "DROP PROCEDURE IF EXISTS app.answers_two_results")


@pytest.mark.parametrize("state", list(STATES))
@pytest.mark.usefixtures("two_results")
async def test_the_one_pass_answers_agree_with_the_seams_definition(
    make_pool: PoolFactory, admin: pymysql.connections.Connection, state: str
) -> None:
    put_in_state, expected, can_be_idle = STATES[state]
    pool = await make_pool(minsize=1, maxsize=1, autocommit=True)
    driver = pool._driver
    async with pool.acquire() as conn:
        await put_in_state(conn, admin)
        answers: dict[tuple[bool | None, bool], int] = {}
        for autocommit in (None, True, False):
            for exact in (True, False):
                one_pass = driver.released(conn, autocommit, exact)
                assert conn._released
                defined = Driver.released(driver, conn, autocommit, exact)
                answers[autocommit, exact] = one_pass
                assert one_pass == defined, (autocommit, exact)
                if can_be_idle:
                    # As the pool's own task leaves it: a command since the release makes `take` test the session.
                    conn._touched = True
                    taken = driver.take(conn, autocommit)
                    assert taken == Driver.take(driver, conn, autocommit), autocommit
                    assert conn._released is not taken
                    assert conn._touched is not taken
                driver.set_owned(conn, True)
        assert answers[True, True] == expected
        if expected == RESTORE:
            # Without the exact reset, what the session needs is at most a rollback; autocommit off needs one
            # for a pool that runs with autocommit on, and none for one that runs with it off.
            assert answers[True, False] in (READY, ROLLBACK)
            if state == "autocommit off":
                assert (answers[True, False], answers[False, False]) == (ROLLBACK, READY)
        if expected == ROLLBACK:
            assert answers[None, False] == ROLLBACK
    # A reader still waiting on the released connection: it was closed under it.
    for reader in _READERS:
        with pytest.raises(db_errors.OperationalError, match="Lost connection"):
            await reader
    _READERS.clear()
    # Whatever the state, the pool's own release handles it: the next acquirer gets a clean session.
    async with pool.acquire() as conn:
        assert await fetch(conn, "SELECT @@in_transaction, @@autocommit, @answers") == [(0, 1, None)]
