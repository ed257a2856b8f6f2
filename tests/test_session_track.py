"""Session tracking: the OK/EOF packet parser, and what a real MariaDB reports for each statement.

The second half documents the server behaviour that an exact, free reset relies on: which statements set
``SERVER_SESSION_STATE_CHANGED`` and what they say changed. docs/pool.md ("How the pool knows a session changed")
shows the same table; when a server version reports differently, these tests say where.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pymysql
import pytest
from pymysql.constants import CLIENT

import fastapi_mysqlpool as mp
from fastapi_mysqlpool._connection import COM_RESET_CONNECTION, changes_unreported
from fastapi_mysqlpool._seam import get_driver
from fastapi_mysqlpool._session_track import (
    CLIENT_SESSION_TRACK,
    SERVER_SESSION_STATE_CHANGED,
    EofPacket,
    MalformedPacket,
    OkPacket,
    SessionChange,
    SessionTrack,
    parse_eof,
    parse_ok,
    parse_session_state,
)
from fastapi_mysqlpool.testing import ExternalServer, MySQLServer
from tests.conftest import query

VAR, SCHEMA, STATE = SessionTrack.SYSTEM_VARIABLES, SessionTrack.SCHEMA, SessionTrack.STATE_CHANGE
TX_CHARS, TX_STATE, GTIDS = (
    SessionTrack.TRANSACTION_CHARACTERISTICS,
    SessionTrack.TRANSACTION_STATE,
    SessionTrack.GTIDS,
)


def lenenc(data: bytes) -> bytes:
    assert len(data) < 0xFB
    return bytes([len(data)]) + data


def entry(kind: int, data: bytes) -> bytes:
    return bytes([kind]) + lenenc(data)


def ok_packet(status: int, info: bytes = b"", state: bytes | None = None, head: bytes = b"\x00\x00\x00") -> bytes:
    """``head``: header, affected rows and insert id; the rest as a server would send it."""
    body = head + status.to_bytes(2, "little") + b"\x00\x00" + lenenc(info)
    return body if state is None else body + lenenc(state)


# --------------------------------------------------------------------------- the parser


def test_capability_and_status_flags_are_the_protocol_values() -> None:
    assert CLIENT_SESSION_TRACK == CLIENT.SESSION_TRACK == 1 << 23
    assert SERVER_SESSION_STATE_CHANGED == 0x4000


def test_ok_packet_without_session_tracking_keeps_the_rest_as_info() -> None:
    payload = b"\x00\x03\x07\x02\x00\x01\x00Rows matched: 3  Changed: 3  Warnings: 1"
    ok = parse_ok(payload, session_track=False)
    assert ok == OkPacket(3, 7, 0x0002, 1, "Rows matched: 3  Changed: 3  Warnings: 1", ())
    assert not ok.state_changed


def test_ok_packet_may_end_right_after_the_warnings() -> None:
    assert parse_ok(b"\x00\x00\x00\x02\x00\x00\x00") == OkPacket(0, 0, 0x0002, 0, "", ())


def test_long_counters_are_length_encoded() -> None:
    head = b"\x00" + b"\xfc\x10\x27" + b"\xfe" + (2**40).to_bytes(8, "little")
    ok = parse_ok(ok_packet(0x0002, head=head))
    assert (ok.affected_rows, ok.insert_id) == (10000, 2**40)
    ok = parse_ok(ok_packet(0x0002, head=b"\x00\xfd\x40\x42\x0f\x00"))
    assert (ok.affected_rows, ok.insert_id) == (1_000_000, 0)


def test_ok_packet_with_info_and_every_kind_of_entry() -> None:
    state = (
        entry(VAR, lenenc(b"character_set_client") + lenenc(b"latin1"))
        + entry(SCHEMA, lenenc(b"other"))
        + entry(STATE, b"1")
        + entry(GTIDS, b"\x00" + lenenc(b"0-1-42"))
        + entry(TX_CHARS, lenenc(b"START TRANSACTION READ ONLY;"))
        + entry(TX_STATE, lenenc(b"T_______"))
    )
    ok = parse_ok(ok_packet(0x4002, b"some info", state))
    assert ok.state_changed and ok.info == "some info"
    assert ok.changes == (
        SessionChange(VAR, "character_set_client", "latin1"),
        SessionChange(SCHEMA, "", "other"),
        SessionChange(STATE, "", "1"),
        SessionChange(GTIDS, "", "0-1-42"),
        SessionChange(TX_CHARS, "", "START TRANSACTION READ ONLY;"),
        SessionChange(TX_STATE, "", "T_______"),
    )


def test_state_block_is_read_only_when_the_status_says_it_changed() -> None:
    # Without the flag, bytes after the info are not a state block: the packet is malformed.
    with pytest.raises(MalformedPacket, match=r"OK packet: end of packet at byte 8: 4 bytes left over"):
        parse_ok(ok_packet(0x0002, b"", entry(STATE, b"1")))


def test_unknown_entry_types_are_kept_and_skipped() -> None:
    changes = parse_session_state(entry(200, b"future") + entry(STATE, b"1"))
    assert changes == (SessionChange(200, "", "future"), SessionChange(STATE, "", "1"))


def test_packets_captured_from_mariadb_parse() -> None:
    # USE app, BEGIN and SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE on MariaDB 10.11, every tracker on.
    use = parse_ok(bytes.fromhex("00 00 00 02 40 00 00 00 09 01 04 03 61 70 70 02 01 31"))
    assert use.status == 0x4002 and use.changes == (SessionChange(SCHEMA, "", "app"), SessionChange(STATE, "", "1"))
    begin = bytes.fromhex(
        "00 00 00 03 40 00 00 00 20 05 09 08 54 5f 5f 5f 5f 5f 5f 5f 04 13 12"
        " 53 54 41 52 54 20 54 52 41 4e 53 41 43 54 49 4f 4e 3b"
    )
    assert parse_ok(begin).changes == (
        SessionChange(TX_STATE, "", "T_______"),
        SessionChange(TX_CHARS, "", "START TRANSACTION;"),
    )
    isolation = bytes.fromhex(
        "00 00 00 03 40 00 00 00 1f 00 1a 0c 74 78 5f 69 73 6f 6c 61 74 69 6f 6e"
        " 0c 53 45 52 49 41 4c 49 5a 41 42 4c 45 02 01 31"
    )
    assert parse_ok(isolation).changes == (
        SessionChange(VAR, "tx_isolation", "SERIALIZABLE"),
        SessionChange(STATE, "", "1"),
    )


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", r"OK packet: header at byte 0: needs 1 bytes, 0 left"),
        (b"\xff\x15\x04", r"OK packet: header at byte 1: 0xFF is neither 0x00 nor 0xFE"),
        (b"\x00\xfb", r"OK packet: affected rows at byte 2: NULL \(0xFB\) where a length or count must be"),
        (b"\x00\x00\xfc\x01", r"OK packet: insert id at byte 3: needs 2 bytes, 1 left"),
        (b"\x00\x00\x00\x02", r"OK packet: status flags at byte 3: needs 2 bytes, 1 left"),
        (b"\x00\x00\x00\x02\x00\x00\x00\x05ab", r"OK packet: info at byte 8: needs 5 bytes, 2 left"),
        (ok_packet(0x4000, b"", b"\x01\x09\x03app"), r"session state: data of entry 1 at byte 2: needs 9 bytes"),
        (ok_packet(0x4000, b"", entry(SCHEMA, b"\x03ap")), r"session state entry 1: schema at byte 3: needs 3"),
        (ok_packet(0x4000, b"", entry(SCHEMA, b"\x02apX")), r"session state entry 1: end of entry at byte 5: 1 bytes"),
    ],
)
def test_malformed_packets_name_the_field_and_the_byte(payload: bytes, message: str) -> None:
    with pytest.raises(MalformedPacket, match=message):
        parse_ok(payload)


def test_eof_packet() -> None:
    eof = parse_eof(b"\xfe\x01\x00\x22\x40")
    assert eof == EofPacket(warnings=1, status=0x4022) and eof.state_changed
    assert not parse_eof(b"\xfe\x00\x00\x02\x00").state_changed
    with pytest.raises(MalformedPacket, match=r"EOF packet: header at byte 1: 0xFE with 9 bytes is not an EOF"):
        parse_eof(b"\xfe" + bytes(8))
    with pytest.raises(MalformedPacket, match=r"EOF packet: status flags at byte 3"):
        parse_eof(b"\xfe\x00\x00\x02")


# --------------------------------------------------------------------------- what the server reports


class Recording(pymysql.connections.Connection):  # type: ignore[misc]
    """A pymysql connection that keeps the payload of every packet it reads."""

    def __init__(self, **kwargs: Any) -> None:
        self.packets: list[bytes] = []
        super().__init__(**kwargs)

    def _read_packet(self, packet_type: Any = pymysql.connections.MysqlPacket) -> Any:
        packet = super()._read_packet(packet_type)
        self.packets.append(bytes(packet.get_all_data()))
        return packet


# The trackers the pool can switch on for its own sessions (MariaDB: session_track_transaction_info
# CHARACTERISTICS includes STATE). Without them the server tracks only the schema and a few variables.
TRACK_EVERYTHING = (
    "SET SESSION session_track_state_change=ON",
    "SET SESSION session_track_schema=ON",
    "SET SESSION session_track_system_variables='*'",
    "SET SESSION session_track_transaction_info='CHARACTERISTICS'",
)


@dataclass(frozen=True)
class Reply:
    """What the server said about one statement: the flag, and the entries (an EOF has none). The server lists
    the variables of one statement in no fixed order, so the entries compare as a set."""

    changed: bool
    changes: tuple[tuple[str, str, str], ...] = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reply) and (self.changed, sorted(self.changes)) == (
            other.changed,
            sorted(other.changes),
        )

    def __hash__(self) -> int:
        return hash((self.changed, frozenset(self.changes)))


@pytest.fixture(scope="module")
def track_server(mysql_server: MySQLServer | ExternalServer) -> Iterator[MySQLServer | ExternalServer]:
    admin = pymysql.connect(**mysql_server.root_connect_kwargs(), autocommit=True)
    try:
        if "MariaDB" not in query(admin, "SELECT VERSION()")[0][0]:
            pytest.fail("the session-tracking table was measured on MariaDB; measure this server's first")
        query(admin, "CREATE DATABASE IF NOT EXISTS session_track_other")
        user = mysql_server.connect_kwargs["user"]
        for host in ("%", "localhost"):
            query(admin, f"GRANT ALL ON session_track_other.* TO '{user}'@'{host}'")
        query(admin, f"CREATE TABLE IF NOT EXISTS `{mysql_server.db}`.session_track_t (id INT)")
        yield mysql_server
        query(admin, "DROP DATABASE session_track_other")
        query(admin, f"DROP TABLE `{mysql_server.db}`.session_track_t")
    finally:
        admin.close()


def reply(server: MySQLServer | ExternalServer, setup: tuple[str, ...], statement: str) -> Reply:
    """Run ``setup``, then ``statement`` on a fresh session, and parse the server's reply to the statement."""
    kwargs = {("database" if key == "db" else key): value for key, value in server.connect_kwargs.items()}
    conn = Recording(**kwargs, client_flag=CLIENT.SESSION_TRACK, autocommit=True)
    try:
        for sql in setup:
            conn.query(sql)
        conn.packets = []
        if statement == "COM_INIT_DB":
            conn.select_db("session_track_other")
        elif statement == "COM_RESET_CONNECTION":
            conn._execute_command(COM_RESET_CONNECTION, b"")
            conn._read_ok_packet()
        else:
            conn.query(statement)
    finally:
        conn.close()
    first = conn.packets[0]
    if first[0] == 0x00:
        ok = parse_ok(first)
        kinds = tuple((SessionTrack(c.kind).name, c.name, c.value) for c in ok.changes)
        return Reply(ok.state_changed, kinds)
    # A result set: its last packet is the EOF after the rows, whose status is the statement's.
    return Reply(parse_eof(conn.packets[-1]).state_changed)


