"""The errors the pool raises, in one place.

    PoolError                      base of the pool's own errors
     ├── PoolTimeout               no connection within the acquire deadline (also a TimeoutError)
     ├── PoolClosed                acquire on a closed or closing pool (also a RuntimeError)
     ├── PoolMisuse                a call the pool's state does not allow (also a RuntimeError)
     ├── TooManyWaiters            ``max_waiting`` tasks already queue; rejected at once
     ├── HookError                 a ``configure``, ``check`` or ``reset`` hook raised (or rejected a connection)
     └── CommitOutcomeUnknown      the connection was lost during COMMIT: it may or may not have committed

``PoolClosed`` and ``PoolMisuse`` are ``RuntimeError`` too, because aiomysql raises a plain
``RuntimeError`` in those places and code migrating from it catches that.

Errors from the server or the network are aiomysql's (``pymysql.err``): an
``OperationalError`` for wrong credentials or an unknown database, for instance. They
pass through unchanged, so existing ``except aiomysql.OperationalError`` code keeps working.
"""

from __future__ import annotations

__all__ = [
    "CommitOutcomeUnknown",
    "HookError",
    "PoolClosed",
    "PoolError",
    "PoolMisuse",
    "PoolTimeout",
    "TooManyWaiters",
]


class PoolError(Exception):
    """Base class of the errors raised by the pool itself."""


class PoolTimeout(PoolError, TimeoutError):
    """No connection could be had within the acquire timeout.

    The message names the pool, its size, how many connections are in use, how many
    tasks wait, and the last connect error, if any.
    """


class PoolClosed(PoolError, RuntimeError):
    """The pool is closed or closing; it hands out no more connections."""


class PoolMisuse(PoolError, RuntimeError):
    """A call the pool's state does not allow: ``wait_closed()`` before ``close()``, ``with pool:``,
    releasing a connection twice or one the pool did not hand out."""


class TooManyWaiters(PoolError):
    """``max_waiting`` tasks are already queued; the acquire was rejected without waiting."""


class HookError(PoolError):
    """A lifecycle hook (``configure``, ``check`` or ``reset``) raised, or ``check`` returned False.

    The message names the hook and the function; the hook's own exception is the ``__cause__``.
    The connection it ran on is discarded.
    """


class CommitOutcomeUnknown(PoolError):
    """The connection was lost while COMMIT was in flight, so the transaction may have committed.

    Raised by `Pool.run_transaction`, which never reruns a transaction in that case: rerunning
    one that did commit would apply it twice, and by the commit of FastAPI's ``get_transaction``.
    The lost-connection error is the ``__cause__``.
    """
