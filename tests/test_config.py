"""Options and DSNs: parsed exactly, validated at once with the culprit named, the password never shown."""

from __future__ import annotations

import dataclasses
import math
import ssl
from typing import Any
from urllib.parse import quote

import certifi
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastapi_mysqlpool as mp

PASSWORD = "s3cr3t-pw"


def with_query(dsn: str, query: str) -> str:
    return f"{dsn}{'&' if '?' in dsn else '?'}{query}"


# --------------------------------------------------------------------- parse_dsn


def test_dsn_parts_become_connect_arguments() -> None:
    parsed = mp.parse_dsn(f"mysql://app:{PASSWORD}@db.example:3307/shop")
    assert parsed.connect_kwargs == {
        "host": "db.example",
        "port": 3307,
        "user": "app",
        "password": PASSWORD,
        "db": "shop",
    }
    assert parsed.pool_options == {}


def test_dsn_port_defaults_to_3306_and_missing_parts_are_left_out() -> None:
    assert mp.parse_dsn("mysql://db.example").connect_kwargs == {"host": "db.example", "port": 3306}
    assert mp.parse_dsn("mysql://app@db.example/").connect_kwargs == {"host": "db.example", "port": 3306, "user": "app"}


def test_dsn_empty_password_is_kept_as_empty() -> None:
    assert mp.parse_dsn("mysql://app:@h/db").connect_kwargs["password"] == ""


@pytest.mark.parametrize("scheme", ["mysql", "mysql+aiomysql", "mariadb", "MySQL"])
def test_dsn_accepts_every_documented_scheme(scheme: str) -> None:
    assert mp.parse_dsn(f"{scheme}://app:{PASSWORD}@h/db").connect_kwargs["host"] == "h"


def test_dsn_ipv6_host_in_brackets() -> None:
    kwargs = mp.parse_dsn("mysql://app:pw@[::1]:3307/db").connect_kwargs
    assert (kwargs["host"], kwargs["port"]) == ("::1", 3307)


@given(user=st.text(min_size=1, max_size=20), password=st.text(max_size=30), db=st.text(max_size=20))
def test_percent_encoded_user_password_and_db_round_trip(user: str, password: str, db: str) -> None:
    db = db.replace("/", "")
    dsn = f"mysql://{quote(user, safe='')}:{quote(password, safe='')}@h:3306/{quote(db, safe='')}"
    expected = {"host": "h", "port": 3306, "user": user, "password": password}
    if db:
        expected["db"] = db
    assert mp.parse_dsn(dsn).connect_kwargs == expected


def test_dsn_query_splits_into_connection_and_pool_options() -> None:
    parsed = mp.parse_dsn(
        "mysql://app:pw@h/db?charset=utf8mb4&autocommit=true&init_command=SET%20NAMES%20utf8mb4"
        "&maxsize=20&acquire_timeout=2.5&pre_ping=off&name=orders"
    )
    assert parsed.connect_kwargs == {
        "host": "h",
        "port": 3306,
        "user": "app",
        "password": "pw",
        "db": "db",
        "charset": "utf8mb4",
        "autocommit": True,
        "init_command": "SET NAMES utf8mb4",
    }
    assert parsed.pool_options == {"maxsize": 20, "acquire_timeout": 2.5, "pre_ping": False, "name": "orders"}


def test_unix_socket_dsn_needs_no_host() -> None:
    kwargs = mp.parse_dsn("mysql://app:pw@/db?unix_socket=/run/mysqld/mysqld.sock").connect_kwargs
    assert "host" not in kwargs
    assert kwargs["unix_socket"] == "/run/mysqld/mysqld.sock"


def test_parsed_dsn_repr_hides_the_password() -> None:
    parsed = mp.parse_dsn(f"mysql://app:{PASSWORD}@h/db?maxsize=3")
    assert PASSWORD not in repr(parsed)
    assert PASSWORD not in str(parsed)


