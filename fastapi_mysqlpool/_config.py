"""Pool options, DSN parsing and password masking.

Every pool option is a field of `PoolOptions` with its default, its valid range and a
one-line description in the field's metadata. Validation, DSN query parameters,
environment variables and the configuration reference in the docs are all derived from
that one table, so they cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["DSN_SCHEMES", "ParsedDSN", "PoolOptions", "closest", "mask_dsn", "parse_dsn", "split_options"]

DSN_SCHEMES = ("mysql", "mysql+aiomysql", "mysql+asyncmy", "mariadb", "mariadb+aiomysql", "mariadb+asyncmy")
# A scheme that names a driver, as SQLAlchemy's URLs do, chooses it (``mysql+asyncmy://`` is ``?driver=asyncmy``).
_SCHEME_DRIVERS = {scheme: scheme.partition("+")[2] for scheme in DSN_SCHEMES if "+" in scheme}

#: Connection options accepted in a DSN query string, with their converters.
_CONNECT_QUERY_OPTIONS: dict[str, Callable[[str, str], Any]] = {}


def closest(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` with the known name closest to a misspelt ``name``, or ``""`` when none is close."""
    by_lower = {k.lower(): k for k in known}
    matches = difflib.get_close_matches(name.lower(), by_lower, n=1, cutoff=0.6)
    return f" (did you mean {by_lower[matches[0]]!r}?)" if matches else ""


def _opt(default: Any, doc: str, valid: str, check: Callable[[Any], bool] | None = None) -> Any:
    return field(default=default, metadata={"doc": doc, "valid": valid, "check": check})


def _positive(v: float) -> bool:
    return v > 0 and math.isfinite(v)


def _non_negative(v: float) -> bool:
    return v >= 0 and math.isfinite(v)


