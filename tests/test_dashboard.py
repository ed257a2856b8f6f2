"""The dashboard, in a real headless chromium against a real uvicorn: it charts the live numbers of the pool."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from tests import _dashboard_app
from tests._uvicorn import uvicorn_server

CHROMIUM_HINT = (
    "the dashboard tests drive a real headless browser: install Debian's chromium "
    "(sudo apt-get install -y chromium; make test does it)"
)


class _Elements(HTMLParser):
    """Every element's attributes, and the text inside each element of class ``note``."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.notes: list[str] = []
        self._in_note = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        self.elements.append((tag, attributes))
        self._in_note = attributes.get("class") == "note"

    def handle_endtag(self, tag: str) -> None:
        self._in_note = False

    def handle_data(self, data: str) -> None:
        if self._in_note:
            self.notes.append(data)

    def first(self, tag: str, **attrs: str) -> dict[str, str]:
        for name, attributes in self.elements:
            if name == tag and all(attributes.get(k.replace("_", "-")) == v for k, v in attrs.items()):
                return attributes
        raise AssertionError(f"no <{tag}> with {attrs} in the page")


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail(CHROMIUM_HINT, pytrace=False)
    return path


def render(url: str, profile: Path, seconds: float) -> _Elements:
    """The DOM after ``seconds`` of the page's (virtual) time: its timers fire, its fetches really run."""
    result = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={profile}",
            "--window-size=1440,900",
            f"--virtual-time-budget={int(seconds * 1000)}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    page = _Elements()
    page.feed(result.stdout)
    return page


@pytest.fixture(scope="module")
def app_url(mysql_dsn: str) -> Iterator[str]:
    with uvicorn_server("tests._dashboard_app:app", {"DATABASE_URL": mysql_dsn}, ready="/pool/live") as base:
        yield base


@pytest.fixture
def held(app_url: str) -> Iterator[None]:
    yield
    httpx.post(f"{app_url}/release", timeout=10).raise_for_status()


def test_the_chart_draws_the_live_numbers_in_a_real_browser(app_url: str, held: None, tmp_path: Path) -> None:
    httpx.post(f"{app_url}/hold", params={"n": 2}, timeout=10).raise_for_status()
    time.sleep(2.5)  # the process samples once a second: the chart has its points before the page opens
    page = render(f"{app_url}/pool/dashboard", tmp_path / "profile", seconds=7)
    assert int(page.first("body")["data-polls"]) >= 3
    card = page.first("section", data_pool="default")
    assert card["data-health"] == "pass"
    chart = page.first("canvas")
    assert int(chart["data-points"]) >= 3
    assert chart["data-max"] == str(_dashboard_app.MAXSIZE)
    # The two held connections, and possibly the one the page's own health probe holds at that moment.
    assert chart["data-in-use"] in {"2", "3"}
    assert int(chart["data-idle"]) + int(chart["data-in-use"]) <= _dashboard_app.MAXSIZE
    assert chart["data-waiting"] == "0"
    assert f"of maxsize {_dashboard_app.MAXSIZE}" in chart["aria-label"]


def test_an_exhausted_pool_shows_as_failing_with_the_reason(app_url: str, held: None, tmp_path: Path) -> None:
    httpx.post(f"{app_url}/hold", params={"n": _dashboard_app.MAXSIZE}, timeout=10).raise_for_status()
    page = render(f"{app_url}/pool/dashboard", tmp_path / "profile", seconds=5)
    card = page.first("section", data_pool="default")
    assert card["data-health"] == "fail"
    assert page.first("canvas")["data-in-use"] == str(_dashboard_app.MAXSIZE)
    # The readiness check's own explanation, shown as it is.
    assert any(note.startswith("health: ") and len(note) > len("health: ") for note in page.notes), page.notes


def test_the_page_is_self_contained(app_url: str) -> None:
    response = httpx.get(f"{app_url}/pool/dashboard", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = _Elements()
    page.feed(response.text)
    linked = [a[k] for _, a in page.elements for k in ("src", "href") if k in a]
    assert linked == []
    assert "connect-src 'self'" in response.headers["content-security-policy"]
    assert "default-src 'none'" in response.headers["content-security-policy"]


def test_a_missing_chromium_fails_the_suite_with_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium"):
        chromium()


def test_a_page_opened_after_an_exhaustion_shows_what_led_to_it(app_url: str, held: None, tmp_path: Path) -> None:
    # The incident happens before the page is opened: every connection held, acquires timing out (after 0.5 s).
    httpx.post(f"{app_url}/hold", params={"n": _dashboard_app.MAXSIZE}, timeout=10).raise_for_status()
    httpx.post(f"{app_url}/load", params={"tasks": 3, "seconds": 3}, timeout=10).raise_for_status()
    time.sleep(4)
    httpx.post(f"{app_url}/release", timeout=10).raise_for_status()
    page = render(f"{app_url}/pool/dashboard", tmp_path / "profile", seconds=3)
    card = page.first("section", data_pool="default")
    # The last minute, from the process's own history: the timeouts, and their wait in the latency.
    assert int(card["data-timeouts-minute"]) >= 1
    assert float(card["data-p99-minute"]) >= 0.25
    chart = page.first("canvas", **{"class": "connections"})
    assert int(chart["data-oldest"]) >= 4  # samples from before the page was opened
    assert int(chart["data-points"]) >= 4
    assert float(chart["data-busy-peak"]) >= _dashboard_app.MAXSIZE - 0.5  # the held connections, as "busy"
    rate = page.first("canvas", **{"class": "rate"})
    assert int(rate["data-points"]) >= 4


def test_head_answers_under_uvicorn_without_a_body(app_url: str) -> None:
    for path in ("/pool/live", "/pool/health", "/pool/dashboard"):
        response = httpx.head(f"{app_url}{path}", timeout=10)
        assert (response.status_code, response.content) == (200, b""), path
        assert int(response.headers["content-length"]) > 0  # the length the GET's body has