@pytest.mark.parametrize(
    ("query", "verify_mode", "check_hostname"),
    [
        # MySQL's REQUIRED: encrypted, certificate unchecked.
        ("ssl_mode=required", ssl.CERT_NONE, False),
        ("ssl_mode=verify-ca", ssl.CERT_REQUIRED, False),
        ("ssl_mode=VERIFY_IDENTITY", ssl.CERT_REQUIRED, True),
        ("ssl=true", ssl.CERT_REQUIRED, True),
        (f"ssl_ca={certifi.where()}", ssl.CERT_REQUIRED, False),
    ],
)
def test_tls_query_options_build_the_matching_ssl_context(
    query: str, verify_mode: ssl.VerifyMode, check_hostname: bool
) -> None:
    context = mp.parse_dsn(f"mysql://app:pw@h/db?{query}").connect_kwargs["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == verify_mode
    assert context.check_hostname is check_hostname


@pytest.mark.parametrize("query", ["ssl=false", "ssl_mode=disabled", "ssl=false&ssl_mode=disabled"])
def test_tls_can_be_switched_off(query: str) -> None:
    assert "ssl" not in mp.parse_dsn(f"mysql://app:pw@h/db?{query}").connect_kwargs


def test_tls_contradiction_ssl_true_with_mode_disabled_is_an_error() -> None:
    with pytest.raises(ValueError, match="contradicts"):
        mp.parse_dsn("mysql://app:pw@h/db?ssl=true&ssl_mode=disabled")


@pytest.mark.parametrize(
    ("dsn", "named"),
    [
        (f"postgres://app:{PASSWORD}@h/db", "scheme"),
        (f"mysql://app:{PASSWORD}@/db", "no host"),
        (f"mysql://app:{PASSWORD}@h/db?maxsise=3", "'maxsise'"),
        (f"mysql://app:{PASSWORD}@h/db?maxsize=many", "'maxsize'"),
        (f"mysql://app:{PASSWORD}@h/db?pre_ping=maybe", "'pre_ping'"),
        (f"mysql://app:{PASSWORD}@h/db?autocommit=2", "'autocommit'"),
        (f"mysql://app:{PASSWORD}@h/db?maxsize", "malformed query"),
        (f"mysql://app:{PASSWORD}@h:99999/db", "[Pp]ort"),
        (f"mysql://app:{PASSWORD}@h:port/db", "[Pp]ort"),
        (f"mysql://app:{PASSWORD}@h/db#top", "%23"),
        (f"mysql://app:{PASSWORD}@h/a/b", "'/'"),
        (f"mysql://app:{PASSWORD}@h/db?ssl_mode=sometimes", "'ssl_mode'"),
        (f"mysql://app:{PASSWORD}@h/db?ssl_key=/k.pem", "ssl_key given without ssl_cert"),
        (f"mysql://app:{PASSWORD}@h/db?ssl_ca=/nonexistent/ca.pem", "TLS file"),
        (f"mysql://app:{PASSWORD}@h/db?ssl=false&ssl_mode=required", "contradicts"),
    ],
)
def test_bad_dsn_raises_value_error_naming_the_problem_without_the_password(dsn: str, named: str) -> None:
    with pytest.raises(ValueError, match=named) as info:
        mp.parse_dsn(dsn)
    assert PASSWORD not in str(info.value)


@pytest.mark.parametrize(
    "dsn",
    [
        # The password's unencoded '/', '?' or '#' ends the authority early: urlsplit then reads it as the port.
        f"mysql://app:{PASSWORD}/x@h/db",
        f"mysql://app:{PASSWORD}#x@h/db",
        f"mysql://app:{PASSWORD}?x@h/db",
        # An "@" in the query string as well: the password may end at either "@".
        f"mysql:://:{PASSWORD}@127.0.0.1/?@",
        # A forgotten scheme: mask_dsn finds no '://' and masks nothing.
        f"app:{PASSWORD}@h/db",
    ],
)
def test_malformed_dsn_error_never_shows_the_password(dsn: str) -> None:
    with pytest.raises(ValueError) as info:
        mp.parse_dsn(dsn)
    assert PASSWORD not in str(info.value)


# The characters of MySQLServer's own password, which a user copying it into a DSN by hand does not encode.
RAW_PASSWORD = "pw-5f3a9c#@:/"


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        (
            f"mysql://app:{RAW_PASSWORD}@127.0.0.1:39453/app",
            "invalid DSN 'mysql://app:***@127.0.0.1:39453/app': malformed host or port "
            "(percent-encode '@', ':', '/', '?' and '#' in the user and password)",
        ),
        (
            "mysql://app:pw/5f3a9c@127.0.0.1:39453/app",
            "invalid DSN 'mysql://app:***@127.0.0.1:39453/app': malformed host or port "
            "(percent-encode '@', ':', '/', '?' and '#' in the user and password)",
        ),
        (
            # A '/' after digits: the start of the password reads as a port, the rest as a path.
            "mysql://app:1234/5f3a9c@127.0.0.1:39453/app",
            "invalid DSN 'mysql://app:***@127.0.0.1:39453/app': unencoded '/' in the user or password "
            "(percent-encode it as %2F)",
        ),
        (
            f"mysql://app:{RAW_PASSWORD}@127.0.0.1:39453/app?maxsise=3",
            "invalid DSN 'mysql://app:***@127.0.0.1:39453/app?maxsise=3': malformed host or port "
            "(percent-encode '@', ':', '/', '?' and '#' in the user and password)",
        ),
        (
            f"mysql://app:{quote(RAW_PASSWORD, safe='')}@127.0.0.1:39453/app?maxsise=3",
            "invalid DSN 'mysql://app:***@127.0.0.1:39453/app?maxsise=3': unknown query parameter 'maxsise' "
            "(did you mean 'maxsize'?)",
        ),
    ],
)
def test_a_raw_slash_in_the_password_leaves_the_error_and_its_hint_readable(dsn: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        mp.parse_dsn(dsn)
    assert str(info.value) == message
    with pytest.raises(ValueError) as info:
        mp.mysql_lifespan(dsn)
    assert str(info.value) == message


def test_misspelt_options_name_the_closest_one() -> None:
    with pytest.raises(ValueError, match=r"unknown pool option 'maxsise' in DSN \(did you mean 'maxsize'\?\)"):
        mp.PoolOptions.from_strings({"maxsise": "3"}, source="DSN")
    with pytest.raises(ValueError, match=r"unknown option 'acquire_timout'.*\(did you mean 'acquire_timeout'\?\)"):
        mp.create_pool(dsn="mysql://app:pw@h/db", acquire_timout=2)
    with pytest.raises(ValueError, match=r"unknown query parameter 'ssl_mod' \(did you mean 'ssl_mode'\?\)"):
        mp.parse_dsn("mysql://app:pw@h/db?ssl_mod=required")
    # Nothing close: no guess.
    with pytest.raises(ValueError) as info:
        mp.parse_dsn("mysql://app:pw@h/db?zzz=1")
    assert "did you mean" not in str(info.value)


def test_dsn_must_be_text() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        mp.parse_dsn(b"mysql://h/db")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- mask_dsn


@pytest.mark.parametrize(
    ("dsn", "masked"),
    [
        (f"mysql://app:{PASSWORD}@h:3306/db", "mysql://app:***@h:3306/db"),
        (f"mysql://app:{quote('p@ss:/#', safe='')}@h/db?maxsize=3", "mysql://app:***@h/db?maxsize=3"),
        # Unencoded '@' and ':' in the password: the mask runs to the last '@', so no piece shows.
        ("mysql://app:p@ss:w@h/db", "mysql://app:***@h/db"),
        # An '@' after the host only widens the mask.
        (f"mysql://app:{PASSWORD}@h/db?init_command=SET @a=1", "mysql://app:***@a=1"),
        ("mysql://app@h/db", "mysql://app@h/db"),
        ("mysql://h:3306/db", "mysql://h:3306/db"),
    ],
)
def test_mask_dsn_replaces_the_password_with_stars(dsn: str, masked: str) -> None:
    assert mp.mask_dsn(dsn) == masked


@given(st.text(min_size=1, max_size=30))
def test_mask_dsn_hides_any_encoded_password(password: str) -> None:
    assert mp.mask_dsn(f"mysql://app:{quote(password, safe='')}@h:3306/db") == "mysql://app:***@h:3306/db"


# ------------------------------------------------------------------- PoolOptions


def test_pool_option_defaults_match_aiomysql() -> None:
    options = mp.PoolOptions()
    assert (options.minsize, options.maxsize, options.pool_recycle) == (1, 10, -1)


def test_every_pool_option_documents_itself() -> None:
    for f in dataclasses.fields(mp.PoolOptions):
        assert f.metadata["doc"], f.name
        assert f.metadata["valid"], f.name


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("minsize", -1),
        ("minsize", True),
        ("maxsize", 0),
        ("maxsize", 2.5),
        ("maxsize", "10"),
        ("acquire_timeout", 0),
        ("acquire_timeout", -1.0),
        ("acquire_timeout", math.nan),
        ("acquire_timeout", math.inf),
        ("max_waiting", -1),
        ("connect_timeout", 0.0),
        ("open_timeout", None),
        ("wait_open", 1),
        ("pre_ping", "yes"),
        ("pre_ping_window", -0.1),
        ("ping_timeout", 0),
        ("max_lifetime", -1),
        ("pool_recycle", 0),
        ("pool_recycle", -2),
        ("max_idle", math.inf),
        ("reset_timeout", 0),
        ("close_timeout", -1),
        ("backoff_max", 0),
        ("leak_timeout", -1),
        ("slow_acquire", -1),
        ("name", 3),
    ],
)
def test_invalid_pool_option_raises_value_error_naming_it(option: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"'{option}'"):
        mp.PoolOptions(**{option: value})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"minsize": 0},
        {"minsize": 10, "maxsize": 10},
        {"max_waiting": 0},
        {"max_lifetime": 0},
        {"max_idle": 0},
        {"pool_recycle": 0.5},
        {"acquire_timeout": 1},
        {"pre_ping_window": 0},
        {"close_timeout": 0},
        {"name": "orders"},
    ],
)
def test_boundary_pool_option_values_are_accepted(kwargs: dict[str, Any]) -> None:
    options = mp.PoolOptions(**kwargs)
    for option, value in kwargs.items():
        assert getattr(options, option) == value


