"""Settings: defaults here, then ``instance/config.py``, then the environment.

Every setting is a Flask config key. The environment overrides with ``CHATBOT_<KEY>``
(``app.config.from_prefixed_env``), and the ecosystem's usual names are honoured too:
``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``DATABASE_URL``, ``SECRET_KEY``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from flask import Flask

DEFAULT_SYSTEM_PROMPT = (
    "You are the customer-support assistant of a mobile-phone company. Answer questions about "
    "phones clearly and briefly, in the customer's language. Give practical steps; suggest an "
    "authorised service centre when a repair is needed."
)


class Defaults:
    # Which assistant answers: "auto" (openai when an API key is set, else offline), "openai", "offline".
    PROVIDER = "auto"
    MODEL = "gpt-4.1-nano"
    SYSTEM_PROMPT = DEFAULT_SYSTEM_PROMPT
    # "model": after a conversation's first reply, ask the model for a short title (in the
    # background; a failure keeps the first message as the title). Anything else: the first message.
    AUTO_TITLE = ""
    OPENAI_API_KEY: str | None = None
    OPENAI_BASE_URL: str | None = None
    OPENAI_TIMEOUT = 30.0  # seconds, per model call (connect + each read)
    OPENAI_MAX_RETRIES = 1  # the SDK's own retries on 429/5xx/connection errors
    MAX_REPLY_TOKENS = 1024
    # History sent per turn: a cost and speed cap, in (estimated) tokens.
    HISTORY_TOKENS = 16_000
    MAX_MESSAGE_CHARS = 8_000
    # The name customers see for the assistant (header, messages); default "Phone support" in the
    # page's language. The model's id is never shown to them.
    ASSISTANT_NAME: str | None = None
    # The questions an empty chat offers (chatbot/suggestions.py): a JSON list, or an object by
    # language ({"en": [...], "es": [...]}); unset: one per main topic of the bundled dataset.
    SUGGESTIONS: list[str] | dict[str, list[str]] | None = None
    # The shop's help articles (Markdown, see chatbot/knowledge/articles.py): this folder, else
    # instance/articles/ when it holds any, else the samples in the package. They are indexed at
    # start when they changed (or with `flask articles index`).
    ARTICLES_FOLDER: str | None = None
    ARTICLES_INDEX_AT_START = True
    # Each turn gives the model the passages of at most this many articles.
    RETRIEVAL_ARTICLES = 3
    # Shown under a failed reply, e.g. "call 900 123 456 (9:00-18:00) or write to help@shop.example".
    SUPPORT_CONTACT: str | None = None
    # How a customer who asks for a person reaches one (each optional): the assistant gives these,
    # in words and under "Talk to a person".
    SUPPORT_PHONE: str | None = None  # "+34 900 123 456"
    SUPPORT_EMAIL: str | None = None  # "help@shop.example"
    SUPPORT_HOURS: str | None = None  # "Monday to Friday, 9:00 to 20:00"
    SUPPORT_URL: str | None = None  # a contact page
    # A conversation with no outcome and nothing new for this long is counted as abandoned (never
    # as resolved); 0 switches the sweep off.
    ABANDONED_AFTER_MINUTES = 30.0
    ABANDONED_SWEEP_SECONDS = 60.0  # how often each process looks for them (after a request)
    # Limits that keep one browser from filling the database.
    MAX_CONVERSATIONS_PER_OWNER = 500
    MAX_MESSAGES_PER_CONVERSATION = 10_000
    MAX_LIVE_REPLIES_PER_OWNER = 3  # replies being written at once for one browser
    # Request bodies: a message form is small. MAX_CONTENT_LENGTH defaults to room for the longest
    # message (percent-encoded, 12 bytes a character at worst) plus the form's other fields.
    MAX_CONTENT_LENGTH: int | None = None
    MAX_FORM_PARTS = 20
    # A conversation page shows this many of the newest messages; older ones load on demand.
    PAGE_MESSAGES = 50
    # Streaming: text goes to the browser in batches, one every STREAM_FLUSH_SECONDS per reply
    # while a process streams few replies. With many at once, a process sends at most
    # STREAM_BATCHES_PER_SECOND batches in all (each reply's batches grow, and come less often, up
    # to one every STREAM_FLUSH_MAX_SECONDS): under load the text comes in bigger steps, and a
    # new customer's reply still starts at once. The model's stream is read at the same pace.
    # "Still here" (a comment line) is sent when a reply is silent for STREAM_KEEPALIVE_SECONDS.
    # Each batch renders the reply's open Markdown block again (bench/stream_markdown.py: ~0.2 ms
    # of server time) and the page swaps it in (~3 ms of the browser's): every 0.1 s rather than
    # 0.05 s halves the first and cuts the second by 40% over a reply, and still reads smoothly.
    STREAM_FLUSH_SECONDS = 0.1
    STREAM_FLUSH_MAX_SECONDS = 0.5
    STREAM_BATCHES_PER_SECOND = 2000
    STREAM_KEEPALIVE_SECONDS = 0.25
    # A live reply's tick (text so far + lease renewal + stop check, one statement) runs this
    # often; its lease lasts this long without a tick (then the reply reads as interrupted).
    # The lease must outlast the longest database stall to expect (a SQLite write lock held by
    # another process): a reply not renewed for that long is taken for dead (its worker crashed).
    STREAM_TICK_SECONDS = 0.5
    STREAM_LEASE_SECONDS = 30.0
    # The final save of a reply is retried this long while the database is busy, before the page
    # says it could not be saved.
    REPLY_SAVE_SECONDS = 20.0
    # The offline assistant streams its answer word by word with this pause (0 in tests).
    OFFLINE_WORD_DELAY = 0.012

    # Logging: the level and format of the app's own log lines (on standard error).
    LOG_LEVEL = "INFO"
    LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    LOG_JSON = False  # one JSON object a line instead (for a log collector)

    SQLALCHEMY_DATABASE_URI: str | None = None  # default: SQLite file in the instance folder
    SQLALCHEMY_ENGINE_OPTIONS: ClassVar[dict[str, object]] = {}
    # SQLite: how long a write waits for another writer's lock before it fails.
    SQLITE_BUSY_SECONDS = 5.0
    # Database connections each worker process keeps (and may open beyond that when busy). A
    # gevent worker serves hundreds of requests at once; size PostgreSQL's max_connections for
    # (pool + overflow) x workers x hosts.
    DATABASE_POOL_SIZE = 10
    DATABASE_MAX_OVERFLOW = 10

    # Server-side sessions (Flask-Session): in Redis when REDIS_URL is set (keys start with
    # SESSION_KEY_PREFIX), else in the database's sessions table.
    SESSION_KEY_PREFIX = "chatbot:session:"
    SESSION_COOKIE_NAME = "chatbot_session"
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_PERMANENT = True
    PERMANENT_SESSION_LIFETIME = 60 * 60 * 24 * 180  # seconds; renewed at most once a day
    SESSION_REFRESH_EACH_REQUEST = False
    SESSION_CLEANUP_N_REQUESTS = 1000

    # CSRF tokens: every state-changing request carries one; a page's token lasts this long.
    CSRF_ENABLED = True
    CSRF_TOKEN_SECONDS = 7 * 24 * 3600

    # Behind a reverse proxy: how many trusted proxies add X-Forwarded-For/-Proto/-Host (0: none,
    # the headers are ignored: anyone can send them).
    PROXY_HOPS = 0

    # The admin area (/admin, off until `flask admin create-user` has made an account): a sign-in
    # lasts at most ADMIN_SESSION_HOURS, and ends after ADMIN_IDLE_MINUTES without a request.
    # ADMIN_LOCKOUT_FAILURES wrong passwords in a row lock the account for ADMIN_LOCKOUT_MINUTES.
    ADMIN_SESSION_HOURS = 12.0
    ADMIN_IDLE_MINUTES = 60.0
    ADMIN_LOCKOUT_FAILURES = 5
    ADMIN_LOCKOUT_MINUTES = 15.0
    ADMIN_COOKIE_NAME = "chatbot_admin"
    # The admin dashboard's cost: USD per million tokens ("input" = prompt, "output" =
    # completion) by model id prefix; the longest prefix of a reply's model wins. A model not
    # here is shown without a cost. In the environment: CHATBOT_MODEL_PRICES='{"gpt-4.1-mini":
    # {"input": 0.4, "output": 1.6}}' (JSON; it replaces this whole dict).
    MODEL_PRICES: ClassVar[dict[str, dict[str, float]]] = {
        "gpt-4.1-nano": {"input": 0.10, "output": 0.40},
        "ft:gpt-4.1-nano": {"input": 0.20, "output": 0.80},
    }

    # Production refuses to start without an explicit SECRET_KEY.
    PRODUCTION = False
    SECRET_KEY: str | None = None

    # Rate limits (Flask-Limiter, see ratelimit.py): limit strings like "20/minute;500/day"; an
    # empty string switches that one off. RATELIMIT_ENABLED=false switches them all off: for load
    # benchmarks only.
    RATELIMIT_ENABLED = True
    RATELIMIT_MESSAGES_PER_OWNER = "20/minute;500/day"  # POST /c and /c/<id>/messages, retries too
    RATELIMIT_MESSAGES_PER_IP = "60/minute;2000/day"  # the same messages, per client address
    RATELIMIT_STOPS_PER_IP = "120/minute"
    RATELIMIT_NEW_SESSIONS_PER_IP = "30/hour"  # first messages from browsers without a session
    RATELIMIT_ADMIN_LOGINS_PER_IP = "10/minute;100/day"  # POST /admin/login, right or wrong
    # Where the counts live: this process's memory, unless REDIS_URL (or Flask-Limiter's own
    # RATELIMIT_STORAGE_URI) is set: then all workers and hosts share them.
    REDIS_URL: str | None = None
    RATELIMIT_STORAGE_URI: str | None = None
    RATELIMIT_STRATEGY = "fixed-window"
    RATELIMIT_KEY_PREFIX = "chatbot"
    # While Redis is unreachable, count in each process's memory rather than fail every message.
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True


def load(app: Flask, test_config: Mapping[str, Any] | None) -> None:
    """Fill ``app.config``: defaults, instance file, environment, then the test mapping."""
    app.config.from_object(Defaults)
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env("CHATBOT")
    for key in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "SECRET_KEY"):
        if os.environ.get(key):
            app.config[key] = os.environ[key]
    if os.environ.get("DATABASE_URL"):
        app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
    if os.environ.get("REDIS_URL"):
        app.config["REDIS_URL"] = os.environ["REDIS_URL"]
    if test_config:
        app.config.update(test_config)

    uri = app.config["SQLALCHEMY_DATABASE_URI"] or (
        "sqlite:///" + str(Path(app.instance_path) / "chatbot.sqlite3")
    )
    if uri.startswith("postgres://"):  # the scheme some hosts hand out
        uri = "postgresql://" + uri[len("postgres://") :]
    if uri.startswith("postgresql://"):
        uri = "postgresql+psycopg://" + uri[len("postgresql://") :]
    app.config["SQLALCHEMY_DATABASE_URI"] = uri

    if app.config["MAX_CONTENT_LENGTH"] is None:
        app.config["MAX_CONTENT_LENGTH"] = int(app.config["MAX_MESSAGE_CHARS"]) * 12 + 4096
    app.config["MAX_FORM_MEMORY_SIZE"] = app.config["MAX_CONTENT_LENGTH"]
    # A failed statement's log line names the statement, never its values (message text, owner
    # tokens, session ids).
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {
        "hide_parameters": True,
        "pool_size": int(app.config["DATABASE_POOL_SIZE"]),
        "max_overflow": int(app.config["DATABASE_MAX_OVERFLOW"]),
        **app.config["SQLALCHEMY_ENGINE_OPTIONS"],
    }

    for key, default in vars(Defaults).items():  # "no" must not read as true
        if isinstance(default, bool):
            app.config[key] = strict_bool(key, app.config[key])
    if os.environ.get("CHATBOT_DEBUG") is not None:
        app.config["DEBUG"] = strict_bool("DEBUG", os.environ["CHATBOT_DEBUG"])

    if app.config["PROVIDER"] not in ("auto", "openai", "offline"):
        raise RuntimeError(
            f"CHATBOT_PROVIDER must be auto, openai or offline, not {app.config['PROVIDER']!r}"
        )
    if app.config["PRODUCTION"]:
        _production(app)
    elif not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = _instance_secret(Path(app.instance_path))


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


def strict_bool(key: str, value: Any) -> bool:
    """true/false/1/0/yes/no/on/off (any case); anything else is an error, not a guess."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise RuntimeError(f"{key} must be true or false (or 1/0, yes/no, on/off), not {value!r}")


