"""The GTID token: what it may be, the statements that wait for it, on MariaDB (real replicas) and MySQL (SQL only).

No MySQL server can run here, so the MySQL path is checked as the SQL it sends, through a stand-in connection
that records each statement and answers as MySQL's manual says the server answers.
"""

from __future__ import annotations

from typing import Any

import pytest

from fastapi_mysqlpool._gtid import gtid_wait_statement, session_gtid, wait_for_gtid
from fastapi_mysqlpool.testing import ReplicaSet
from tests._clusters import app_conn, scalar

UUID_A = "3E11FA47-71CA-11E1-9E33-C80AA9429562"
UUID_B = "b9c2fd3a-0f27-11ef-8d4b-0242ac120002"


class RecordingMySQLConnection:
    """Stands in for a MySQL server's connection: records each statement and answers with ``answers``."""

    is_mariadb = False

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[str, Any]] = []

    def cursor(self) -> RecordingMySQLConnection:
        return self

    async def __aenter__(self) -> RecordingMySQLConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    async def execute(self, sql: str, args: Any = None) -> None:
        self.sent.append((sql, args))

    async def fetchone(self) -> tuple[Any, ...] | None:
        return (self.answers.pop(0),)


@pytest.mark.parametrize(
    "token",
    ["0-1-42", "0-1-42,1-2-7", f"{UUID_A}:1-5", f"{UUID_A}:1-5:7:9-12,{UUID_B}:3", f"{UUID_A}:tag_1:1-5"],
)
def test_well_formed_tokens_of_either_server_are_accepted(token: str) -> None:
    mariadb = token[0].isdigit() and ":" not in token
    assert gtid_wait_statement(token, 1.0, mariadb) is not None
    assert gtid_wait_statement(token, 1.0, not mariadb) is None  # the other server's kind: no statement at all


@pytest.mark.parametrize(
    "token",
    ["", "a-b", "0-1", "0-1-42,", "0-1-42'); DO SLEEP(9) -- ", f"{UUID_A}", f"{UUID_A}:", ",".join(["0-1-42"] * 2000)],
)
def test_malformed_tokens_build_no_statement(token: str) -> None:
    assert gtid_wait_statement(token, 1.0, True) is None
    assert gtid_wait_statement(token, 1.0, False) is None


def test_the_wait_statements_follow_each_servers_manual() -> None:
    assert gtid_wait_statement("0-1-42", 0.5, True) == ("SELECT MASTER_GTID_WAIT(%s, %s)", ("0-1-42", 0.5))
    token = f"{UUID_A}:1-5"
    # MySQL 5.7 takes whole seconds, and 0 would mean no timeout: a fraction is rounded up, to at least 1.
    assert gtid_wait_statement(token, 0.5, False) == ("SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)", (token, 1))
    assert gtid_wait_statement(token, 2.1, False) == ("SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)", (token, 3))


async def test_on_mysql_the_token_is_gtid_executed_without_its_newlines() -> None:
    conn = RecordingMySQLConnection(f"{UUID_A}:1-5,\n{UUID_B}:1-3")
    assert await session_gtid(conn) == f"{UUID_A}:1-5,{UUID_B}:1-3"
    assert conn.sent == [("SELECT @@global.gtid_executed", None)]
    assert await session_gtid(RecordingMySQLConnection("")) is None  # nothing executed with GTIDs on


async def test_on_mysql_the_wait_reads_0_as_applied_and_1_as_the_timeout() -> None:
    token = f"{UUID_A}:1-5"
    conn = RecordingMySQLConnection(0, 1)
    assert await wait_for_gtid(conn, token, 0.2) is True
    assert await wait_for_gtid(conn, token, 0.2) is False
    assert conn.sent == [("SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)", (token, 1))] * 2
    mariadb_token = RecordingMySQLConnection()
    assert await wait_for_gtid(mariadb_token, "0-1-42", 1.0) is False and mariadb_token.sent == []


async def test_on_mariadb_the_token_of_a_write_is_waited_for_on_a_replica(driver: str, replica_set: ReplicaSet) -> None:
    rs = replica_set
    rs.query(rs.primary_index, f"CREATE TABLE IF NOT EXISTS {rs.db}.gtid_rows (id INT AUTO_INCREMENT PRIMARY KEY)")
    async with app_conn(rs.primary) as conn:
        await scalar(conn, "INSERT INTO gtid_rows VALUES (NULL)")
        conn.is_mariadb = True  # the driver's own connection; the pool's has this property
        token = await session_gtid(conn)
    assert token is not None and gtid_wait_statement(token, 1.0, True) is not None
    async with app_conn(rs.replicas[0]) as replica:
        replica.is_mariadb = True
        assert await wait_for_gtid(replica, token, 5.0) is True
        domain, server, sequence = token.split("-")
        # A transaction the primary has not written yet: the wait ends at its timeout, with False.
        assert await wait_for_gtid(replica, f"{domain}-{server}-{int(sequence) + 1000}", 0.2) is False
        # A MySQL set sent to MariaDB: no statement, no server error, not reached.
        assert await wait_for_gtid(replica, f"{UUID_A}:1-5", 0.2) is False
    rs.query(rs.primary_index, f"DROP TABLE {rs.db}.gtid_rows")
