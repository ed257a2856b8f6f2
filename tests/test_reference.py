"""The API reference as built: every public name has a heading of its own, with its signature and its docstring.

mkdocstrings renders a ``:::`` directive without complaint even when its options hide the name, so a reference
that shows nothing passes ``mkdocs build --strict``. This builds the site and reads the HTML.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

import fastapi_mysqlpool
import fastapi_mysqlpool.testing

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = [
    *(f"fastapi_mysqlpool.{name}" for name in fastapi_mysqlpool.__all__ if name != "__version__"),
    *(f"fastapi_mysqlpool.testing.{name}" for name in fastapi_mysqlpool.testing.__all__),
]


class _Sections(HTMLParser):
    """The text of each mkdocstrings object, by heading id, and whether a signature block follows the heading."""

    def __init__(self) -> None:
        super().__init__()
        self.text: dict[str, list[str]] = {}
        self.signed: set[str] = set()
        self._current: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if re.fullmatch(r"h[1-6]", tag) and "doc-heading" in classes:
            self._current = attributes.get("id")
            if self._current is not None:
                self.text[self._current] = []
        elif "doc-signature" in classes and self._current is not None:
            self.signed.add(self._current)

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self.text[self._current].append(data)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> _Sections:
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=True,
        timeout=300,
        capture_output=True,
    )
    sections = _Sections()
    sections.feed((site / "reference" / "index.html").read_text(encoding="utf-8"))
    return sections


def _object(path: str) -> object:
    module, _, name = path.rpartition(".")
    return getattr(sys.modules[module], name)


@pytest.mark.parametrize("path", PUBLIC)
def test_every_public_name_has_a_heading_and_a_description(reference: _Sections, path: str) -> None:
    assert path in reference.text, f"docs/reference.md renders no heading for {path}"
    text = " ".join("".join(reference.text[path]).split())
    name = path.rsplit(".", 1)[1]
    assert text.startswith(name), text
    # More than the heading and the permalink: the docstring (or, for a constant, its value and docstring).
    assert len(text) > len(name) + 40, f"{path} renders without a description: {text!r}"


def _has_signature(path: str) -> bool:
    obj = _object(path)
    # An exception's signature is BaseException's, which says nothing: its bases are what matter (next test).
    return inspect.isfunction(obj) or (inspect.isclass(obj) and not issubclass(obj, BaseException))


@pytest.mark.parametrize("path", [p for p in PUBLIC if _has_signature(p)])
def test_every_function_and_class_shows_its_signature(reference: _Sections, path: str) -> None:
    assert path in reference.signed, f"{path} renders without its signature"


def test_exceptions_name_their_base_classes(reference: _Sections) -> None:
    # An error's useful "signature" is what it can be caught as: PoolTimeout is also a TimeoutError.
    text = " ".join("".join(reference.text["fastapi_mysqlpool.PoolTimeout"]).split())
    assert "Bases: PoolError, TimeoutError" in text, text


def test_a_missing_heading_is_caught() -> None:
    sections = _Sections()
    sections.feed('<h3 id="fastapi_mysqlpool.create_pool" class="doc doc-heading">create_pool</h3><p>text</p>')
    assert "fastapi_mysqlpool.create_pool" in sections.text
    assert "fastapi_mysqlpool.Pool" not in sections.text
    assert "fastapi_mysqlpool.create_pool" not in sections.signed
