"""Reliability, bad input: fuzzed DSNs and options, wrong credentials, an unknown database, and the password.

Scenario 11 of docs/reliability.md. Malformed input gets the documented `ValueError`, never another exception or a
hang; a refused login fails at once, without retries; the password appears in no output.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import time
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastapi_mysqlpool as mp
from fastapi_mysqlpool._config import DSN_SCHEMES
from fastapi_mysqlpool.testing import ExternalServer, MySQLServer
from tests import _drivers
from tests._proxy import FaultProxy
from tests._reliability import FAST, query_once, record_figure

# A marker no generated DSN contains by chance, so "the password is not in the message" is a meaningful check.
SECRET = "Zq9xSecret"
# Generous for a parse that takes microseconds: it only turns a hang into a failure.
FUZZ = settings(max_examples=150, deadline=2000)

_OPTION_NAMES = [f.name for f in dataclasses.fields(mp.PoolOptions)]
_QUERY_KEYS = [*_OPTION_NAMES, "charset", "autocommit", "ssl", "ssl_mode", "ssl_ca", "ssl_cert", "ssl_key", "bogus"]
_ODD_VALUES = ["", "0", "1", "-1", "true", "no", "nan", "inf", "-inf", "1e309", "0x10", "10.5", "disabled", "%00"]


def _assert_hidden(password: str, *outputs: object) -> None:
    for output in outputs:
        text = str(output)
        assert password not in text, text
        assert quote(password, safe="") not in text, text


@st.composite
def _dsns(draw: st.DrawFn) -> tuple[str, str]:
    """A DSN built from fuzzed parts, and its password."""
    password = SECRET + draw(st.text(max_size=12))
    user = draw(st.text(max_size=8))
    encode = draw(st.booleans())
    scheme = draw(st.sampled_from([*DSN_SCHEMES, "MySQL", "postgres", "", "mysql:"]))
    host = draw(st.sampled_from(["127.0.0.1", "db.example", "[::1]", "", "[bad", "h st"]) | st.text(max_size=8))
    port = draw(st.none() | st.integers(-5, 70_000).map(str) | st.text(max_size=5))
    db = draw(st.text(max_size=8))
    pairs = draw(st.lists(st.tuples(st.sampled_from(_QUERY_KEYS), st.sampled_from(_ODD_VALUES) | st.text(max_size=6))))
    userinfo = f"{quote(user, safe='')}:{quote(password, safe='')}" if encode else f"{user}:{password}"
    netloc = f"{userinfo}@{host}" + ("" if port is None else f":{port}")
    query = "&".join(f"{k}={v}" for k, v in pairs)
    return f"{scheme}://{netloc}/{db}" + (f"?{query}" if query else ""), password


@FUZZ
@given(st.text(max_size=200))
def test_parse_dsn_of_any_text_returns_or_raises_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        mp.parse_dsn(text)


@FUZZ
@given(_dsns())
def test_parse_dsn_of_fuzzed_parts_raises_only_value_error_and_never_shows_the_password(
    case: tuple[str, str],
) -> None:
    dsn, password = case
    _assert_hidden(password, mp.mask_dsn(dsn))
    try:
        parsed = mp.parse_dsn(dsn)
    except ValueError as exc:
        _assert_hidden(password, exc, repr(exc))
        return
    _assert_hidden(password, parsed, repr(parsed))


_option_values = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=5)
)


@FUZZ
@given(st.dictionaries(st.sampled_from(_OPTION_NAMES), _option_values, max_size=6))
def test_pool_options_accept_or_reject_with_a_value_error_naming_the_option(kwargs: dict[str, Any]) -> None:
    try:
        options = mp.PoolOptions(**kwargs)
    except ValueError as exc:
        message = str(exc)
    else:
        for name, value in kwargs.items():
            assert getattr(options, name) == value
        return
    assert any(name in message for name in kwargs), message


@FUZZ
@given(st.dictionaries(st.sampled_from(_OPTION_NAMES), _option_values, max_size=6), _dsns())
def test_create_pool_validates_its_arguments_before_connecting(kwargs: dict[str, Any], case: tuple[str, str]) -> None:
    dsn, password = case
    # Not awaited: validation happens in the call itself, and nothing may connect or need an event loop.
    try:
        mp.create_pool(dsn=dsn, **kwargs)
    except ValueError as exc:
        _assert_hidden(password, exc)


@pytest.mark.parametrize("timeout", [0, -1.0, math.nan, -math.inf])
@pytest.mark.usefixtures("driver")
async def test_acquire_rejects_a_timeout_that_is_not_positive(make_pool: Any, timeout: float) -> None:
    pool = await make_pool(minsize=1, maxsize=1)
    with pytest.raises(ValueError, match="acquire timeout"):
        await pool.acquire(timeout=timeout)
    assert await query_once(pool) == [(1,)]


@pytest.mark.usefixtures("driver")
async def test_a_tiny_acquire_timeout_never_costs_a_healthy_connection(make_pool: Any) -> None:
    pool = await make_pool(minsize=1, maxsize=1)
    # Idle past the pre-ping window: the acquire has to ping, and its deadline is shorter than any ping.
    await asyncio.sleep(pool.options.pre_ping_window + 0.1)
    try:
        conn = await pool.acquire(timeout=1e-6)
    except mp.PoolTimeout:
        pass
    else:
        await pool.release(conn)
    assert pool.stats()["closed_total"]["broken"] == 0


# --------------------------------------------------------------------------- refused logins


def _dsn(server: MySQLServer | ExternalServer, proxy: FaultProxy, *, password: str, db: str) -> str:
    return f"mysql://{quote(server.user, safe='')}:{quote(password, safe='')}@{proxy.host}:{proxy.port}/{db}"


@pytest.mark.parametrize(
    ("what", "code"),
    # An account with rights on its own database only (the throwaway server's, and production's) is told 1044,
    # access denied to that database, whether it exists or not; an account with global rights would get 1049.
    [("password", 1045), ("database", 1044)],
    ids=["wrong-password", "unknown-database"],
)
@pytest.mark.usefixtures("driver")
async def test_a_refused_login_fails_at_once_with_the_servers_error_and_no_password(
    mysql_server: MySQLServer | ExternalServer,
    proxy: FaultProxy,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
    what: str,
    code: int,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = f"{SECRET}-{os.urandom(4).hex()}#@:/"
    password = wrong if what == "password" else mysql_server.password
    db = f"missing_{os.urandom(3).hex()}" if what == "database" else mysql_server.db
    started = time.monotonic()
    with pytest.raises(_drivers.db_errors.OperationalError) as failed:
        await mp.create_pool(dsn=_dsn(mysql_server, proxy, password=password, db=db), minsize=2, **FAST)
    record_figure(request, f"11-{what}", "error_seconds", time.monotonic() - started, "s")
    external_admin = what == "database" and isinstance(mysql_server, ExternalServer)  # its rights are unknown
    assert failed.value.args[0] in ({code, 1049} if external_admin else {code})
    if what == "database":
        assert db in str(failed.value)
    # Credentials that were refused once are refused again: a retry would only delay the error and load the server.
    assert proxy.total_connections <= 2  # minsize connects start together; neither is retried
    _assert_hidden(password, failed.value, repr(failed.value), caplog.text)


@pytest.mark.usefixtures("driver")
async def test_the_password_appears_in_no_output_of_a_pool_in_trouble(
    mysql_server: MySQLServer | ExternalServer, proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    password = mysql_server.password
    async with mp.create_pool(dsn=_dsn(mysql_server, proxy, password=password, db=mysql_server.db), **FAST) as pool:
        await query_once(pool)
        proxy.blackhole()
        await pool.clear()
        with pytest.raises(mp.PoolTimeout) as timed_out:
            await pool.acquire(timeout=1.5)
        stats = pool.stats()
        assert stats["last_error"]
        _assert_hidden(password, timed_out.value, repr(pool), pool.name, json.dumps(stats), caplog.text)
        proxy.heal()