T = "session_track_t"
STATE_1 = ("STATE_CHANGE", "", "1")
# statement, setup, what MariaDB 10.11 reports with every tracker on (TRACK_EVERYTHING)
TRACKED: list[tuple[str, tuple[str, ...], Reply]] = [
    ("SELECT 1", (), Reply(False)),
    (f"INSERT INTO {T} VALUES (1)", (), Reply(False)),
    (f"INSERT INTO {T} VALUES (1)", ("SET autocommit=0",), Reply(True, (("TRANSACTION_STATE", "", "I___W___"),))),
    (f"SELECT * FROM {T}", ("SET autocommit=0",), Reply(True)),
    ("USE session_track_other", (), Reply(True, (("SCHEMA", "", "session_track_other"), STATE_1))),
    ("COM_INIT_DB", (), Reply(True, (("SCHEMA", "", "session_track_other"), STATE_1))),
    (  # the database it already had
        "USE session_track_other",
        ("USE session_track_other",),
        Reply(True, (("SCHEMA", "", "session_track_other"), STATE_1)),
    ),
    (
        "SET NAMES latin1",
        (),
        Reply(
            True,
            (
                ("SYSTEM_VARIABLES", "character_set_client", "latin1"),
                ("SYSTEM_VARIABLES", "character_set_connection", "latin1"),
                ("SYSTEM_VARIABLES", "character_set_results", "latin1"),
                STATE_1,
            ),
        ),
    ),
    ("SET sql_mode='ANSI_QUOTES'", (), Reply(True, (("SYSTEM_VARIABLES", "sql_mode", "ANSI_QUOTES"), STATE_1))),
    ("SET time_zone='+02:00'", (), Reply(True, (("SYSTEM_VARIABLES", "time_zone", "+02:00"), STATE_1))),
    ("SET autocommit=0", (), Reply(True, (("SYSTEM_VARIABLES", "autocommit", "OFF"), STATE_1))),
    ("SET @uservar=1", (), Reply(True, (STATE_1,))),
    ("SELECT @uservar:=1", (), Reply(False)),
    ("SELECT 1 INTO @uservar", (), Reply(False)),
    (
        "SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        (),
        Reply(True, (("SYSTEM_VARIABLES", "tx_isolation", "SERIALIZABLE"), STATE_1)),
    ),
    (
        "SET TRANSACTION READ ONLY",
        (),
        Reply(True, (("TRANSACTION_CHARACTERISTICS", "", "SET TRANSACTION READ ONLY;"),)),
    ),
    ("CREATE TEMPORARY TABLE session_track_tmp (id INT)", (), Reply(True, (STATE_1,))),
    ("SELECT GET_LOCK('session_track', 0)", (), Reply(False)),
    ("DO GET_LOCK('session_track', 0)", (), Reply(False)),
    ("SET @uservar = GET_LOCK('session_track', 0)", (), Reply(True, (STATE_1,))),
    (f"LOCK TABLES {T} WRITE", (), Reply(True, (("TRANSACTION_STATE", "", "_______L"),))),
    ("UNLOCK TABLES", (f"LOCK TABLES {T} WRITE",), Reply(True, (("TRANSACTION_STATE", "", "________"),))),
    (f"HANDLER {T} OPEN", (), Reply(False)),
    ("PREPARE session_track_s FROM 'SELECT 1'", (), Reply(True, (STATE_1,))),
    (
        "BEGIN",
        (),
        Reply(True, (("TRANSACTION_STATE", "", "T_______"), ("TRANSACTION_CHARACTERISTICS", "", "START TRANSACTION;"))),
    ),
    (
        "COMMIT",
        ("BEGIN",),
        Reply(True, (("TRANSACTION_STATE", "", "________"), ("TRANSACTION_CHARACTERISTICS", "", ""))),
    ),
    ("ROLLBACK", (), Reply(False)),
    ("COM_RESET_CONNECTION", ("SET @uservar=1",), Reply(False)),
]

