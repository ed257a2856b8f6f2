"""The configuration reference in the docs is generated from `PoolOptions` and must match it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import fastapi_mysqlpool as mp
from scripts.gen_config_reference import TARGET, env_var, render


def test_configuration_reference_matches_pool_options() -> None:
    assert TARGET.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is out of date with PoolOptions: run .venv/bin/python scripts/gen_config_reference.py"
    )


def test_configuration_reference_documents_every_option() -> None:
    text = TARGET.read_text(encoding="utf-8")
    for field in dataclasses.fields(mp.PoolOptions):
        assert f"### `{field.name}`" in text
        assert f"`{env_var(field.name)}`" in text
        assert field.metadata["doc"] in text


def test_every_option_is_accepted_as_a_dsn_query_parameter() -> None:
    for field in dataclasses.fields(mp.PoolOptions):
        value = "reporting" if field.default is None else str(field.default).lower()
        parsed = mp.parse_dsn(f"mysql://app:secret@db.example:3306/shop?{field.name}={value}")
        assert parsed.pool_options == {field.name: field.default if field.default is not None else "reporting"}


def test_every_option_is_read_from_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi_mysqlpool._settings import MySQLPoolSettings, env_pool_options

    for field in dataclasses.fields(mp.PoolOptions):
        value = "reporting" if field.default is None else str(field.default).lower()
        monkeypatch.setenv(env_var(field.name), value)
    monkeypatch.chdir(Path(__file__).parent)  # no .env file here
    expected = {f.name: "reporting" if f.default is None else f.default for f in dataclasses.fields(mp.PoolOptions)}
    assert env_pool_options(MySQLPoolSettings()) == expected
