"""A small demo bank served over real HTTP, and Debian's chromium driven by Playwright.

The browser tests FAIL (never skip) when /usr/bin/chromium is missing: `.ci/run` installs it.
Playwright never downloads a browser here. Screenshots of every page go to
var/test-artifacts/screenshots/ (gitignored), at a phone-size viewport.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from fieldbank.api.process import serving
from fieldbank.config import REPO_POLICIES_DIR

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PHONE = {"width": 390, "height": 844}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "screenshots"
DEMO_ARGS = ["--parties", "4000", "--months", "20", "--seed", "3", "--borrowers", "40", "--bank-days", "75"]
DEMO_LIMIT_S = 900
TEST_POLICY = "candidate_tight_cutoff.json"
STARTUP_LIMIT_S = 300  # the server imports the model stack; slow on a busy 2-core machine


@dataclass
class Site:
    base: str
    data_dir: Path
    secret: bytes

    def code(self, role: str, subject: str) -> str:
        from fieldbank.web.auth import access_code

        return access_code(self.secret, role, subject)

    def sql(self, query: str, **params: object) -> list:
        engine = create_engine(f"sqlite:///{self.data_dir / 'bank.db'}")
        try:
            with engine.connect() as conn:
                return conn.execute(text(query), params).all()
        finally:
            engine.dispose()


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """`fieldbank demo --no-serve` on a small economy, then `fieldbank serve` on its data."""
    from fieldbank.web.auth import load_secret

    data_dir = tmp_path_factory.mktemp("webdemo") / "demo"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    reuse = os.environ.get("FIELDBANK_WEB_TEST_DEMO")  # while developing: a copy of a finished demo
    if reuse:
        shutil.copytree(reuse, data_dir, symlinks=True)
    else:
        demo = subprocess.run([sys.executable, "-m", "fieldbank.cli", "demo", *DEMO_ARGS, "--data-dir",
                               str(data_dir), "--no-serve"], capture_output=True, text=True, timeout=DEMO_LIMIT_S,
                              env=env)
        assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-4000:]
        assert "demo sign-ins" in demo.stdout
    # The server decides with the backtest's tight candidate policy (PD above 1.6% declined): the
    # small economy's calibrated PDs stay under the champion policy's decline grade (10%), and the
    # browser must see a risk-based decline with its reasons.
    policy = json.dumps({"policy_path": str(REPO_POLICIES_DIR / TEST_POLICY)})
    with serving(data_dir, env={"PYTHONUNBUFFERED": "1", "FIELDBANK_DECISION": policy},
                 startup_limit_s=STARTUP_LIMIT_S) as served:
        yield Site(served.base_url, data_dir, load_secret(data_dir))


@pytest.fixture(scope="module")  # not session: Playwright's sync API keeps an event loop running
def browser() -> Iterator[object]:  # in the thread, and a later file's asyncio.run then fails
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


class Phone:
    """A fresh browser context at a phone viewport that records console errors and failed
    requests, and saves a screenshot per page."""

    def __init__(self, browser, site: Site) -> None:  # noqa: ANN001
        self.context = browser.new_context(viewport=PHONE, device_scale_factor=1, accept_downloads=True)
        self.page = self.context.new_page()
        self.site = site
        self.errors: list[str] = []
        self.closed = False
        self.page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url}"))

    def goto(self, path: str):  # noqa: ANN201
        return self.page.goto(self.site.base + path)

    def sign_in(self, role: str, subject: str) -> None:
        self.goto("/login")
        self.page.select_option("select[name=role]", role)
        self.page.fill("input[name=user]", subject)
        self.page.fill("input[name=code]", self.site.code(role, subject))
        self.shot(f"login-{role}")
        self.page.click("button[type=submit]")
        self.page.wait_for_load_state("load")

    def shot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:  # idempotent: a test may close early, the fixture closes again
        if not self.closed:
            self.closed = True
            self.context.close()


def _opened_phone(browser, site: Site) -> Iterator[Phone]:  # noqa: ANN001
    p = Phone(browser, site)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def phone(browser, site: Site) -> Iterator[Phone]:  # noqa: ANN001
    yield from _opened_phone(browser, site)


@pytest.fixture
def ops_phone(browser, site: Site) -> Iterator[Phone]:  # noqa: ANN001
    """A second browser context beside `phone`, for the bank's staff in the same test."""
    yield from _opened_phone(browser, site)
