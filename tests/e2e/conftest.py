"""Fixtures for the real-browser tests: a live Streamlit server on a free port with a temporary
run store, and Debian's Chromium driven by Playwright (nothing downloads a browser).

On a developer machine without Chromium the tests skip with the install command; in CI
(CI=true) a missing browser is a failure, never a silent skip.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

from _mtr import in_ci

from .helpers import ARTIFACTS, ROOT, T_IDLE, open_app, wait_idle

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
INSTALL_HINT = "install it with: apt-get update && apt-get install -y chromium"


def _need(ok: bool, why: str) -> None:
    if ok:
        return
    if in_ci():
        pytest.fail(f"{why} (CI=true: the browser tests must run in CI). {INSTALL_HINT}", pytrace=False)
    pytest.skip(f"{why}; {INSTALL_HINT}")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    _need(os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} not found")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        if in_ci():
            pytest.fail("the playwright package is missing (pip install -r requirements-dev.txt)", pytrace=False)
        pytest.skip("the playwright package is missing: pip install -r requirements-dev.txt")
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def run_store(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e-runs")


@pytest.fixture(scope="session")
def server(chromium_path, run_store, tmp_path_factory):
    """`streamlit run app.py` on a free port; yields its base URL; stopped at the end."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("e2e-server") / "streamlit.log"
    env = dict(os.environ, MTR_RUN_STORE=str(run_store),
               MTR_CACHE_DIR=str(tmp_path_factory.mktemp("e2e-cache")),
               MTR_MAX_JOBS="3",  # journey 5 trains two at once; a job left by a failed test must not block it
               PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while not _healthy(url):
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit not healthy after 90 s:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()
        text = log_path.read_text(errors="replace")
        if "Traceback" in text:  # keep the server's own errors where a person can read them
            ARTIFACTS.mkdir(exist_ok=True)
            (ARTIFACTS / "streamlit-server.log").write_text(text)


@pytest.fixture(scope="session")
def browser(chromium_path, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


@pytest.fixture(scope="session")
def first_visit(server, browser) -> dict:
    """The very first request of the fresh server, straight to a page link (/runs): until app.py
    has called st.navigation once, Streamlit runs a page of a folder named pages/ in its legacy
    mode, without app.py. What the visitor saw: the heading and the sidebar navigation."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = ctx.new_page()
        open_app(page, server, "/runs")
        try:  # app.py's own sidebar block: only there once app.py has run (the first run starts torch)
            expect(page.get_by_test_id("stSidebar")).to_contain_text("Share this setup", timeout=T_IDLE)
        except AssertionError:
            pass  # the test of the first visit reports what was shown instead
        wait_idle(page)
        nav = page.get_by_test_id("stSidebarNav")
        nav.wait_for(timeout=T_IDLE)
        return {"heading": page.get_by_role("heading", level=1).first.inner_text(), "nav": nav.inner_text(),
                "url": page.url}
    finally:
        ctx.close()


@pytest.fixture(scope="session")
def app_url(server, first_visit) -> str:
    """The server, once its first visit (a page link) has been made."""
    return server


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def new_page(browser, request):
    """Factory: a page in a fresh browser context (fresh storage and cookies: a new user).
    On failure each open page is saved as test-artifacts/FAILED-<test>-<n>.png."""
    contexts = []
    log: list[str] = []

    def make(width: int = 1400, height: int = 1000):
        ctx = browser.new_context(viewport={"width": width, "height": height})
        ctx.set_default_timeout(60_000)
        contexts.append(ctx)
        n = len(contexts) - 1
        page = ctx.new_page()
        page.on("pageerror", lambda e: log.append(f"[{n}] page error: {e}"))
        page.on("console", lambda m: log.append(f"[{n}] console {m.type}: {m.text}") if m.type == "error" else None)
        return page

    yield make
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if failed and log:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"FAILED-{request.node.name}-console.txt").write_text("\n".join(log))
    for i, ctx in enumerate(contexts):
        if failed:
            try:
                ARTIFACTS.mkdir(exist_ok=True)
                for p in ctx.pages:
                    p.screenshot(path=str(ARTIFACTS / f"FAILED-{request.node.name}-{i}.png"), full_page=True)
                    (ARTIFACTS / f"FAILED-{request.node.name}-{i}.html").write_text(f"<!-- {p.url} -->\n" + p.content())
            except Exception:
                pass
        ctx.close()


@pytest.fixture
def page(new_page):
    return new_page()