# The same statements with the server's default trackers (schema, and autocommit, the character sets and
# time_zone among the variables): what a pool that changes no tracking variable can see.
DEFAULTS: list[tuple[str, tuple[str, ...], Reply]] = [
    ("SELECT 1", (), Reply(False)),
    (f"INSERT INTO {T} VALUES (1)", ("SET autocommit=0",), Reply(False)),
    (f"SELECT * FROM {T}", ("SET autocommit=0",), Reply(False)),
    ("USE session_track_other", (), Reply(True, (("SCHEMA", "", "session_track_other"),))),
    ("COM_INIT_DB", (), Reply(True, (("SCHEMA", "", "session_track_other"),))),
    (
        "SET NAMES latin1",
        (),
        Reply(
            True,
            (
                ("SYSTEM_VARIABLES", "character_set_client", "latin1"),
                ("SYSTEM_VARIABLES", "character_set_connection", "latin1"),
                ("SYSTEM_VARIABLES", "character_set_results", "latin1"),
            ),
        ),
    ),
    ("SET sql_mode='ANSI_QUOTES'", (), Reply(False)),
    ("SET time_zone='+02:00'", (), Reply(True, (("SYSTEM_VARIABLES", "time_zone", "+02:00"),))),
    ("SET autocommit=0", (), Reply(True, (("SYSTEM_VARIABLES", "autocommit", "OFF"),))),
    ("SET @uservar=1", (), Reply(False)),
    ("SELECT @uservar:=1", (), Reply(False)),
    ("SELECT 1 INTO @uservar", (), Reply(False)),
    ("SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE", (), Reply(False)),
    ("SET TRANSACTION READ ONLY", (), Reply(False)),
    ("CREATE TEMPORARY TABLE session_track_tmp (id INT)", (), Reply(False)),
    ("SELECT GET_LOCK('session_track', 0)", (), Reply(False)),
    ("DO GET_LOCK('session_track', 0)", (), Reply(False)),
    ("SET @uservar = GET_LOCK('session_track', 0)", (), Reply(False)),
    (f"LOCK TABLES {T} WRITE", (), Reply(False)),
    ("UNLOCK TABLES", (f"LOCK TABLES {T} WRITE",), Reply(False)),
    (f"HANDLER {T} OPEN", (), Reply(False)),
    ("PREPARE session_track_s FROM 'SELECT 1'", (), Reply(False)),
    ("BEGIN", (), Reply(False)),
    ("COMMIT", ("BEGIN",), Reply(False)),
    ("ROLLBACK", (), Reply(False)),
    ("COM_RESET_CONNECTION", ("SET @uservar=1",), Reply(False)),
]


