"""Search: conversations by title and by the text of the messages they show.

- SQLite: FTS5 tables ``messages_fts`` (the text of shown messages once written, with their
  owner) and ``conversations_fts`` (titles, with their owner), kept in step by triggers, and
  filled from the messages already saved;
- PostgreSQL: a text search configuration ``chatbot_search`` ('simple', with unaccent where the
  server has it) and expression GIN indexes on ``messages.content`` (shown, written messages)
  and ``conversations.title``.

The same statements as ``chatbot.models`` (the start-up path of a new database); this copy is
frozen here on purpose, and tests/test_migrations.py checks that both end the same. A later
migration that rebuilds ``messages`` or ``conversations`` on SQLite (batch mode) drops their
triggers and must create them again.

Revision ID: 0005_search
Revises: 0004_message_versions
Create Date: 2026-11-30
"""

from alembic import op
from sqlalchemy.exc import DBAPIError

revision = "0005_search"
down_revision = "0004_message_versions"
branch_labels = None
depends_on = None

SEARCHABLE = "{row}.shown AND {row}.status NOT IN ('streaming', 'stopping') AND {row}.content <> ''"

SQLITE = (
    "CREATE VIRTUAL TABLE messages_fts USING fts5(content, owner_key,"
    " tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3')",
    "CREATE VIRTUAL TABLE conversations_fts USING fts5(title, owner_key,"
    " tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3')",
    f"""CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages
WHEN {SEARCHABLE.format(row="new")}
BEGIN
  INSERT INTO messages_fts (rowid, content, owner_key)
  SELECT new.id, new.content, hex(owner) FROM conversations WHERE id = new.conversation_id;
END""",
    f"""CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, shown, status ON messages
WHEN ({SEARCHABLE.format(row="old")}) OR ({SEARCHABLE.format(row="new")})
BEGIN
  DELETE FROM messages_fts WHERE rowid = old.id;
  INSERT INTO messages_fts (rowid, content, owner_key)
  SELECT new.id, new.content, hex(owner) FROM conversations
  WHERE id = new.conversation_id AND {SEARCHABLE.format(row="new")};
END""",
    """CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
BEGIN
  DELETE FROM messages_fts WHERE rowid = old.id;
END""",
    """CREATE TRIGGER conversations_fts_insert AFTER INSERT ON conversations
BEGIN
  INSERT INTO conversations_fts (rowid, title, owner_key) VALUES (new.id, new.title, hex(new.owner));
END""",
    """CREATE TRIGGER conversations_fts_update AFTER UPDATE OF title ON conversations
WHEN old.title IS NOT new.title
BEGIN
  DELETE FROM conversations_fts WHERE rowid = old.id;
  INSERT INTO conversations_fts (rowid, title, owner_key) VALUES (new.id, new.title, hex(new.owner));
END""",
    """CREATE TRIGGER conversations_fts_delete AFTER DELETE ON conversations
BEGIN
  DELETE FROM conversations_fts WHERE rowid = old.id;
END""",
    # what is already saved
    "INSERT INTO conversations_fts (rowid, title, owner_key) SELECT id, title, hex(owner) FROM conversations",
    "INSERT INTO messages_fts (rowid, content, owner_key)"
    " SELECT m.id, m.content, hex(c.owner) FROM messages AS m"
    " JOIN conversations AS c ON c.id = m.conversation_id"
    f" WHERE {SEARCHABLE.format(row='m')}",
)

CONFIG = "chatbot_search"
# ('<' and '>' become spaces: PostgreSQL's parser would drop "<anything>" as an HTML tag)
MESSAGE_DOCUMENT = f"to_tsvector('{CONFIG}', translate(content, '<>', '  '))"
TITLE_DOCUMENT = f"to_tsvector('{CONFIG}', translate(title, '<>', '  '))"
POSTGRESQL = (
    f"CREATE TEXT SEARCH CONFIGURATION {CONFIG} (COPY = pg_catalog.simple)",
    f"CREATE INDEX ix_messages_search ON messages USING gin ({MESSAGE_DOCUMENT})"
    " WHERE shown AND status NOT IN ('streaming', 'stopping')",
    f"CREATE INDEX ix_conversations_search ON conversations USING gin ({TITLE_DOCUMENT})",
)
UNACCENT = (
    f"ALTER TEXT SEARCH CONFIGURATION {CONFIG}"
    " ALTER MAPPING FOR word, hword, hword_part WITH unaccent, simple"
)


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        for statement in SQLITE:
            op.execute(statement)
    elif conn.dialect.name == "postgresql":
        try:  # trusted since PostgreSQL 13: a database owner may create it
            with conn.begin_nested():
                conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS unaccent")
            unaccent = True
        except DBAPIError:  # not on this server, or not ours to create: search folds case only
            unaccent = False
        op.execute(POSTGRESQL[0])
        if unaccent:
            op.execute(UNACCENT)
        for statement in POSTGRESQL[1:]:
            op.execute(statement)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        for table in ("messages", "conversations"):
            for trigger in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_fts_{trigger}")
            op.execute(f"DROP TABLE IF EXISTS {table}_fts")
    elif conn.dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_conversations_search")
        op.execute("DROP INDEX IF EXISTS ix_messages_search")
        op.execute(f"DROP TEXT SEARCH CONFIGURATION IF EXISTS {CONFIG}")
