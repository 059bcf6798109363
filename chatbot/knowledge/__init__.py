"""The shop's own knowledge: help articles, their index, retrieval and the public help pages.

``articles.py`` reads the Markdown files, ``index.py`` builds the database index from them (at
start when the files changed, or ``flask articles index``), ``retrieve.py`` finds the passages for
a question, ``grounding.py`` gives them to the model and reads its citations, and ``views.py``
serves each article at ``/help/<slug>``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask

from . import articles, index

log = logging.getLogger(__name__)


def source(app: Flask) -> Path:
    """The articles folder this app indexes."""
    return articles.folder(app.config.get("ARTICLES_FOLDER"), app.instance_path)


def ensure_index(app: Flask) -> None:
    """At start: rebuild the index if the articles changed since it was built (one process at a
    time). A broken article is logged and the index kept as it was: the chat still starts."""
    from ..database import _schema_lock

    with app.app_context(), _schema_lock():
        try:
            index.rebuild(source(app))
        except (articles.ArticleError, OSError) as exc:
            log.error("help articles not indexed (the previous index is kept): %s", exc)


def init_app(app: Flask) -> None:
    from . import cli, views

    app.register_blueprint(views.bp)
    app.cli.add_command(cli.articles_cli)
    app.cli.add_command(cli.assistant_cli)
    if app.config["ARTICLES_INDEX_AT_START"]:
        ensure_index(app)