def _id(case: tuple[str, tuple[str, ...], Reply]) -> str:
    statement, setup, _ = case
    return f"{statement} after {'; '.join(setup)}" if setup else statement


@pytest.mark.parametrize("case", TRACKED, ids=[_id(c) for c in TRACKED])
def test_what_mariadb_reports_with_every_tracker_on(
    case: tuple[str, tuple[str, ...], Reply], track_server: MySQLServer | ExternalServer
) -> None:
    statement, setup, expected = case
    assert reply(track_server, TRACK_EVERYTHING + setup, statement) == expected


@pytest.mark.parametrize("case", DEFAULTS, ids=[_id(c) for c in DEFAULTS])
def test_what_mariadb_reports_with_its_default_trackers(
    case: tuple[str, tuple[str, ...], Reply], track_server: MySQLServer | ExternalServer
) -> None:
    statement, setup, expected = case
    assert reply(track_server, setup, statement) == expected


def test_a_result_set_reports_the_flag_on_its_eof_packets(track_server: MySQLServer | ExternalServer) -> None:
    # With autocommit off, a SELECT from a table starts a transaction: the server says so on the EOF packets,
    # which carry no entries saying what changed (a result set has no OK packet without CLIENT_DEPRECATE_EOF).
    kwargs = {("database" if key == "db" else key): value for key, value in track_server.connect_kwargs.items()}
    conn = Recording(**kwargs, client_flag=CLIENT.SESSION_TRACK, autocommit=True)
    try:
        for sql in (*TRACK_EVERYTHING, "SET autocommit=0"):
            conn.query(sql)
        conn.packets = []
        conn.query(f"SELECT * FROM {T}")
        packets = list(conn.packets)
    finally:
        conn.close()
    eofs = [parse_eof(p) for p in packets if p[0] == 0xFE and len(p) < 9]
    # One after the column definitions, one after the rows: both carry the flag.
    assert [eof.state_changed for eof in eofs] == [True, True]


