"""Configuration from the environment: ``DATABASE_URL`` and one ``MYSQLPOOL_<OPTION>`` variable per pool option.

The settings class is generated from ``dataclasses.fields(PoolOptions)``, so a new pool option gets its
environment variable without anyone touching this file. Values are read as text and converted by
`PoolOptions.from_strings`, the same code that converts DSN query parameters, so ``MYSQLPOOL_WAIT_OPEN=off``
and ``?wait_open=off`` mean the same thing and fail with the same message.

A ``MYSQLPOOL_*`` name that is no option (``MYSQLPOOL_MAXSISE``), in the environment or the ``.env`` file, is an
error naming the closest option, as a misspelt keyword argument or DSN parameter is: ignored, it would start the
app with a default the operator thought they had changed.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import Field, create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from ._config import PoolOptions, closest

__all__ = ["ENV_FILE", "ENV_PREFIX", "MySQLPoolSettings", "env_pool_options"]

ENV_PREFIX = "MYSQLPOOL_"
#: The dotenv file read from the working directory, next to the environment.
ENV_FILE = ".env"


_FIELDS = dataclasses.fields(PoolOptions)


class _Base(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=ENV_FILE, extra="ignore")

    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL", repr=False)


MySQLPoolSettings: type[_Base] = create_model(  # type: ignore[call-overload]
    "MySQLPoolSettings",
    __base__=_Base,
    __doc__="``DATABASE_URL`` and ``MYSQLPOOL_<OPTION>`` for every `PoolOptions` field; a ``.env`` file is read too.",
    **{f.name: (str | None, Field(default=None, description=f.metadata["doc"])) for f in _FIELDS},
)


def env_pool_options(settings: _Base) -> dict[str, Any]:
    """The pool options set in the environment, converted and validated like DSN query parameters."""
    _check_names()
    raw = {f.name: value for f in _FIELDS if (value := getattr(settings, f.name)) is not None}
    return PoolOptions.from_strings(raw, source=f"the environment ({ENV_PREFIX}*)")


def _check_names() -> None:
    """Fail on a ``MYSQLPOOL_*`` variable that names no option; pydantic-settings would ignore it."""
    known = [ENV_PREFIX + f.name.upper() for f in _FIELDS]
    sources = [("the environment", list(os.environ))]
    if Path(ENV_FILE).is_file():
        sources.append((f"the {ENV_FILE} file", list(dotenv_values(ENV_FILE))))
    for source, names in sources:
        for name in names:
            # Case-insensitive, as pydantic-settings reads them.
            if name.upper().startswith(ENV_PREFIX) and name.upper() not in known:
                raise ValueError(f"unknown pool option {name!r} in {source}{closest(name.upper(), known)}")
