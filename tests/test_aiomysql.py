"""The pool's connection class reads every reply exactly as aiomysql does.

`Connection` parses a result set straight from the stream's buffer, caches the parsed
column definitions, and waits once per missing packet rather than twice. Each test runs the
same statements through a stock ``aiomysql.Connection`` and through ours, directly and
behind a proxy that cuts the server's replies at random places, and compares everything a
caller can see.
"""

from __future__ import annotations

import asyncio
import decimal
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiomysql
import pymysql
import pytest

from fastapi_mysqlpool._aiomysql import Connection, is_clean
from fastapi_mysqlpool.testing import ExternalServer, MySQLServer
from tests._proxy import FaultProxy
from tests.conftest import PoolFactory, proxied_dsn, query, raw_connect

LONG_TEXT = "é" * 40_000  # 80,000 bytes: a three-byte length prefix
SEQUENCE_ROWS = 5000

# Every column type the text protocol has a different path for: each converter, NULL, binary and text
# charsets, JSON, and values whose length prefix takes one, three or four bytes.
_TABLE = """
CREATE TABLE app.driver_types (
    id INT PRIMARY KEY,
    tiny TINYINT, big BIGINT UNSIGNED, num DECIMAL(20, 6), f FLOAT, d DOUBLE,
    dt DATETIME(6), da DATE, ti TIME(3), ts TIMESTAMP NULL, ye YEAR,
    vc VARCHAR(300) CHARACTER SET utf8mb4, tx MEDIUMTEXT CHARACTER SET utf8mb4, bl MEDIUMBLOB, bi VARBINARY(20),
    bt BIT(12), js JSON, en ENUM('a', 'b'), nul INT NULL
) ENGINE=InnoDB
"""
_ROWS = [
    (1, -128, 18446744073709551615, "12345678901234.123456", 1.5, -2.25e-300, "2024-02-29 23:59:59.123456",
     "1000-01-01", "-838:59:59.000", "2038-01-19 03:14:07", 2155, "ÿ 🐍 ünïcødé", LONG_TEXT, b"\xfe\xff\x00" * 100,
     b"\xff\xfe", 0xABC, '{"a": [1, "ü", null]}', "b", None),
    (2, 0, 0, "0", 0.0, 0.0, "1970-01-01 00:00:01", "2000-01-01", "00:00:00", None, 1901, "", "", b"", b"",
     0, "[]", "a", 7),
    (3, None, None, None, None, None, None, None, None, None, None, None, None, None, None, None, None, None, None),
    (4, 1, 1, "-0.000001", 3.25, 1e300, "9999-12-31 23:59:59.999999", "9999-12-31", "838:59:59.999", None, 2000,
     "x" * 300, "y" * 251, b"z" * 65_536, b"\x00" * 20, 1, '"text"', None, -1),
]  # fmt: skip

STATEMENTS = [
    "SELECT 1",
    "SELECT NULL, '', 0x00, 1.5, -7",
    "SELECT * FROM driver_types ORDER BY id",
    "SELECT id, vc AS `名前`, tx FROM driver_types WHERE id = 1",
    "SELECT * FROM driver_types WHERE id < 0",  # no rows
    f"SELECT seq, CONCAT('row ', seq) FROM seq_1_to_{SEQUENCE_ROWS}",
    "SELECT 1 / 0",  # a warning
    "SHOW VARIABLES LIKE 'max_allowed%'",
    "CALL driver_two_results()",  # two result sets and the closing OK
    "INSERT INTO driver_log (note) VALUES ('one'), ('two')",  # an OK packet with rows and an id
    "UPDATE driver_log SET note = 'three' WHERE id < 0",
    "SELECT * FROM no_such_table",  # an error packet
]
# Without the large values: for replies cut into pieces of a few bytes.
SMALL_STATEMENTS = [
    sql for sql in STATEMENTS if "driver_types ORDER BY" not in sql and "seq_1_to" not in sql and "tx" not in sql
] + ["SELECT id, tiny, big, num, dt, vc, bi, js, nul FROM driver_types ORDER BY id", "SELECT seq FROM seq_1_to_300"]
# aiomysql cannot read every type without decoding (DECIMAL, for one); what it can read.
BYTES_STATEMENTS = [
    "SELECT 1",
    "SELECT NULL, '', 0x00, -7",
    "SELECT id, vc, tx, bl, bi, js, dt FROM driver_types ORDER BY id",
    f"SELECT seq, CONCAT('row ', seq) FROM seq_1_to_{SEQUENCE_ROWS}",
    "CALL driver_two_results()",
    "SELECT * FROM no_such_table",
]


