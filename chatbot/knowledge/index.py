"""Building the articles' index in the database, and keeping it in step with the files.

The index is rebuilt whole, in one transaction (readers see the old one until it commits): the
articles, their passages with search terms, the search table (SQLite FTS5; on PostgreSQL the GIN
index follows the rows) and the folder's fingerprint. At start the app compares the fingerprint
with the folder's and rebuilds only when they differ; ``flask articles index`` rebuilds on demand.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, delete, insert, select, text

from ..extensions import db
from ..models import HelpArticle, HelpIndex, HelpPassage, utcnow
from . import articles as files
from . import retrieve
from .terms import stems

log = logging.getLogger(__name__)

_LOCK = 724717  # PostgreSQL: one indexer at a time (hosts sharing a database)


@dataclass(frozen=True, slots=True)
class Built:
    source: str
    articles: int
    passages: int
    changed: bool  # False: the index already matched the folder


def head_terms(article: files.Article, heading: str) -> str:
    return " ".join(stems(" ".join([article.title, heading, " ".join(article.tags)])))


def current(conn: Connection) -> tuple[str, str] | None:
    """(fingerprint, source) of the index as built, or None if it never was."""
    row = conn.execute(select(HelpIndex.fingerprint, HelpIndex.source).order_by(HelpIndex.id.desc())).first()
    return (row[0], row[1]) if row else None


_Rows = tuple[list[dict[str, object]], list[dict[str, object]]]
_parsed: dict[tuple[str, str], _Rows] = {}


def _rows(where: Path, fingerprint: str) -> _Rows:
    """The rows of the folder's articles and passages (read, cut and stemmed once per process for
    a fingerprint: every test's app, and every worker, indexes the same files)."""
    key = (str(where), fingerprint)
    if key in _parsed:
        return _parsed[key]
    found = files.load(where)
    slugs = [a.slug for a in found]
    if len(set(slugs)) != len(slugs):  # (file names are unique: only a case-folding disk could)
        raise files.ArticleError("two articles have the same address")
    article_rows: list[dict[str, object]] = [
        {
            "id": n,
            "slug": a.slug,
            "title": a.title,
            "lang": a.lang,
            "topic": a.topic,
            "tags": ", ".join(a.tags),
            "body": a.body,
        }
        for n, a in enumerate(found, 1)
    ]
    passage_rows: list[dict[str, object]] = []
    for n, article in enumerate(found, 1):
        for passage in article.passages:
            passage_rows.append(
                {
                    "id": len(passage_rows) + 1,
                    "article_id": n,
                    "position": passage.position,
                    "heading": passage.heading[:200],
                    "text": passage.text,
                    "head_terms": head_terms(article, passage.heading),
                    "body_terms": " ".join(stems(passage.text)),
                }
            )
    if len(_parsed) >= 4:
        _parsed.clear()
    _parsed[key] = (article_rows, passage_rows)
    return article_rows, passage_rows


def build(conn: Connection, where: Path, *, force: bool = False) -> Built:
    """Index the folder's articles (in the caller's transaction); nothing is done when the index
    already matches the folder, unless ``force``. A broken file raises ``ArticleError`` before
    anything is written."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})
    fingerprint = files.fingerprint(where)
    source = str(where)
    if not force and current(conn) == (fingerprint, source):
        counts = conn.execute(
            select(HelpIndex.articles, HelpIndex.passages).order_by(HelpIndex.id.desc())
        ).one()
        return Built(source, counts[0], counts[1], changed=False)
    article_rows, passage_rows = _rows(where, fingerprint)
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("DELETE FROM help_passages_fts")
    conn.execute(delete(HelpPassage))
    conn.execute(delete(HelpArticle))
    conn.execute(delete(HelpIndex))
    sqlite = conn.dialect.name == "sqlite"
    if article_rows:
        conn.execute(insert(HelpArticle), article_rows)
    if passage_rows:
        conn.execute(insert(HelpPassage), passage_rows)
        if sqlite:
            conn.exec_driver_sql(
                "INSERT INTO help_passages_fts (rowid, head, body)"
                " SELECT id, head_terms, body_terms FROM help_passages"
            )
    conn.execute(
        insert(HelpIndex).values(
            fingerprint=fingerprint,
            source=source,
            articles=len(article_rows),
            passages=len(passage_rows),
            indexed_at=utcnow(),
        )
    )
    return Built(source, len(article_rows), len(passage_rows), changed=True)


def rebuild(where: Path, *, force: bool = False) -> Built:
    """``build`` in a transaction of its own."""
    with db.engine.begin() as conn:
        built = build(conn, where, force=force)
    if built.changed:
        retrieve.forget()
        log.info(
            "help articles indexed: %s articles, %s passages from %s", built.articles, built.passages, where
        )
    return built
