"""The HTML report and the leaderboard page, opened in a real browser: headless Chromium driven by
Debian's chromedriver through the WebDriver protocol (plain HTTP, no client library). Each page must
load without a console error, with every image decoded, and leaves a screenshot where CI keeps its
artefacts ($HARNESS_CI_ARTIFACTS, set by .ci/run; else the test's tmp_path). Skipped, with the
reason, where Chromium or chromedriver is not installed (`apt-get install chromium chromium-driver`)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import cli

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="needs Chromium and chromedriver (`apt-get install chromium chromium-driver` "
                                      "runs this test; .ci/run installs them)")


class Browser:
    """One headless Chromium session through chromedriver's WebDriver endpoint."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        options = {"binary": CHROMIUM, "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                                                "--disable-dev-shm-usage", "--window-size=1280,1600"]}
        session = self.send("POST", "/session", {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": options, "goog:loggingPrefs": {"browser": "ALL"}}}})
        self.session = f"/session/{session['sessionId']}"

    def send(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"WebDriver {method} {path}: {exc.read().decode(errors='replace')[:500]}") from None

    def open(self, page: Path) -> None:
        self.send("POST", f"{self.session}/url", {"url": page.resolve().as_uri()})
        deadline = time.monotonic() + 60
        while self.script("return document.readyState") != "complete":
            assert time.monotonic() < deadline, f"{page} did not finish loading"
            time.sleep(0.2)

    def script(self, code: str):
        return self.send("POST", f"{self.session}/execute/sync", {"script": code, "args": []})

    def console_errors(self) -> list[str]:
        entries = self.send("POST", f"{self.session}/se/log", {"type": "browser"})
        return [e["message"] for e in entries if e.get("level") == "SEVERE"]

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.send("GET", f"{self.session}/screenshot")))

    def close(self) -> None:
        self.send("DELETE", self.session)


@pytest.fixture(scope="module")
def browser():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    driver = subprocess.Popen([DRIVER, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as response:
                    if json.loads(response.read())["value"].get("ready"):
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert time.monotonic() < deadline, "chromedriver did not start"
            time.sleep(0.2)
        session = Browser(port)
        try:
            yield session
        finally:
            session.close()
    finally:
        driver.terminate()
        driver.wait(timeout=30)


@pytest.fixture
def artefacts(tmp_path) -> Path:
    folder = Path(os.environ.get("HARNESS_CI_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def check_page(browser: Browser, page: Path, screenshot: Path) -> int:
    """Open ``page``: no console error, every image decoded, a screenshot kept; returns the image count."""
    browser.console_errors()  # what earlier pages logged is not this page's
    browser.open(page)
    images = browser.script("return Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth > 0])")
    broken = [alt for alt, loaded in images if not loaded]
    assert not broken, f"{page.name}: images that did not load: {broken}"
    assert browser.console_errors() == [], f"{page.name} logged console errors"
    browser.screenshot(screenshot)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return len(images)


def test_the_report_renders_in_chromium(browser, small_run, mnist_root, tmp_path, artefacts):
    out = tmp_path / "report"
    result = CliRunner().invoke(cli, ["report", str(small_run[2]), "--out", str(out), "--data-dir", str(mnist_root)])
    assert result.exit_code == 0, result.output
    images = check_page(browser, out / "report.html", artefacts / "report.png")
    assert images >= 5  # the report's figures, each a data URI the browser decoded


def test_the_leaderboard_page_renders_in_chromium(browser, small_run, tmp_path, artefacts):
    page = tmp_path / "leaderboard.html"
    result = CliRunner().invoke(cli, ["leaderboard", str(small_run[2]), "--html", str(page)])
    assert result.exit_code == 0, result.output
    check_page(browser, page, artefacts / "leaderboard.png")
    text = browser.script("return document.body.innerText")
    assert "Worst-case robust accuracy" in text and "bio" in text and "bp" in text


def test_a_broken_image_or_a_script_error_is_caught(browser, tmp_path):
    """The checks above can fail: a page with a missing image and a throwing script fails both."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><img alt="gone" src="missing.png">'
                    '<script>throw new Error("boom")</script></body></html>')
    with pytest.raises(AssertionError, match="images that did not load: \\['gone'\\]"):
        check_page(browser, page, tmp_path / "broken.png")
    page.write_text('<!DOCTYPE html><html><body><script>throw new Error("boom")</script></body></html>')
    with pytest.raises(AssertionError, match="logged console errors"):
        check_page(browser, page, tmp_path / "broken.png")
