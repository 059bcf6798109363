"""Fixtures: ``app`` (temporary instance + SQLite), ``client``, ``runner``, ``fake_openai``,
``live_server`` (the app on a free port) and ``page`` (Debian's Chromium via Playwright).

The suite runs on one of two stacks, chosen by ``CHATBOT_TEST_STACK``:

- ``sqlite`` (the default): each test's app on its own SQLite file, sessions in it, rate-limit
  counts in memory;
- ``postgres``: every app on one PostgreSQL database (emptied before each test), sessions and
  rate-limit counts in Redis (a key prefix per test). ``make test`` runs the suite on both.
  Tests about SQLite itself (``@pytest.mark.sqlite_only``) run in the SQLite run only.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from chatbot import create_app

from .fake_openai import FakeOpenAI

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_SERVER = os.environ.get("CHATBOT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
STACK = os.environ.get("CHATBOT_TEST_STACK", "sqlite")
REDIS_TEST_URL = os.environ.get("CHATBOT_TEST_REDIS", "redis://127.0.0.1:6379/0")
if STACK not in ("sqlite", "postgres"):
    raise SystemExit(f"CHATBOT_TEST_STACK={STACK!r}: use sqlite or postgres")


def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite_only: about SQLite itself; runs in the SQLite run only")
    config.addinivalue_line(
        "markers", "postgres_only: several servers on PostgreSQL + Redis; runs in the postgres run only"
    )


def pytest_report_header(config):
    if STACK == "postgres":
        return f"stack: PostgreSQL ({PG_SERVER}) + Redis ({REDIS_TEST_URL}) for sessions and rate limits"
    return "stack: SQLite, sessions in the database, rate limits in memory"


def pytest_collection_modifyitems(config, items):
    """Each test that belongs to one stack's run only is left out of the other run (reported as
    deselected): SQLite-specific tests in the postgres run, multi-server ones in the SQLite run."""
    other = "sqlite_only" if STACK == "postgres" else "postgres_only"
    left_out = [item for item in items if item.get_closest_marker(other)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not item.get_closest_marker(other)]


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


# (the postgres stack) this test's database URL and Redis key prefix: set by ``stack``
_stack: dict[str, str] = {}


def make_app(tmp_path: Path, monkeypatch, **config):
    instance = tmp_path / "instance"
    monkeypatch.setenv("CHATBOT_INSTANCE_PATH", str(instance))
    settings = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": _stack.get("database") or f"sqlite:///{tmp_path / 'chat.sqlite3'}",
        "OFFLINE_WORD_DELAY": 0.0,
        # Tests post many messages from one client: limits stay out of their way, except in
        # test_ratelimit.py, which turns them on (RATELIMIT_ENABLED=True, or None: the environment).
        "RATELIMIT_ENABLED": False,
        # HTTP-level tests post without the page's token; test_security.py and every browser
        # test (which uses the real page) run with CSRF protection on.
        "CSRF_ENABLED": False,
    }
    if _stack:
        settings.update(
            REDIS_URL=REDIS_TEST_URL,
            SESSION_KEY_PREFIX=_stack["prefix"] + ":session:",
            RATELIMIT_KEY_PREFIX=_stack["prefix"],
        )
    settings.update(config)
    # None means "leave it to the environment" (e.g. DATABASE_URL)
    return create_app({k: v for k, v in settings.items() if v is not None})


@pytest.fixture
def app_factory(tmp_path, monkeypatch):
    """Build an app on this test's database with extra config (e.g. another instance). Its
    connections are closed after the test: a whole run's worth of pools left open would use up
    PostgreSQL's connection slots."""
    from chatbot.chat.live import live_replies
    from chatbot.extensions import db

    built = []

    def build(**config):
        app = make_app(tmp_path, monkeypatch, **config)
        built.append(app)
        return app

    yield build
    for app in built:
        live = live_replies(app)
        live.finish_up(0.0)  # replies still carried on for departed pages end (saved) now, not
        live.close()  # during the next test's setup (whose TRUNCATE they would deadlock)
        with app.app_context():
            db.engine.dispose()


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


@pytest.fixture
def cluster(tmp_path, fake_openai):
    """Real gunicorn servers (``servers.py``), one worker each, on this run's stack."""
    from .servers import on_this_stack

    cluster = on_this_stack(tmp_path, fake_openai.url, WEB_CONCURRENCY="1")
    yield cluster
    cluster.close()


@pytest.fixture(scope="session")
def stack_database():
    """(the postgres stack) One PostgreSQL database for the whole run, and Redis reachable."""
    if STACK != "postgres":
        yield None
        return
    import psycopg
    import redis

    try:
        admin = psycopg.connect(PG_SERVER, autocommit=True, connect_timeout=3)
        redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=3).ping()
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"the postgres stack needs PostgreSQL ({PG_SERVER}), Redis ({REDIS_TEST_URL}): {exc}")
        pytest.skip(f"the postgres stack needs PostgreSQL and Redis ({exc.__class__.__name__}: {exc})")
    name = f"chatbot_suite_{os.getpid()}"
    admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_SERVER.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(autouse=True)
def stack(request):
    """(the postgres stack) An empty database and a fresh Redis key prefix for each test."""
    if STACK != "postgres" or request.node.get_closest_marker("sqlite_only"):
        yield
        return
    url = request.getfixturevalue("stack_database")
    import sqlalchemy

    from chatbot.database import head_revision

    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        tables = set(
            conn.execute(
                sqlalchemy.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            ).scalars()
        )
        version = (
            conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).scalar()
            if "alembic_version" in tables
            else None
        )
        if version != head_revision():  # (a test moved the schema): the next app builds it anew
            conn.execute(sqlalchemy.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        elif emptied := [f'"{t}"' for t in tables if t != "alembic_version"]:
            conn.execute(sqlalchemy.text(f"TRUNCATE {', '.join(emptied)} RESTART IDENTITY CASCADE"))
    engine.dispose()
    _stack.update(database=url, prefix=f"test-{uuid.uuid4().hex[:12]}")
    try:
        yield
    finally:
        _stack.clear()


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