@pytest.fixture(scope="module")
def schema(mysql_server: MySQLServer | ExternalServer) -> Iterator[None]:
    admin = pymysql.connect(**mysql_server.root_connect_kwargs(), autocommit=True)
    try:
        query(admin, "DROP TABLE IF EXISTS app.driver_types")
        query(admin, _TABLE)
        columns = ", ".join(["%s"] * len(_ROWS[0]))
        for row in _ROWS:
            query(admin, f"INSERT INTO app.driver_types VALUES ({columns})", *row)
        query(admin, "CREATE OR REPLACE TABLE app.driver_log (id INT AUTO_INCREMENT PRIMARY KEY, note TEXT)")
        query(
            admin,
            "CREATE OR REPLACE PROCEDURE app.driver_two_results() "
            "BEGIN SELECT 1 AS a; SELECT 'two' AS b, NULL AS c; END",
        )
        yield
    finally:
        query(admin, "DROP TABLE IF EXISTS app.driver_types, app.driver_log")
        query(admin, "DROP PROCEDURE IF EXISTS app.driver_two_results")
        admin.close()


async def _seen(conn: aiomysql.Connection, sql: str, cursor: type[aiomysql.Cursor]) -> list[Any]:
    """Everything a caller can observe of ``sql``: every result set, its description and counts, or the error."""
    seen: list[Any] = []
    try:
        async with conn.cursor(cursor) as cur:
            await cur.execute(sql)
            while True:
                result = conn._result
                seen.append(
                    (
                        cur.description,
                        await cur.fetchall(),
                        cur.rowcount,
                        bool(cur.lastrowid),  # the ids differ, as both insert
                        result.warning_count,
                        bool(result.has_next),
                        result.message,
                    )
                )
                if not await cur.nextset():
                    break
    except pymysql.err.MySQLError as exc:
        # (After an error the pool's class assumes a transaction until told otherwise: not compared.)
        seen.append((type(exc), exc.args))
    else:
        seen.append(conn.get_transaction_status())
    return seen


async def _compare(
    ours: aiomysql.Connection,
    stock: aiomysql.Connection,
    cursor: type[aiomysql.Cursor],
    statements: list[str] = STATEMENTS,
) -> None:
    for sql in statements:
        expected = await _seen(stock, sql, cursor)
        assert await _seen(ours, sql, cursor) == expected, sql
        assert is_clean(ours), sql  # nothing left unread
    assert ours._next_seq_id == stock._next_seq_id


@pytest.fixture
async def stock(mysql_dsn: str, schema: None) -> AsyncIterator[aiomysql.Connection]:
    conn = await raw_connect(aiomysql.Connection, mysql_dsn)
    yield conn
    conn.close()


@pytest.mark.parametrize("cursor", [aiomysql.Cursor, aiomysql.DictCursor])
async def test_results_are_read_as_aiomysql_reads_them(
    mysql_dsn: str, stock: aiomysql.Connection, cursor: type[aiomysql.Cursor]
) -> None:
    ours = await raw_connect(Connection, mysql_dsn)
    try:
        assert ours._buffered_reads  # the buffered path is the one under test
        await _compare(ours, stock, cursor)
        # Second time round the column definitions come from the cache: the same answers again.
        assert ours._field_cache
        await _compare(ours, stock, cursor)
        (_, rows, *_), _ = await _seen(ours, "SELECT tx, bl FROM driver_types WHERE id IN (1, 4) ORDER BY id", cursor)
        values = [tuple(row.values()) if isinstance(row, dict) else row for row in rows]
        assert values == [(LONG_TEXT, b"\xfe\xff\x00" * 100), ("y" * 251, b"z" * 65_536)]
    finally:
        ours.close()


@pytest.mark.parametrize(
    ("max_chunk", "statements"), [(1, SMALL_STATEMENTS), (7, SMALL_STATEMENTS), (1500, STATEMENTS)]
)
async def test_replies_cut_anywhere_are_read_whole(
    mysql_server: MySQLServer | ExternalServer,
    stock: aiomysql.Connection,
    proxy: FaultProxy,
    max_chunk: int,
    statements: list[str],
) -> None:
    # Cut at random places, a reply arrives over many reads, split inside packet headers, inside
    # values and between the packets of a result set: the waiting path and the buffered path take turns.
    ours = await raw_connect(Connection, proxied_dsn(mysql_server, proxy))
    try:
        proxy.split_replies(max_chunk, seed=max_chunk)
        await _compare(ours, stock, aiomysql.Cursor, statements)
    finally:
        ours.close()


