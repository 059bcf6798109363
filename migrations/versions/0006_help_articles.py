"""The shop's help articles, cut into passages and indexed for retrieval.

- ``help_articles``: each article (its address, title, language, topic, tags, Markdown);
- ``help_passages``: its sections, with their search terms (folded and stemmed by the app);
- ``help_index``: what the index was built from (the articles folder's fingerprint), so the app
  rebuilds it at start when the files changed;
- search: on SQLite an FTS5 table ``help_passages_fts`` (filled by the indexer), on PostgreSQL a
  GIN index over the passages' terms.

The tables start empty: the app indexes the articles on its next start.

Revision ID: 0006_help_articles
Revises: 0005_search
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_help_articles"
down_revision = "0005_search"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)
DOCUMENT = (
    "(setweight(to_tsvector('simple', head_terms), 'A') || setweight(to_tsvector('simple', body_terms), 'B'))"
)


def upgrade() -> None:
    op.create_table(
        "help_articles",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("slug", sa.String(100), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("lang", sa.String(8), nullable=False),
        sa.Column("topic", sa.String(80), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.UniqueConstraint("slug"),
    )
    op.create_table(
        "help_passages",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "article_id", sa.Integer(), sa.ForeignKey("help_articles.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("heading", sa.String(200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("head_terms", sa.Text(), nullable=False),
        sa.Column("body_terms", sa.Text(), nullable=False),
    )
    op.create_index("ix_help_passages_article_id", "help_passages", ["article_id"])
    op.create_table(
        "help_index",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("articles", sa.Integer(), nullable=False),
        sa.Column("passages", sa.Integer(), nullable=False),
        sa.Column("indexed_at", UTC_TIME, nullable=False),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute("CREATE VIRTUAL TABLE help_passages_fts USING fts5(head, body, tokenize = 'unicode61')")
    elif dialect == "postgresql":
        op.execute(f"CREATE INDEX ix_help_passages_search ON help_passages USING gin ({DOCUMENT})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS help_passages_fts")
    op.drop_table("help_index")
    op.drop_table("help_passages")
    op.drop_table("help_articles")