@dataclass(frozen=True, slots=True)
class PoolOptions:
    """The pool's own options. Everything else given to `create_pool` goes to ``aiomysql.connect``."""

    name: str | None = _opt(None, "Name used in logs, errors, stats and metrics.", "any text; default host:port/db")
    minsize: int = _opt(1, "Connections kept open, even when idle.", ">= 0 and <= maxsize", lambda v: v >= 0)
    maxsize: int = _opt(10, "Upper bound on open connections.", ">= 1", lambda v: v >= 1)
    acquire_timeout: float = _opt(
        10.0,
        "Seconds `acquire()` may wait before `PoolTimeout`; per call: `acquire(timeout=...)`.",
        "> 0",
        _positive,
    )
    max_waiting: int = _opt(
        0,
        "Tasks allowed to queue for a connection; past it `TooManyWaiters` at once. 0: no bound.",
        ">= 0",
        lambda v: v >= 0,
    )
    connect_timeout: float = _opt(
        5.0, "Seconds for one whole connect: TCP, TLS, handshake and authentication.", "> 0", _positive
    )
    open_timeout: float = _opt(
        10.0,
        "Seconds `create_pool` waits for `minsize` connections before it fails; a connect still waiting then is cut "
        "short, whatever `connect_timeout`. With several hosts, each host left to try gets an even share of the "
        "time left.",
        "> 0",
        _positive,
    )
    wait_open: bool = _opt(
        True, "Fail `create_pool` when `minsize` connections cannot be opened; false starts degraded.", "bool"
    )
    fail_fast: bool = _opt(
        False,
        "While the server is unreachable, fail waiters with the connect error instead of at their deadline.",
        "bool",
    )
    pre_ping: bool = _opt(True, "Check a connection with COM_PING before handing it out.", "bool")
    pre_ping_window: float = _opt(
        0.5, "Skip the pre-ping for a connection used within this many seconds.", ">= 0", _non_negative
    )
    ping_timeout: float = _opt(2.0, "Seconds a pre-ping may take before the connection is discarded.", "> 0", _positive)
    max_lifetime: float = _opt(
        1800.0,
        "Seconds from creation after which a connection is retired (minus up to 2.5 % jitter). 0: never.",
        ">= 0",
        _non_negative,
    )
    pool_recycle: float = _opt(
        -1,
        "aiomysql's option; a positive value is used as `max_lifetime`, counted from creation.",
        "-1 or > 0",
        lambda v: v == -1 or _positive(v),
    )
    max_idle: float = _opt(
        600.0,
        "Seconds an idle connection above `minsize` is kept before it is closed. 0: never.",
        ">= 0",
        _non_negative,
    )
    keepalive_interval: float = _opt(
        0.0,
        "Seconds an idle connection may go without traffic before the pool pings it, so that a NAT or firewall "
        "that drops quiet flows does not turn the next request into a timeout (HikariCP's keepaliveTime). "
        "0: off.",
        ">= 0",
        _non_negative,
    )
    session_reset: str = _opt(
        "exact",
        "What release does to the session. `exact`: roll back an open transaction, and run the full reset "
        "(COM_RESET_CONNECTION, then the database, character set, sql_mode, init_command, statement timeout and "
        "autocommit the connection was opened with) only when the session changed, as the server reports it and "
        "a check of the statement text covers. `rollback`: only the rollback and autocommit; variables, the "
        "current database, `SET NAMES`, temporary tables, `LOCK TABLES` and `GET_LOCK` locks reach the next "
        "user. `always`: the full reset on every release (a round trip each).",
        "'exact', 'rollback' or 'always'",
        lambda v: v in ("exact", "rollback", "always"),
    )
    reset_connection: bool = _opt(
        False,
        "The same as `session_reset=always` (kept from earlier versions): the full reset on every release.",
        "bool",
    )
    reset_timeout: float = _opt(5.0, "Seconds the reset on release (rollback, autocommit) may take.", "> 0", _positive)
    close_timeout: float = _opt(
        10.0,
        "Seconds `wait_closed()` lets in-use connections come back before it terminates them.",
        ">= 0",
        _non_negative,
    )
    backoff_max: float = _opt(
        1.0, "Longest pause, in seconds, between reconnect attempts while the server is unreachable.", "> 0", _positive
    )
    leak_timeout: float = _opt(
        0.0,
        "Warn, with the acquirer's stack, about a connection held longer than this many seconds. 0: off.",
        ">= 0",
        _non_negative,
    )
    slow_acquire: float = _opt(
        1.0, "Log a warning when an acquire waits longer than this many seconds. 0: off.", ">= 0", _non_negative
    )

    driver: str = _opt(
        "aiomysql",
        "The driver the connections use: `aiomysql`, or `asyncmy` (the `asyncmy` extra). A DSN whose scheme "
        "names one (`mysql+asyncmy://`, as in SQLAlchemy's URLs) chooses it too.",
        "'aiomysql' or 'asyncmy'",
        lambda v: v in ("aiomysql", "asyncmy"),
    )
    max_statement_time: float = _opt(
        0.0,
        "Seconds the server lets one statement run before it stops it (MariaDB: every statement, error 1969; "
        "MySQL: SELECT only, error 3024); the connection stays usable. Per acquire: "
        "`acquire(max_statement_time=...)`. 0: no limit; a positive value below the server's resolution (1 µs on "
        "MariaDB, 1 ms on MySQL) is rounded up to it, never to 0.",
        ">= 0",
        _non_negative,
    )
    read_timeout: float = _opt(
        30.0,
        "Seconds one wait for the server's bytes may last; past it the statement fails with 2013, the connection "
        "is closed and its host re-checked. At least twice `max_statement_time` when that is set. 0: no bound.",
        ">= 0",
        _non_negative,
    )
    tracing: bool = _opt(
        False,
        "Emit an OpenTelemetry span per acquire and per statement (either driver); needs the `opentelemetry` extra.",
        "bool",
    )
    trace_statements: bool = _opt(
        False,
        "Put the statement text in query spans (`db.query.text`), with every literal replaced by `?` and comments "
        "removed, read in the session's SQL mode (`NO_BACKSLASH_ESCAPES`, `ANSI_QUOTES`): parameter values never "
        "appear.",
        "bool",
    )

    role: str = _opt(
        "primary",
        "Which hosts serve: `primary` (accepts writes), `replica` (read-only, lag at most `max_replica_lag`), "
        "`any` (any healthy host, in turn).",
        "primary, replica or any",
        lambda v: v in ("primary", "replica", "any"),
    )
    max_replica_lag: float = _opt(
        5.0,
        "Seconds a replica may be behind its primary and still serve `role=replica`; unknown lag never qualifies.",
        ">= 0",
        _non_negative,
    )
    replica_fallback: bool = _opt(
        True, "With `role=replica`, read from a primary while no replica qualifies; false: wait, then fail.", "bool"
    )
    host_check_interval: float = _opt(
        2.0,
        "Seconds between probes of every host's role and lag (several hosts or `role` other than primary).",
        "> 0",
        _positive,
    )
    causal_reads: bool = _opt(
        False, "On Galera, `wsrep_sync_wait=1`: a read sees every write the cluster committed before it.", "bool"
    )
    workers: int = _opt(
        0,
        "Worker processes that each open this pool, for the `max_connections` check. 0: detect (WEB_CONCURRENCY, "
        "uvicorn/gunicorn --workers).",
        ">= 0",
        lambda v: v >= 0,
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            expected = _field_type(f)
            if value is None and f.name == "name":
                continue
            if expected is bool:
                ok = isinstance(value, bool)
            elif expected is int:
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif expected is float:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            else:
                ok = isinstance(value, str)
            check = f.metadata.get("check")
            if not ok or (check is not None and not check(value)):
                raise ValueError(
                    f"invalid value for pool option {f.name!r}: {value!r} (expected {f.metadata['valid']})"
                )
        if self.minsize > self.maxsize:
            raise ValueError(f"invalid pool options: minsize ({self.minsize}) is greater than maxsize ({self.maxsize})")

    @property
    def lifetime(self) -> float:
        """Effective maximum lifetime in seconds, 0 for none: `pool_recycle` wins when set."""
        return float(self.pool_recycle) if self.pool_recycle > 0 else float(self.max_lifetime)

    @classmethod
    def from_strings(cls, values: Mapping[str, str], *, source: str) -> dict[str, Any]:
        """Convert textual option values (DSN query, environment) to typed keyword arguments."""
        by_name = {f.name: f for f in dataclasses.fields(cls)}
        out: dict[str, Any] = {}
        for key, raw in values.items():
            f = by_name.get(key)
            if f is None:
                raise ValueError(f"unknown pool option {key!r} in {source}{closest(key, by_name)}")
            out[key] = _convert(_field_type(f), raw, key, source, f.metadata["valid"])
        return out


def _field_type(f: dataclasses.Field[Any]) -> type:
    text = str(f.type)
    for t in (bool, int, float):
        if text.startswith(t.__name__):
            return t
    return str


def _convert(kind: type, raw: str, key: str, source: str, valid: str) -> Any:
    text = raw.strip()
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        raise ValueError(f"invalid value for {key!r} in {source}: {raw!r} (expected {valid})") from None
    return raw


_POOL_OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(PoolOptions))


