"""What the pool's log lines look like when the application has configured no logging.

Python then prints a library's warnings through ``logging.lastResort``: the bare message, with no time and no
level. That is the case under uvicorn's default logging, which configures uvicorn's own loggers and not the root
logger, so an operator reading a pool's "connect failed" could not tell when it happened or how bad it was.
`install_default_handler` gives the ``fastapi_mysqlpool`` logger a stderr handler that prints
``2026-11-23 15:16:17,042 WARNING fastapi_mysqlpool: pool ...``, and that steps aside, line by line, as soon as
the application configures logging (a handler on the root logger or on ``fastapi_mysqlpool``): no line is ever
printed twice, and the logger's level is left alone.
"""

from __future__ import annotations

import logging

__all__ = ["LOGGER_NAME", "LOG_FORMAT", "install_default_handler"]

LOGGER_NAME = "fastapi_mysqlpool"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _DefaultHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr, with time and level, for as long as nothing else handles the pool's records."""

    def filter(self, record: logging.LogRecord) -> bool:
        others = [h for h in logging.getLogger(LOGGER_NAME).handlers if h is not self]
        return not others and not logging.getLogger().handlers and bool(super().filter(record))


def install_default_handler() -> None:
    """Give the pool's logger its default output, once per process; see the module docstring."""
    logger = logging.getLogger(LOGGER_NAME)
    if any(isinstance(handler, _DefaultHandler) for handler in logger.handlers):
        return
    handler = _DefaultHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.addHandler(handler)