@pytest.mark.parametrize("options", [{"use_unicode": False}, {"charset": "latin1"}, {"charset": "utf8mb4"}])
async def test_connection_options_that_change_decoding(mysql_dsn: str, schema: None, options: dict[str, Any]) -> None:
    stock = await raw_connect(aiomysql.Connection, mysql_dsn, **options)
    ours = await raw_connect(Connection, mysql_dsn, **options)
    try:
        if "use_unicode" in options:
            statements = BYTES_STATEMENTS
        else:  # latin1 cannot send the column alias of one of them
            statements = [
                sql for sql in STATEMENTS if sql.encode(stock.encoding, "replace").decode(stock.encoding) == sql
            ]
        await _compare(ours, stock, aiomysql.Cursor, statements)
    finally:
        stock.close()
        ours.close()


async def test_converters_are_the_connections_own(mysql_dsn: str, schema: None) -> None:
    conv = {**pymysql.converters.conversions, pymysql.constants.FIELD_TYPE.LONG: lambda s: f"<{s}>"}
    ours = await raw_connect(Connection, mysql_dsn, conv=conv)
    try:
        async with ours.cursor() as cur:
            await cur.execute("SELECT id, tiny FROM driver_types ORDER BY id LIMIT 2")
            assert await cur.fetchall() == ((("<1>", -128), ("<2>", 0)))
    finally:
        ours.close()


async def test_column_definitions_follow_the_schema(mysql_dsn: str, admin: Any) -> None:
    query(admin, "CREATE OR REPLACE TABLE app.driver_alter (v INT)")
    query(admin, "INSERT INTO app.driver_alter VALUES (5)")
    ours = await raw_connect(Connection, mysql_dsn)
    try:

        async def select() -> tuple[Any, Any]:
            async with ours.cursor() as cur:
                await cur.execute("SELECT v FROM driver_alter")
                return cur.description[0][1], await cur.fetchone()

        assert await select() == (pymysql.constants.FIELD_TYPE.LONG, (5,))
        query(admin, "ALTER TABLE app.driver_alter MODIFY v VARCHAR(10)")
        assert await select() == (pymysql.constants.FIELD_TYPE.VAR_STRING, ("5",))
        query(admin, "ALTER TABLE app.driver_alter MODIFY v DECIMAL(5, 2)")
        assert await select() == (pymysql.constants.FIELD_TYPE.NEWDECIMAL, (decimal.Decimal("5.00"),))
    finally:
        ours.close()
        query(admin, "DROP TABLE app.driver_alter")


async def test_the_column_cache_is_bounded(mysql_dsn: str) -> None:
    ours = await raw_connect(Connection, mysql_dsn)
    try:
        async with ours.cursor() as cur:
            for i in range(300):
                await cur.execute(f"SELECT {i} AS c{i}")
                assert cur.description[0][0] == f"c{i}" and await cur.fetchone() == (i,)
        assert 0 < len(ours._field_cache) <= 256
    finally:
        ours.close()


async def test_a_converter_that_raises_leaves_the_connection_unfit_for_reuse(
    make_pool: PoolFactory, mysql_dsn: str
) -> None:
    # aiomysql stops reading at a row that fails to convert, so the rest of the result is still
    # on the wire. The connection says so, and the pool closes it rather than handing it on.
    def picky(value: str) -> int:
        if value == "3":
            raise ValueError("three is not allowed")
        return int(value)

    conv = {**pymysql.converters.conversions, pymysql.constants.FIELD_TYPE.LONGLONG: picky}
    pool = await make_pool(minsize=1, maxsize=1, conv=conv)
    with pytest.raises(ValueError, match="three"):
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute("SELECT seq FROM seq_1_to_100")
    assert not is_clean(conn)
    assert pool.stats()["closed_total"]["broken"] == 1
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT seq FROM seq_4_to_6")
        assert await cur.fetchall() == ((4,), (5,), (6,))


@pytest.mark.parametrize("cls", [aiomysql.Connection, Connection])
async def test_cancelled_while_waiting_for_a_reply_closes_the_connection(mysql_dsn: str, cls: type[Any]) -> None:
    # The same as aiomysql: the reply is still coming, so the connection cannot be used again.
    conn = await raw_connect(cls, mysql_dsn)
    async with conn.cursor() as cur:
        task = asyncio.ensure_future(cur.execute("SELECT SLEEP(5)"))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert conn.closed


@pytest.mark.parametrize("cls", [aiomysql.Connection, Connection])
async def test_a_reply_cut_off_midway_is_a_lost_connection(
    mysql_server: MySQLServer | ExternalServer, proxy: FaultProxy, cls: type[Any]
) -> None:
    # The server's reply stops partway through a packet and the socket closes: both classes report
    # the lost connection (2013), and close.
    conn = await raw_connect(cls, proxied_dsn(mysql_server, proxy))
    proxy.set_latency(0.3)  # the reply arrives after the cut
    async with conn.cursor() as cur:
        task = asyncio.ensure_future(cur.execute("SELECT REPEAT('x', 100000)"))
        await asyncio.sleep(0.1)
        proxy.reset_all()
        with pytest.raises(pymysql.err.OperationalError) as caught:
            await task
    assert caught.value.args[0] == 2013
    assert conn.closed