def split_options(kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``create_pool`` keyword arguments into (pool options, connect arguments)."""
    pool: dict[str, Any] = {}
    connect: dict[str, Any] = {}
    for key, value in kwargs.items():
        (pool if key in _POOL_OPTION_NAMES else connect)[key] = value
    return pool, connect


# --------------------------------------------------------------------------- DSN


@dataclass(frozen=True, slots=True)
class ParsedDSN:
    """A DSN split into ``aiomysql.connect`` arguments and pool options."""

    connect_kwargs: dict[str, Any] = field(repr=False)
    pool_options: dict[str, Any]


def _text(key: str, raw: str) -> str:
    return raw


def _bool(key: str, raw: str) -> bool:
    result: bool = _convert(bool, raw, key, "DSN", "true or false")
    return result


_CONNECT_QUERY_OPTIONS.update(
    charset=_text,
    autocommit=_bool,
    unix_socket=_text,
    init_command=_text,
    sql_mode=_text,
    local_infile=_bool,
    program_name=_text,
    auth_plugin=_text,
    echo=_bool,
)
_SSL_KEYS = ("ssl", "ssl_mode", "ssl_ca", "ssl_cert", "ssl_key")
_SSL_MODES = ("disabled", "required", "verify_ca", "verify_identity")


def parse_dsn(dsn: str) -> ParsedDSN:
    """Parse ``mysql://user:password@host:3306/db?option=value``.

    Schemes: ``mysql``, ``mariadb``, and with a driver as in SQLAlchemy's URLs, ``mysql+aiomysql``,
    ``mysql+asyncmy``, ``mariadb+aiomysql``, ``mariadb+asyncmy`` (the scheme's driver is the pool's
    ``driver``, and a ``?driver=`` that names another is an error). User and password are
    percent-decoded; the port defaults to 3306. The query string takes pool options
    (``maxsize=20``), connection options (``charset``, ``autocommit``, ``unix_socket``,
    ``init_command``, ``sql_mode``...) and TLS (``ssl_mode``, ``ssl_ca``, ``ssl_cert``,
    ``ssl_key``; ``ssl=true`` means ``ssl_mode=verify_identity``). Anything wrong raises a
    `ValueError` that names it, with the password masked.
    """
    if not isinstance(dsn, str):
        raise ValueError(f"DSN must be a string, not {type(dsn).__name__}")
    try:
        return _parse_dsn(dsn)
    except ValueError as exc:
        raise ValueError(_scrub(str(exc), dsn)) from None


# Text made of these alone reveals nothing of a password, and is in every DSN and in the hints of the messages.
_DELIMITERS = ":/@?#%&= \t"


def _scrub(message: str, dsn: str) -> str:
    """``message`` with every text a parser could take for the password of ``dsn`` replaced by ``***``.

    Whatever part of the DSN a message quotes, the password must not be in it. The masked DSN is already safe
    and is kept as it is, and forms made of delimiters only (a password ``pw#@:/`` also "starts" after its own
    ``:``, giving the form ``/``) are left alone: replacing them would garble the DSN and the hint that tells
    the user what to percent-encode.
    """
    forms = [form for form in _password_forms(dsn) if form.strip(_DELIMITERS)]
    masked = mask_dsn(dsn)
    keep = repr(masked) if repr(masked) in message else masked
    pieces = message.split(keep)
    for secret in forms:
        pieces = [piece.replace(secret, "***") for piece in pieces]
    return keep.join(pieces)


def _password_forms(dsn: str) -> list[str]:
    """Every text a parser could take for the password, longest first: from *any* ``:`` of
    the user-info (the user may hold one too) to *any* later ``@`` (the query may hold one)."""
    parts = _split_password(dsn)
    if parts is None:
        return []
    # parts[1] runs from the first ':' to the last '@'; prefix the ':' so every start is found.
    widest = ":" + parts[1]
    starts = [i + 1 for i, char in enumerate(widest) if char == ":"]
    ends = [i for i, char in enumerate(widest) if char == "@"] + [len(widest)]
    raws = [widest[start:end] for start in starts for end in ends if end > start]
    forms = {form for raw in raws for form in (raw, unquote(raw)) if form}
    return sorted(forms, key=len, reverse=True)


def _split_password(dsn: str) -> tuple[str, str, str] | None:
    """``(head, password, tail)`` of a DSN; the password runs from the first ``:`` of the
    user-info to the last ``@``, so an unencoded ``@`` or ``/`` in it can only widen it."""
    scheme, sep, rest = dsn.partition("://")
    # A DSN that lost its scheme still starts with the user-info, and must be masked all the same.
    head, rest = (scheme + sep, rest) if sep else ("", dsn)
    at = rest.rfind("@")
    if at < 0 or ":" not in rest[:at]:
        return None
    colon = rest.index(":")
    return f"{head}{rest[: colon + 1]}", rest[colon + 1 : at], rest[at:]


def _parse_dsn(dsn: str) -> ParsedDSN:
    masked = mask_dsn(dsn)
    dsn, hosts = _split_hosts(dsn.strip(), masked)
    try:
        parts = urlsplit(dsn)
        port = parts.port
    except ValueError:
        # Not urlsplit's message: it quotes the would-be port, which is the start of a password holding an unencoded
        # '/', '?' or '#', and so is none of the password's forms that parse_dsn scrubs.
        raise ValueError(
            f"invalid DSN {masked!r}: malformed host or port "
            "(percent-encode '@', ':', '/', '?' and '#' in the user and password)"
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in DSN_SCHEMES:
        raise ValueError(f"invalid DSN {masked!r}: scheme must be one of {', '.join(s + '://' for s in DSN_SCHEMES)}")
    if parts.fragment:
        raise ValueError(f"invalid DSN {masked!r}: unexpected fragment '#...' (percent-encode '#' in passwords as %23)")
    connect: dict[str, Any] = {}
    if hosts:
        connect["host"] = hosts
    elif parts.hostname:
        connect["host"] = unquote(parts.hostname)
    connect["port"] = port if port is not None else 3306
    if parts.username:
        connect["user"] = unquote(parts.username)
    if parts.password is not None:
        connect["password"] = unquote(parts.password)
    if "@" in parts.path:
        # The user-info went on past a '/': the password holds an unencoded '/', and what follows it is no path.
        raise ValueError(f"invalid DSN {masked!r}: unencoded '/' in the user or password (percent-encode it as %2F)")
    path = unquote(parts.path.lstrip("/"))
    if "/" in path:
        raise ValueError(f"invalid DSN {masked!r}: database name {path!r} contains '/'")
    if path:
        connect["db"] = path

    pool_raw: dict[str, str] = {}
    ssl_raw: dict[str, str] = {}
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError(f"invalid DSN {masked!r}: malformed query string") from None
    for key, value in query:
        if key in _SSL_KEYS:
            ssl_raw[key] = value
        elif key in _CONNECT_QUERY_OPTIONS:
            connect[key] = _CONNECT_QUERY_OPTIONS[key](key, value)
        elif key in _POOL_OPTION_NAMES:
            pool_raw[key] = value
        else:
            known = (*_SSL_KEYS, *_CONNECT_QUERY_OPTIONS, *_POOL_OPTION_NAMES)
            raise ValueError(f"invalid DSN {masked!r}: unknown query parameter {key!r}{closest(key, known)}")
    scheme_driver = _SCHEME_DRIVERS.get(scheme)
    if scheme_driver is not None:
        named = pool_raw.setdefault("driver", scheme_driver)
        if named.strip() != scheme_driver:
            raise ValueError(
                f"invalid DSN {masked!r}: the scheme {scheme}:// names the driver {scheme_driver!r} "
                f"and the query's driver= names {named!r}; keep one of them"
            )
    if "host" not in connect and "unix_socket" not in connect:
        raise ValueError(f"invalid DSN {masked!r}: no host (use mysql://user:password@host:3306/db)")
    context = _ssl_context(ssl_raw)
    if context is not None:
        connect["ssl"] = context
    return ParsedDSN(connect, PoolOptions.from_strings(pool_raw, source="DSN"))


def _split_hosts(dsn: str, masked: str) -> tuple[str, list[tuple[str, int]] | None]:
    """A DSN with several hosts (``h1:3306,h2:3306``) as one with the first host only, and the list of all."""
    scheme, sep, rest = dsn.partition("://")
    start = rest.rfind("@", 0, rest.find("?") if "?" in rest else len(rest)) + 1
    end = len(rest)
    for delimiter in "/?#":
        found = rest.find(delimiter, start)
        if found >= 0:
            end = min(end, found)
    netloc = rest[start:end]
    if "," not in netloc:
        return dsn, None
    hosts: list[tuple[str, int]] = []
    for item in netloc.split(","):
        name, colon, number = item.rpartition(":") if ":" in item else (item, "", "")
        if not name:
            raise ValueError(f"invalid DSN {masked!r}: empty host in {netloc!r}")
        if colon and not number.isdigit():
            raise ValueError(f"invalid DSN {masked!r}: invalid port {number!r} for host {name!r}")
        port = int(number) if colon else 3306
        if not 0 < port < 65536:
            raise ValueError(f"invalid DSN {masked!r}: port {port} out of range for host {name!r}")
        hosts.append((unquote(name), port))
    first = netloc.split(",")[0]
    return f"{scheme}{sep}{rest[:start]}{first}{rest[end:]}", hosts


def _ssl_context(raw: Mapping[str, str]) -> ssl.SSLContext | None:
    if not raw:
        return None
    mode = raw.get("ssl_mode", "").strip().lower().replace("-", "_")
    if "ssl" in raw:
        enabled = _bool("ssl", raw["ssl"])
        if mode and enabled == (mode == "disabled"):
            raise ValueError(f"invalid DSN: ssl={raw['ssl']} contradicts ssl_mode={raw['ssl_mode']}")
        mode = mode or ("verify_identity" if enabled else "disabled")
    if not mode:
        mode = "verify_ca" if "ssl_ca" in raw else "required"
    if mode not in _SSL_MODES:
        raise ValueError(f"invalid value for 'ssl_mode' in DSN: {raw.get('ssl_mode')!r} (expected one of {_SSL_MODES})")
    if mode == "disabled":
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if mode == "required" and "ssl_ca" not in raw:
        # MySQL's REQUIRED: encrypted, but the server's certificate is not checked.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.check_hostname = mode == "verify_identity"
    try:
        if "ssl_ca" in raw:
            context.load_verify_locations(cafile=raw["ssl_ca"])
        if "ssl_cert" in raw:
            context.load_cert_chain(raw["ssl_cert"], raw.get("ssl_key") or None)
        elif "ssl_key" in raw:
            raise ValueError("invalid DSN: ssl_key given without ssl_cert")
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"invalid TLS file in DSN: {exc}") from None
    return context


def mask_dsn(dsn: str) -> str:
    """Return ``dsn`` with its password replaced by ``***``."""
    parts = _split_password(dsn)
    return dsn if parts is None else f"{parts[0]}***{parts[2]}"