# --------------------------------------------------------------------------- what the pool's connection concludes


@pytest.mark.parametrize(
    ("sql", "unreported"),
    [
        ("SELECT GET_LOCK('x', 0)", True),
        ("do get_lock('x', 0)", True),
        ("HANDLER t OPEN", True),
        ("LOCK TABLES t WRITE", True),
        ("lock table t read", True),
        ("FLUSH TABLES WITH READ LOCK", True),
        ("SELECT @a := 1", True),
        ("SELECT 1 INTO @x", True),
        (b"SELECT 1 INTO @x", True),
        ("SELECT id FROM t WHERE clock = 1 AND blocked = 0", False),
        ("INSERT INTO t (email) VALUES ('a@example.com')", False),
        ("SET TRANSACTION READ ONLY", True),
        ("set /* next */ transaction isolation level serializable", True),
        ("SET @@tx_read_only = 1", True),
        ("SET @@transaction_isolation='READ-COMMITTED'", True),
        ("UPDATE payments SET transaction_id = 7", False),  # a column, not the next transaction
        ("UPDATE payments SET transaction = 'x'", False),
        ("SELECT @@tx_isolation", False),  # a read of the variable
        ("SELECT 1", False),
    ],
)
def test_the_statement_check_finds_what_the_server_does_not_report(sql: str | bytes, unreported: bool) -> None:
    assert changes_unreported(sql) is unreported


