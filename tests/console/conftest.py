"""Console tests: a live mlgov server on a fresh migrated database, and Debian's Chromium driven by Playwright.

One browser per test session, one server per test module; each test opens its own browser context (cookies apart)
signed in as the role it needs. Every page a test visits is checked for Content-Security-Policy violations, and
`shot()` saves a 1280×800 screenshot to ``.screenshots/`` (gitignored) to look at.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlgov import auth
from mlgov.app import create_app
from mlgov.db import Database
from tests.browser import chromium
from tests.conftest import BACKENDS, make_settings
from tests.infra import LiveServer, fresh_database, upgrade

SHOTS = Path(__file__).resolve().parents[2] / ".screenshots"
VIEWPORT = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Distinct owners, so four-eyes lets the approver decide what the publisher or the admin registered.
ROLES = {"admin": ("admin", "root"), "publisher": ("publisher", "alice"), "approver": ("approver", "bob"),
         "viewer": ("viewer", "carol")}
# Collects violations in the page itself (init scripts are injected by the browser, not subject to the page's CSP).
CSP_PROBE = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI + ' ' + (e.sourceFile || '') + ':' + e.lineNumber));
"""


@dataclass
class Console:
    url: str
    db: Database
    keys: dict[str, str]
    home: Path
    app: Any
    api: Callable[[str], httpx.Client] = field(init=False)

    def __post_init__(self) -> None:
        self.api = lambda role: httpx.Client(base_url=self.url, timeout=60,
                                             headers={"Authorization": f"Bearer {self.keys[role]}"})

    def new_key(self, name: str, role: str, owner: str) -> str:
        with self.db.session_scope() as s:
            return auth.create_key(s, name, role, actor="test", owner=owner)[1]


@pytest.fixture(scope="module")
def console_settings() -> dict[str, Any]:
    """Settings of the module's server (override in a test module to change them)."""
    return {}


@pytest.fixture(scope="module", params=BACKENDS)
def console(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            console_settings: dict[str, Any]) -> Iterator[Console]:
    """A live server per module and backend: every page and page action runs on SQLite and on PostgreSQL, like the
    API's tests (``tests.conftest.BACKENDS``)."""
    tmp = tmp_path_factory.mktemp("console")
    with fresh_database(request.param, tmp) as url:
        upgrade(url)
        db = Database(url)
        keys: dict[str, str] = {}
        with db.session_scope() as s:
            for name, (role, owner) in ROLES.items():
                keys[name] = auth.create_key(s, name, role, actor="test", owner=owner)[1]
        try:
            app = create_app(make_settings(tmp, **console_settings), db=db)
            with LiveServer(app) as srv:
                yield Console(srv.url, db, keys, tmp, app)
        finally:
            db.dispose()


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One browser for the console's tests, closed when they end: Playwright's sync API keeps an event loop running
    in this thread while it is open, and later tests call asyncio.run()."""
    from playwright.sync_api import sync_playwright

    exe = chromium()   # Debian's chromium; skips (or fails under CI=true) when absent; never a downloaded build
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


class Browser:
    """A browser context signed in (or not) to the console, with CSP violations collected on every page."""

    def __init__(self, browser: Any, console: Console, viewport: dict[str, int] = VIEWPORT) -> None:
        self.console = console
        self.context = browser.new_context(viewport=viewport, accept_downloads=True)
        self.context.add_init_script(CSP_PROBE)
        self.context.set_default_timeout(30_000)   # the CI machine may be loaded; a hang still fails
        self.context.set_default_navigation_timeout(60_000)
        self.page = self.context.new_page()
        self.messages: list[str] = []
        self.page.on("console", lambda m: self.messages.append(m.text))
        self.page.on("pageerror", lambda e: self.messages.append(f"pageerror: {e}"))

    def goto(self, path: str) -> Any:
        self.page.goto(self.console.url + path)
        self.check_csp()
        return self.page

    def sign_in(self, role: str | None = None, key: str | None = None) -> Browser:
        self.goto("/console/sign-in")
        self.page.get_by_label("API key").fill(key or self.console.keys[role or "viewer"])
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_load_state()
        self.check_csp()
        return self

    def check_csp(self) -> None:
        violations = self.page.evaluate("window.__csp || []")
        refused = [m for m in self.messages if "Content Security Policy" in m or "Refused to" in m]
        errors = [m for m in self.messages if m.startswith("pageerror")]
        assert not violations and not refused and not errors, (violations, refused, errors)

    def shot(self, name: str, *, full_page: bool = False) -> Path:
        SHOTS.mkdir(exist_ok=True)
        path = SHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_browser(browser: Any, console: Console) -> Iterator[Callable[..., Browser]]:
    """``open_browser("approver")``: a fresh context signed in with that role's key (None: not signed in)."""
    opened: list[Browser] = []

    def make(role: str | None = None, *, key: str | None = None, viewport: dict[str, int] = VIEWPORT) -> Browser:
        b = Browser(browser, console, viewport)
        opened.append(b)
        return b.sign_in(role, key) if role or key else b

    yield make
    for b in opened:
        b.close()
