"""The requirements' bounds: every requirement of the package and of its user-facing extras has a lower and an
upper bound, and constraints/lowest.txt, which `make test-lowest` installs, pins each one at its lower bound."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest itself needs tomli before Python 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# The project's own toolchain: not installed by users, and run at its newest versions at both ends.
TOOLCHAIN_EXTRAS = {"dev", "docs"}
# Pinned beside the requirements without being one: the development tools' SDK must match the API's version.
COMPANIONS = {"opentelemetry-sdk": "opentelemetry-api"}


def requirements() -> list[Requirement]:
    found = [Requirement(text) for text in PROJECT["dependencies"]]
    for extra, texts in PROJECT["optional-dependencies"].items():
        if extra not in TOOLCHAIN_EXTRAS:
            found += [Requirement(text) for text in texts]
    return found


def lower_bound(requirement: Requirement) -> Version:
    (bound,) = [spec.version for spec in requirement.specifier if spec.operator == ">="]
    return Version(bound)


def lowest_pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in (ROOT / "constraints" / "lowest.txt").read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            name, _, version = text.partition("==")
            assert version, f"constraints/lowest.txt: {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = Version(version)
    return pins


@pytest.mark.parametrize("requirement", requirements(), ids=str)
def test_every_requirement_has_a_lower_and_an_upper_bound(requirement: Requirement) -> None:
    operators = sorted(spec.operator for spec in requirement.specifier)
    assert operators == ["<", ">="], f"{requirement}: expected one >= and one < bound"
    (upper,) = [Version(spec.version) for spec in requirement.specifier if spec.operator == "<"]
    assert lower_bound(requirement) < upper, str(requirement)


def test_the_lowest_constraints_pin_every_requirement_at_its_lower_bound() -> None:
    expected = {canonicalize_name(r.name): lower_bound(r) for r in requirements()}
    pins = lowest_pins()
    companions = {canonicalize_name(name): pins.get(canonicalize_name(of)) for name, of in COMPANIONS.items()}
    assert pins == {**expected, **companions}
