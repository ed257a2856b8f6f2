"""Opening one connection: fresh credentials, the handshake, then the ``configure`` hook.

``password`` may be a string or a callable (plain or async) returning one, and ``connect_args`` a
callable returning a mapping of connect arguments (``host``, ``user``, ``password``, ``ssl``...) that
override the static ones. Either is called for every new connection, so a short-lived token (an
RDS IAM token lives 15 minutes, a Vault dynamic secret as long as its lease) is always fresh, and a
rotated password is picked up without restarting anything.

A provider that caches may hand out a token that was revoked a moment ago. So when the server
answers access denied (1045) to credentials that came from a callable, the opener asks the
callable once more and tries again before it fails: one retry, so wrong credentials still fail
fast and an account is not locked out by a loop.

The resolved password is only ever passed to the driver: it is never stored on the pool, put in an
error, a log line, stats or a repr.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ._hooks import Hook, end_what_hooks_left, run_hook
from ._seam import Conn, Driver, error_code

__all__ = ["ACCESS_DENIED", "ConnectArgs", "ConnectionOpener", "PasswordSource", "check_sources"]

#: ER_ACCESS_DENIED_ERROR: wrong user or password.
ACCESS_DENIED = 1045

PasswordSource = str | Callable[[], str | Awaitable[str]]
ConnectArgs = Callable[[], Mapping[str, Any] | Awaitable[Mapping[str, Any]]]


def check_sources(connect_kwargs: Mapping[str, Any]) -> None:
    """Reject, before anything is opened, a ``password`` or ``connect_args`` of the wrong kind."""
    password = connect_kwargs.get("password")
    if password is not None and not isinstance(password, str) and not callable(password):
        raise ValueError(
            f"invalid password: a {type(password).__name__} (expected a string, or a callable returning one)"
        )
    connect_args = connect_kwargs.get("connect_args")
    if connect_args is not None and not callable(connect_args):
        raise ValueError(
            f"invalid connect_args: a {type(connect_args).__name__} (expected a callable returning a mapping "
            "of connect arguments; pass static arguments as keyword arguments)"
        )


async def _resolve(source: Callable[[], Any]) -> Any:
    value = source()
    if inspect.isawaitable(value):
        value = await value
    return value


class ConnectionOpener:
    """Opens connections for one pool; see the module docstring."""

    __slots__ = ("_configure", "_connect_args", "_driver", "_password", "_static", "connection_class", "dynamic")

    def __init__(
        self,
        connect_kwargs: Mapping[str, Any],
        *,
        driver: Driver,
        configure: Hook | None = None,
        connection_class: type[Any] | None = None,
    ) -> None:
        check_sources(connect_kwargs)
        self._static = {k: v for k, v in connect_kwargs.items() if k not in ("password", "connect_args")}
        self._password: PasswordSource | None = connect_kwargs.get("password")
        self._connect_args: ConnectArgs | None = connect_kwargs.get("connect_args")
        self._driver = driver
        self._configure = configure
        self.connection_class = connection_class or driver.connection_class
        self.dynamic = callable(self._password) or self._connect_args is not None

    async def _arguments(self, address: tuple[str, int] | None) -> dict[str, Any]:
        kwargs = dict(self._static)
        password = self._password
        if callable(password):
            password = await _resolve(password)
            if not isinstance(password, str):
                raise TypeError(f"the password callable returned a {type(password).__name__}, not a string")
        if password is not None:
            kwargs["password"] = password
        if self._connect_args is not None:
            extra = await _resolve(self._connect_args)
            if not isinstance(extra, Mapping):
                raise TypeError(f"the connect_args callable returned a {type(extra).__name__}, not a mapping")
            unknown = sorted(set(extra) - self._driver.connect_arguments)
            if unknown:
                raise TypeError(f"the connect_args callable returned an unknown connect argument {unknown[0]!r}")
            if "autocommit" in extra:
                # The pool resets every session to its own autocommit mode: one per connection cannot hold.
                raise TypeError("the connect_args callable returned autocommit: set it once, as the pool's option")
            kwargs.update(extra)
        if address is not None:
            kwargs["host"], kwargs["port"] = address
        return kwargs

    async def open(self, statement_time: float, opened: list[Conn], address: tuple[str, int] | None = None) -> Conn:
        """One connected, configured connection (to ``address``, host and port, when given), also appended to
        ``opened`` as soon as it exists, so that the caller can close it should the result not reach it; the
        caller bounds the whole call."""
        retry = self.dynamic
        driver = self._driver
        while True:
            try:
                conn = await driver.connect(await self._arguments(address), self.connection_class, statement_time)
                opened.append(conn)
            except Exception as exc:
                if retry and error_code(exc) == ACCESS_DENIED:
                    retry = False
                    continue  # perhaps rotated since the callable answered: ask it once more
                raise
            if self._configure is not None:
                try:
                    await run_hook("configure", self._configure, conn)
                    await end_what_hooks_left(driver, conn, self._static.get("autocommit", False))
                except BaseException:
                    closing = driver.abort(conn)
                    if closing is not None:
                        closing.close()  # the caller's deadline may have run out: no waiting here
                    raise
            return conn
