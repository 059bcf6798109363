"""The database: engine settings, the schema, and ``flask init-db``."""

from __future__ import annotations

import fcntl
import os

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy import event, inspect, text

from .extensions import db


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def create_schema() -> None:
    """Create missing tables once, even when several workers start on a fresh database.

    An exclusive lock file in the instance folder makes concurrent starters take turns (two
    gunicorn workers racing on ``create_all`` otherwise kill one another).
    """
    lock_path = os.path.join(current_app.instance_path, ".schema.lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if db.engine.dialect.name == "postgresql":
                # several hosts may share one database: take a database-wide lock as well
                with db.engine.begin() as conn:
                    conn.execute(text("SELECT pg_advisory_xact_lock(724716)"))
                    db.metadata.create_all(conn)
            else:
                db.create_all()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def schema_ready() -> bool:
    names = set(inspect(db.engine).get_table_names())
    return {"conversations", "messages", "sessions"} <= names


@click.command("init-db")
@with_appcontext
def init_db_command() -> None:
    """Create the database tables (existing data is kept)."""
    create_schema()
    click.echo(f"Database ready: {db.engine.url.render_as_string(hide_password=True)}")


def init_app(app: Flask) -> None:
    from . import models  # noqa: F401  (register the tables)

    db.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            event.listen(db.engine, "connect", _sqlite_pragmas)
        # A fresh database gets its tables on first start (``flask init-db`` does it explicitly).
        if not schema_ready():
            create_schema()
    app.cli.add_command(init_db_command)