def test_minsize_above_maxsize_names_both() -> None:
    with pytest.raises(ValueError, match=r"minsize \(5\).*maxsize \(2\)"):
        mp.PoolOptions(minsize=5, maxsize=2)


@pytest.mark.parametrize(
    ("kwargs", "lifetime"),
    [
        ({}, 1800.0),
        ({"max_lifetime": 0}, 0.0),
        ({"pool_recycle": 60}, 60.0),
        ({"pool_recycle": 60, "max_lifetime": 0}, 60.0),
    ],
)
def test_pool_recycle_wins_over_max_lifetime(kwargs: dict[str, Any], lifetime: float) -> None:
    assert mp.PoolOptions(**kwargs).lifetime == lifetime


@pytest.mark.parametrize(
    ("raw", "value"),
    [(t, True) for t in ("1", "true", "YES", " on ")] + [(f, False) for f in ("0", "False", "no", "off")],
)
def test_textual_booleans(raw: str, value: bool) -> None:
    assert mp.PoolOptions.from_strings({"pre_ping": raw}, source="the environment") == {"pre_ping": value}


def test_textual_option_errors_name_the_option_and_the_source() -> None:
    with pytest.raises(ValueError, match="'maxsise' in the environment"):
        mp.PoolOptions.from_strings({"maxsise": "3"}, source="the environment")
    with pytest.raises(ValueError, match="'acquire_timeout' in the environment"):
        mp.PoolOptions.from_strings({"acquire_timeout": "soon"}, source="the environment")


