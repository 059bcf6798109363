"""The database: engine settings, and the schema through migrations (Flask-Migrate / Alembic).

``flask db upgrade`` brings a database to the newest schema, and the app does the same on start,
once, under a lock (two gunicorn workers racing on a fresh database otherwise kill one another):

- a new, empty database gets the tables from the models and is stamped as up to date;
- a database made before migrations existed (tables, no version) is stamped as the baseline
  migration, then upgraded;
- anything else is upgraded to the newest migration.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import click
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy import Connection, event, inspect, text

from .extensions import db, migrate

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
BASELINE = "0001_baseline"  # the schema as it was before migrations


SQLITE_BUSY = 5  # another connection holds the write lock (not _SNAPSHOT: waiting can't help that)


def _waiting_out_locks(run: Any, busy_seconds: float) -> Any:
    """Run a statement; while another connection holds the write lock, wait and run it again, for
    up to ``busy_seconds``. SQLite's own busy handler waits inside C: under gevent that stops every
    greenlet of the worker for as long. ``time.sleep`` is the greenlet's own wait there."""
    deadline, pause = None, 0.001
    while True:
        try:
            return run()
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) != SQLITE_BUSY:
                raise
            now = time.monotonic()
            deadline = deadline if deadline is not None else now + busy_seconds
            if now >= deadline:
                raise
            time.sleep(min(pause, deadline - now))
            pause = min(pause * 2, 0.02)


class _Cursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> _Cursor:
        run = super().execute
        _waiting_out_locks(lambda: run(sql, parameters), self._busy_seconds())
        return self

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> _Cursor:
        run = super().executemany
        _waiting_out_locks(lambda: run(sql, seq_of_parameters), self._busy_seconds())
        return self

    def _busy_seconds(self) -> float:
        return float(getattr(self.connection, "busy_seconds", CooperativeConnection.busy_seconds))


class CooperativeConnection(sqlite3.Connection):
    """A SQLite connection that waits for another writer's lock in Python (``_waiting_out_locks``),
    with SQLite's own busy timeout at 0."""

    busy_seconds = 5.0

    def cursor(self, factory: Any = None) -> Any:
        return super().cursor(factory or _Cursor)

    def commit(self) -> None:
        _waiting_out_locks(super().commit, self.busy_seconds)


def _sqlite_pragmas(busy_ms: int) -> Any:
    """Every SQLite connection's settings (WAL is the file's own: ``_use_wal`` sets it once)."""

    def connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.busy_seconds = busy_ms / 1000
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA busy_timeout=0")  # (the connection waits itself: CooperativeConnection)
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return connect


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


_SCRIPTS = threading.Lock()


@cache
def head_revision() -> str | None:
    """The newest migration (read once per process). Under a lock: threads that load the
    migration scripts at once can trip CPython 3.11's compiler ("AST constructor recursion depth
    mismatch"), as apps created together in one process did."""
    with _SCRIPTS:
        return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


@contextmanager
def _schema_lock() -> Iterator[None]:
    """One process at a time changes the schema: a lock file here, and on PostgreSQL (several
    hosts may share one database) a database-wide advisory lock in ``_upgrade``'s transaction."""
    lock_path = os.path.join(current_app.instance_path, ".schema.lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def upgrade() -> str:
    """Bring the schema to the newest migration (see the module's docstring); says what it did."""
    with _schema_lock():
        return _upgrade()


def _upgrade() -> str:
    with db.engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:  # a migration that rebuilds a table must not cascade-delete its children
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        try:
            with conn.begin():
                return _upgrade_in(conn)
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


def _upgrade_in(conn: Connection) -> str:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(724716)"))
    revision = current_revision(conn)
    if revision is None and "messages" not in inspect(conn).get_table_names():
        db.metadata.create_all(conn)
        command.stamp(alembic_config(conn), "head")
        return "created"
    if revision is None:
        command.stamp(alembic_config(conn), BASELINE)
    if current_revision(conn) == head_revision():
        return "up to date"
    command.upgrade(alembic_config(conn), "head")
    return "upgraded"


def _use_wal() -> None:
    """Switch a SQLite file to write-ahead logging (kept in the file; done once, under the lock:
    two first connections switching at once make one fail at once, busy timeout or not)."""
    with db.engine.connect() as conn:
        if conn.exec_driver_sql("PRAGMA journal_mode").scalar() != "wal":
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")


def _sqlite_file(production: bool) -> None:
    """A new SQLite file is made readable by this user only (its journal files follow its mode);
    in production, a file the app can't write is a refusal to start, said plainly."""
    path = db.engine.url.database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    if production and not (os.access(path, os.W_OK) and os.access(os.path.dirname(path) or ".", os.W_OK)):
        raise RuntimeError(f"The database {path} (or its folder) is not writable by this user.")


def prepare() -> str | None:
    """On start: WAL for a SQLite file, and the schema up to date; says what it did, if anything."""
    with _schema_lock():
        if db.engine.dialect.name == "sqlite":
            _sqlite_file(bool(current_app.config["PRODUCTION"]))
            _use_wal()
        return None if schema_ready() else _upgrade()


def schema_ready() -> bool:
    with db.engine.connect() as conn:
        return current_revision(conn) == head_revision()


@click.command("init-db")
@with_appcontext
def init_db_command() -> None:
    """Create or upgrade the database tables (existing data is kept)."""
    done = upgrade()
    click.echo(f"Database {done}: {db.engine.url.render_as_string(hide_password=True)}")


def init_app(app: Flask) -> None:
    from . import models  # noqa: F401  (register the tables)

    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        options = app.config["SQLALCHEMY_ENGINE_OPTIONS"]
        options["connect_args"] = {"factory": CooperativeConnection, **options.get("connect_args", {})}
    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS), render_as_batch=True)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            busy_ms = int(float(app.config["SQLITE_BUSY_SECONDS"]) * 1000)
            event.listen(db.engine, "connect", _sqlite_pragmas(busy_ms))
        # The schema sets itself up on first start (``flask db upgrade`` does it explicitly).
        prepare()
    app.cli.add_command(init_db_command)
