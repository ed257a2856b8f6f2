"""Configuration from the environment: ``DATABASE_URL`` and one ``MYSQLPOOL_<OPTION>`` variable per pool option.

The settings class is generated from ``dataclasses.fields(PoolOptions)``, so a new pool option gets its
environment variable without anyone touching this file. Values are read as text and converted by
`PoolOptions.from_strings`, the same code that converts DSN query parameters, so ``MYSQLPOOL_WAIT_OPEN=off``
and ``?wait_open=off`` mean the same thing and fail with the same message.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import Field, create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from ._config import PoolOptions

__all__ = ["ENV_PREFIX", "MySQLPoolSettings", "env_pool_options"]

ENV_PREFIX = "MYSQLPOOL_"


_FIELDS = dataclasses.fields(PoolOptions)


class _Base(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore")

    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL", repr=False)


MySQLPoolSettings: type[_Base] = create_model(  # type: ignore[call-overload]
    "MySQLPoolSettings",
    __base__=_Base,
    __doc__="``DATABASE_URL`` and ``MYSQLPOOL_<OPTION>`` for every `PoolOptions` field; a ``.env`` file is read too.",
    **{f.name: (str | None, Field(default=None, description=f.metadata["doc"])) for f in _FIELDS},
)


def env_pool_options(settings: _Base) -> dict[str, Any]:
    """The pool options set in the environment, converted and validated like DSN query parameters."""
    raw = {f.name: value for f in _FIELDS if (value := getattr(settings, f.name)) is not None}
    return PoolOptions.from_strings(raw, source=f"the environment ({ENV_PREFIX}*)")