# Each statement on a settled connection of the pool, and whether the driver then says the session changed: the
# server's flag with the pool's trackers on, or the statement check for what the server does not report.
POOL_SEES: list[tuple[str, bool]] = [
    ("SELECT 1", False),
    (f"INSERT INTO {T} VALUES (1)", False),
    (f"SELECT * FROM {T}", False),
    ("BEGIN", False),
    ("COMMIT", False),
    ("ROLLBACK", False),
    ("USE session_track_other", True),
    ("SET NAMES latin1", True),
    ("SET sql_mode='ANSI_QUOTES'", True),
    ("SET time_zone='+02:00'", True),
    ("SET @uservar=1", True),
    ("SELECT @uservar:=1", True),
    ("SELECT 1 INTO @uservar", True),
    ("SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE", True),
    ("CREATE TEMPORARY TABLE session_track_tmp (id INT)", True),
    ("SELECT GET_LOCK('session_track', 0)", True),
    (f"LOCK TABLES {T} WRITE", True),
    (f"HANDLER {T} OPEN", True),
    ("PREPARE session_track_s FROM 'SELECT 1'", True),
    ("SELECT 1; SET @uservar=2; SELECT 2", True),  # an earlier result of several: its flag is not the last one
]


@pytest.mark.parametrize(("statement", "changed"), POOL_SEES, ids=[s for s, _ in POOL_SEES])
async def test_the_pools_connection_sees_exactly_the_changes(
    statement: str, changed: bool, driver: str, track_server: MySQLServer | ExternalServer
) -> None:
    seam = get_driver(driver)
    async with mp.create_pool(dsn=track_server.dsn, minsize=1, maxsize=1, autocommit=True) as pool:
        async with pool.acquire() as conn:
            assert not seam.session_changed(conn)  # settled once opened
            async with conn.cursor() as cur:
                await cur.execute(statement)
                while await cur.nextset():
                    pass
            assert seam.session_changed(conn) is changed
        async with pool.acquire() as conn:
            assert not seam.session_changed(conn)  # settled again by the full reset, or never changed