async def test_a_reply_cut_inside_a_result_set_is_a_lost_connection(
    mysql_server: MySQLServer | ExternalServer, proxy: FaultProxy
) -> None:
    # The buffered path has read part of the rows when the connection drops.
    conn = await raw_connect(Connection, proxied_dsn(mysql_server, proxy))
    proxy.split_replies(4096, seed=1)
    async with conn.cursor() as cur:
        task = asyncio.ensure_future(cur.execute("SELECT seq FROM seq_1_to_2000000"))
        await asyncio.sleep(0.3)
        assert not task.done()
        proxy.reset_all()
        with pytest.raises(pymysql.err.OperationalError) as caught:
            await task
    assert caught.value.args[0] == 2013
    assert conn.closed


async def _after_failure(conn: aiomysql.Connection) -> list[Any]:
    """What a caller sees of a column name the connection cannot decode, and of the next statement."""
    seen: list[Any] = []
    async with conn.cursor() as cur:
        await cur.execute("SET character_set_results = latin1")
        for sql in ("SELECT 1 AS a, 2 AS `é`, 3 AS c", "SELECT 1"):
            try:
                await cur.execute(sql)
                seen.append(await cur.fetchall())
            except Exception as exc:  # whatever it is, both classes must raise the same
                seen.append((type(exc), str(exc)))
            seen.append((conn._next_seq_id, conn.closed))
    return seen


async def test_a_column_definition_that_fails_to_parse_fails_as_in_aiomysql(mysql_dsn: str) -> None:
    # The definitions are left for aiomysql's own parser, which raises at the same packet, so that
    # the same amount of the reply is read and the next statement fails the same way.
    stock = await raw_connect(aiomysql.Connection, mysql_dsn)
    ours = await raw_connect(Connection, mysql_dsn)
    try:
        expected = await _after_failure(stock)
        assert expected[0][0] is UnicodeDecodeError  # the case under test happens at all
        assert await _after_failure(ours) == expected
    finally:
        stock.close()
        ours.close()


async def _read_after_close(cls: type[Any], dsn: str) -> list[Any]:
    seen: list[Any] = []
    conn = await raw_connect(cls, dsn)
    cur = await conn.cursor(aiomysql.SSCursor)
    await cur.execute("SELECT seq FROM seq_1_to_10")
    seen.append(await cur.fetchone())
    conn.close()
    try:
        await cur.fetchone()
    except Exception as exc:  # whatever it is, both classes must raise the same
        seen.append(type(exc))
    return seen


async def test_reading_from_a_closed_connection_fails_as_in_aiomysql(mysql_dsn: str) -> None:
    expected = await _read_after_close(aiomysql.Connection, mysql_dsn)
    assert await _read_after_close(Connection, mysql_dsn) == expected == [(1,), AttributeError]


def test_a_malformed_row_is_converted_once_by_aiomysqls_parser() -> None:
    # A server cannot be made to send this: the second value claims 9 bytes and has 2. The
    # buffered parser must hand the row to aiomysql's before converting anything, so a converter
    # with side effects runs exactly as often as with aiomysql.
    from fastapi_mysqlpool._aiomysql import _Result, _row  # the parser itself: no server involved

    calls: list[str] = []

    def counting(value: str) -> str:
        calls.append(value)
        return value

    result = _Result(None)
    result.converters = [("ascii", counting), ("ascii", counting)]
    payload = b"\x011\x0912"
    with pytest.raises(AssertionError):  # what pymysql raises for a value cut short
        _row(result, bytearray(b"junk" + payload + b"more"), 4, 4 + len(payload), "utf8")
    assert calls == ["1"]  # once, by aiomysql's parser


async def test_the_column_cache_keeps_small_recent_sets(mysql_dsn: str) -> None:
    ours = await raw_connect(Connection, mysql_dsn)
    try:
        async with ours.cursor() as cur:

            async def select(sql: str) -> None:
                await cur.execute(sql)
                await cur.fetchall()

            await select("SELECT 1 AS hot")
            for i in range(200):
                await select(f"SELECT {i} AS c{i}")
                await select("SELECT 1 AS hot")  # used again and again: never the one evicted
            assert len(ours._field_cache) == 128
            assert any(b"hot" in b"".join(key[1:]) for key in ours._field_cache)
            wide = ", ".join(f"{i} AS a_rather_long_column_name_{i}" for i in range(100))  # over 4 KiB
            ours._field_cache.clear()
            await select(f"SELECT {wide}")
            assert cur.description[99][0] == "a_rather_long_column_name_99"
            assert not ours._field_cache  # parsed, not kept
    finally:
        ours.close()
