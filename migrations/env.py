"""Alembic's environment: runs migrations on the app's database.

Called by ``flask db …`` (Flask-Migrate) or by ``chatbot.database.upgrade``, which hands over the
connection it already holds (and locks) as ``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context
from flask import current_app

from chatbot.extensions import db
from chatbot.models import search_object

config = context.config


def include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    """Everything but the search's tables and indexes: made by statements the models can't
    declare (``chatbot.models``; compared by tests/test_migrations.py on their own)."""
    return not search_object(name)


def run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=db.metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run them on a database")

given = config.attributes.get("connection")
if given is not None:
    run(given)
else:
    with current_app.extensions["migrate"].db.engine.connect() as connection:
        run(connection)
        connection.commit()