# ------------------------------------------------------------------- create_pool


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"maxsize": 0}, "'maxsize'"),
        ({"minsize": -1}, "'minsize'"),
        ({"minsize": 5, "maxsize": 2}, "minsize"),
        ({"pool_recycle": 0}, "'pool_recycle'"),
        ({"acquire_timeout": -1}, "'acquire_timeout'"),
        ({"max_waiting": -1}, "'max_waiting'"),
        ({"dsn": f"mysql://app:{PASSWORD}@h/db?maxsize=0"}, "'maxsize'"),
        ({"dsn": f"mysql://app:{PASSWORD}@h/db?maxsize=x"}, "'maxsize'"),
        ({"dsn": f"mysql://app:{PASSWORD}@h/db", "maxsize": -1}, "'maxsize'"),
        ({"dsn": f"redis://app:{PASSWORD}@h/db"}, "scheme"),
    ],
)
def test_create_pool_rejects_bad_arguments_in_the_call_itself(kwargs: dict[str, Any], named: str) -> None:
    # A plain function, never awaited, no event loop: the error comes from the call, before any connect.
    with pytest.raises(ValueError, match=named) as info:
        mp.create_pool(**kwargs)
    assert PASSWORD not in str(info.value)


def test_create_pool_rejects_a_misspelt_option_in_the_call_itself() -> None:
    with pytest.raises(ValueError, match="'maxsise'"):
        mp.create_pool(host="h", maxsise=3)


async def test_create_pool_takes_aiomysql_positional_arguments(mysql_dsn: str) -> None:
    async with mp.create_pool(0, 4, dsn=mysql_dsn) as pool:
        assert (pool.minsize, pool.maxsize) == (0, 4)


async def test_create_pool_explicit_arguments_win_over_the_dsn(mysql_dsn: str) -> None:
    dsn = with_query(mysql_dsn, "minsize=0&maxsize=3&autocommit=true")
    async with mp.create_pool(dsn=dsn) as pool, pool.acquire() as conn, conn.cursor() as cur:
        assert pool.maxsize == 3
        await cur.execute("SELECT @@autocommit")
        assert await cur.fetchone() == (1,)
    async with (
        mp.create_pool(dsn=dsn, maxsize=5, autocommit=False) as pool,
        pool.acquire() as conn,
        conn.cursor() as cur,
    ):
        assert pool.maxsize == 5
        await cur.execute("SELECT @@autocommit")
        assert await cur.fetchone() == (0,)


def test_a_colon_in_an_unencoded_user_never_reveals_the_password() -> None:
    # Found by fuzzing: the user itself held a ':' so the password could start after either one.
    with pytest.raises(ValueError) as info:
        mp.parse_dsn(f"mysql:://:\x1f:{PASSWORD}@127.0.0.1/")
    assert PASSWORD not in str(info.value)