def _production(app: Flask) -> None:
    """Production is served over HTTPS by a deliberate operator: refuse what would be unsafe."""
    secret = app.config["SECRET_KEY"]
    if not secret:
        raise RuntimeError("SECRET_KEY must be set in production (environment or instance/config.py).")
    dev_key = Path(app.instance_path) / "secret_key"
    if (
        len(str(secret)) < 32
        or len(set(str(secret))) < 10  # "xxxx…" or forty spaces are not a secret
        or (dev_key.exists() and dev_key.read_text().strip() == secret)
    ):
        raise RuntimeError(
            "SECRET_KEY in production must be your own random value of at least 32 characters, "
            "not the development key from instance/secret_key (python -c 'import secrets; "
            "print(secrets.token_hex(32))' makes one)."
        )
    if not app.config["CSRF_ENABLED"]:
        raise RuntimeError("CSRF protection can't be switched off in production.")
    if app.config.get("DEBUG"):
        raise RuntimeError("Debug mode must be off in production (it runs code from the browser).")
    app.config["SESSION_COOKIE_SECURE"] = True
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_PATH"] = "/"
    app.config["SESSION_COOKIE_DOMAIN"] = None
    for key in ("SESSION_COOKIE_NAME", "ADMIN_COOKIE_NAME"):
        name = app.config[key]
        if not name.startswith("__Host-"):  # only this host, only HTTPS: no sibling can plant it
            app.config[key] = "__Host-" + name


def _instance_secret(instance: Path) -> str:
    """A development key, generated once and kept in ``instance/secret_key``."""
    path = instance / "secret_key"
    if not path.exists():
        tmp = path.with_name(f".secret_key.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # atomic: the first worker's key wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()
