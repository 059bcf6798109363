"""Fixtures: ``app`` (temporary instance + SQLite), ``client``, ``runner``, ``fake_openai``,
``live_server`` (the app on a free port) and ``page`` (Debian's Chromium via Playwright)."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from chatbot import create_app

from .fake_openai import FakeOpenAI

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_SERVER = os.environ.get("CHATBOT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

_ENV_PREFIXES = ("CHATBOT_", "OPENAI_")
_ENV_NAMES = ("DATABASE_URL", "SECRET_KEY", "REDIS_URL")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """The developer's own settings must not leak into a test."""
    for name in list(os.environ):
        if name.startswith(_ENV_PREFIXES) or name in _ENV_NAMES:
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def fake_openai_server():
    server = FakeOpenAI()
    yield server
    server.close()


@pytest.fixture
def fake_openai(fake_openai_server):
    fake_openai_server.reset()
    yield fake_openai_server
    fake_openai_server.reset()


def make_app(tmp_path: Path, monkeypatch, **config):
    instance = tmp_path / "instance"
    monkeypatch.setenv("CHATBOT_INSTANCE_PATH", str(instance))
    settings = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'chat.sqlite3'}",
        "OFFLINE_WORD_DELAY": 0.0,
        # Tests post many messages from one client: limits stay out of their way, except in
        # test_ratelimit.py, which turns them on (RATELIMIT_ENABLED=True, or None: the environment).
        "RATELIMIT_ENABLED": False,
        # HTTP-level tests post without the page's token; test_security.py and every browser
        # test (which uses the real page) run with CSRF protection on.
        "CSRF_ENABLED": False,
    }
    settings.update(config)
    # None means "leave it to the environment" (e.g. DATABASE_URL)
    return create_app({k: v for k, v in settings.items() if v is not None})


@pytest.fixture
def app_factory(tmp_path, monkeypatch):
    """Build an app on this test's database with extra config (e.g. another instance)."""
    return lambda **config: make_app(tmp_path, monkeypatch, **config)


@pytest.fixture
def openai_config(fake_openai):
    return {
        "PROVIDER": "openai",
        "OPENAI_API_KEY": "sk-test-not-a-real-key",
        "OPENAI_BASE_URL": fake_openai.url,
        "OPENAI_MAX_RETRIES": 0,
        "OPENAI_TIMEOUT": 5.0,
        "MODEL": "ft:gpt-4.1-nano-2025-04-14:acme:phones:abc123",
    }


@pytest.fixture
def app(app_factory, openai_config):
    """The app talking to the fake OpenAI server."""
    return app_factory(**openai_config)


@pytest.fixture
def offline_app(app_factory):
    return app_factory(PROVIDER="auto")  # no key: the offline assistant


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class LiveServer:
    def __init__(self, app):
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        # a short poll interval: shutdown() waits up to one (werkzeug's default is 0.5 s)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def live_server(app):
    server = LiveServer(app)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        if IN_CI:
            pytest.fail(f"Chromium is required in CI but {CHROMIUM} is missing")
        pytest.skip("Chromium not installed (apt-get install chromium); browser tests skipped")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.js_errors = errors
    yield page
    context.close()


@pytest.fixture(scope="session")
def pg_admin():
    """A connection to the PostgreSQL server, to make a database per test or module. Skipped
    with a reason when there is none, but mandatory in CI."""
    try:
        import psycopg

        admin = psycopg.connect(PG_SERVER, autocommit=True, connect_timeout=3)
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI ({PG_SERVER}): {exc}")
        pytest.skip(
            f"PostgreSQL not reachable at {PG_SERVER} ({exc.__class__.__name__}); set CHATBOT_TEST_POSTGRES"
        )
    yield admin
    admin.close()
