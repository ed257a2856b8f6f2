"""The private names of aiomysql, asyncmy and asyncio that the drivers rely on: an upgrade that renames or
reshapes one fails here first, with the name, rather than somewhere in the pool."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import aiomysql
import asyncmy
import pytest
from aiomysql.connection import MySQLResult as AiomysqlResult
from asyncmy.connection import MySQLResult as AsyncmyResult
from asyncmy.connection import _MySQLProtocol

COROUTINE = "coroutine function"
METHOD = "method"


def kind(owner: Any, name: str) -> str:
    value = inspect.getattr_static(owner, name)
    if inspect.iscoroutinefunction(getattr(owner, name)):
        return COROUTINE
    if callable(value) or isinstance(value, (staticmethod, classmethod)):
        return METHOD
    return type(value).__name__


PRIVATES: list[tuple[Any, str, str]] = [
    # aiomysql (fastapi_mysqlpool/_aiomysql.py)
    (aiomysql.Connection, "_connect", COROUTINE),
    (aiomysql.Connection, "_execute_command", COROUTINE),
    (aiomysql.Connection, "_read_ok_packet", COROUTINE),
    (aiomysql.Connection, "_read_packet", COROUTINE),
    (aiomysql.Connection, "_read_query_result", COROUTINE),
    (aiomysql.Connection, "_send_autocommit_mode", COROUTINE),
    (AiomysqlResult, "_check_packet_is_eof", METHOD),
    (AiomysqlResult, "_get_descriptions", COROUTINE),
    (AiomysqlResult, "_read_rowdata_packet", COROUTINE),
    (AiomysqlResult, "_read_row_from_packet", METHOD),
    (asyncio.StreamReader, "_maybe_resume_transport", METHOD),
    (asyncio.StreamReader, "_wait_for_data", COROUTINE),
    # asyncmy (fastapi_mysqlpool/_asyncmy.py)
    (asyncmy.Connection, "_execute_command", COROUTINE),
    (asyncmy.Connection, "_read_ok_packet", COROUTINE),
    (asyncmy.Connection, "_read_query_result", COROUTINE),
    (asyncmy.Connection, "_send_autocommit_mode", COROUTINE),
    (asyncmy.Connection, "ensure_closed", COROUTINE),
    (asyncmy.Connection, "_fill_buffer", COROUTINE),
    (asyncmy.Connection, "set_charset", COROUTINE),
    (AsyncmyResult, "_check_packet_is_eof", METHOD),
    (AsyncmyResult, "init_unbuffered_query", COROUTINE),
    (AsyncmyResult, "read", COROUTINE),
    (_MySQLProtocol, "wait_closed", COROUTINE),
    (_MySQLProtocol, "connection_lost", METHOD),
]


@pytest.mark.parametrize(("owner", "name", "expected"), PRIVATES, ids=lambda v: getattr(v, "__qualname__", str(v)))
def test_private_name_exists_with_the_expected_kind(owner: Any, name: str, expected: str) -> None:
    assert kind(owner, name) == expected, f"{owner.__qualname__}.{name} is no longer a {expected}"


async def test_asyncio_stream_reader_keeps_its_buffer_and_state_attributes() -> None:
    reader = asyncio.StreamReader()
    assert isinstance(reader._buffer, bytearray)
    assert reader._exception is None and reader._eof is False


def test_asyncmy_connection_state_attributes_are_public_on_the_compiled_base() -> None:
    # Read by is_clean and session_dirty: declared `public` on asyncmy's compiled _ConnectionState.
    for name in ("_proto", "_transport", "_result", "_connected", "server_status", "_next_seq_id", "_stmt_cache"):
        assert hasattr(asyncmy.connection._ConnectionState, name), name
    for name in ("buffer", "length", "pos", "eof", "exc", "_read_waiter"):
        assert hasattr(asyncmy.connection._ProtocolState, name), name


async def test_asyncmy_connection_keeps_its_connect_arguments_where_the_full_reset_reads_them() -> None:
    # Read by the full reset (`opened_with`), the escaping and the session tracking of `_asyncmy.Connection`.
    conn = asyncmy.Connection(charset="latin1", sql_mode="ANSI", database="d", init_command="SET @a = 1")
    assert (conn._charset, conn._sql_mode, conn._db, conn._init_command) == ("latin1", "ANSI", "d", "SET @a = 1")
    assert isinstance(conn._client_flag, int) and isinstance(conn._encoders, dict)
