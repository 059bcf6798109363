"""The saved history: conversations, their messages, and the server-side session rows."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    case,
    event,
    false,
    or_,
    true,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.ext.mutable import MutableDict
from sqlalchemy.orm import Mapped, column_property, mapped_column, relationship
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from .extensions import db

DEFAULT_TITLE = "New conversation"


class Status(StrEnum):
    """What a message is: the one vocabulary of a reply's life (a CHECK constraint holds it)."""

    COMPLETE = "complete"
    STREAMING = "streaming"  # a turn is writing it
    STOPPING = "stopping"  # stop was asked; the turn has not seen it yet (still live)
    ERROR = "error"  # the model call failed before any text
    INTERRUPTED = "interrupted"  # stopped, cut off, or its turn died


LIVE = (Status.STREAMING.value, Status.STOPPING.value)


class Outcome(StrEnum):
    """How a conversation ended. Only RESOLVED (the customer said so) counts as resolved."""

    RESOLVED = "resolved"  # "did this solve it?" -> yes
    UNRESOLVED = "unresolved"  # -> no
    ESCALATED = "escalated"  # asked for a person (the button, or in words)
    ABANDONED = "abandoned"  # no answer for a while (chat/outcomes.py's sweep)


RETRYABLE = (Status.ERROR.value, Status.INTERRUPTED.value)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_public_id() -> str:
    """A random, unguessable id for URLs (72 bits)."""
    return secrets.token_urlsafe(9)


class db_clock(FunctionElement[float]):
    """The database's own clock in seconds since the epoch.

    Leases are written and compared with this, never with a host's clock: two hosts whose clocks
    disagree still agree on whether a reply's lease has run out.
    """

    type = Float()
    inherit_cache = True


@compiles(db_clock, "sqlite")
def _sqlite_clock(element: db_clock, compiler: SQLCompiler, **kw: Any) -> str:
    return "((julianday('now') - 2440587.5) * 86400.0)"


@compiles(db_clock)
def _clock(element: db_clock, compiler: SQLCompiler, **kw: Any) -> str:
    return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"


def _col(attribute: Any) -> Any:
    """The Core column of a mapped attribute, in its class body (for indexes and expressions)."""
    return attribute.column


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime: use timezone-aware UTC")
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Conversation(db.Model):  # type: ignore[name-defined]
    __tablename__ = "conversations"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    title: Mapped[str] = mapped_column(String(200), default=DEFAULT_TITLE)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # How it ended (chat/outcomes.py): None while open, else one of ``Outcome``
    outcome: Mapped[str | None] = mapped_column(String(16))
    outcome_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        # the open ones, for the abandoned sweep: it reads only these (not every conversation
        # ever held, which on SQLite it would scan under the write lock each minute)
        Index(
            "ix_conversations_open",
            "updated_at",
            sqlite_where=_col(outcome).is_(None),
            postgresql_where=_col(outcome).is_(None),
        ),
    )

    messages: Mapped[list[Message]] = relationship(
        back_populates="conversation",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Message.id",
        lazy="raise_on_sql",
    )

    def __repr__(self) -> str:
        return f"<Conversation {self.public_id} {self.title!r}>"


class Message(db.Model):  # type: ignore[name-defined]
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    content: Mapped[str] = mapped_column(Text, default="")
    is_user: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(16), default=Status.COMPLETE.value)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The fence: which attempt at this reply may write it. A retry takes the next number, and
    # every write of a turn names its own, so a turn that lost its reply can never overwrite it.
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # While live: until when (database clock, epoch seconds) the writing turn holds the reply. A
    # turn renews it every tick; a reply whose lease ran out has nobody writing it any more.
    lease_until: Mapped[float | None] = mapped_column(Float)
    # While live: which process writes it (``chat/holder.py``), so a restarted server on the same
    # machine knows at once that its killed predecessor's replies are cut short.
    lease_holder: Mapped[str | None] = mapped_column(String(120))
    # The tree (regenerate and edit keep earlier versions): the message this one follows, and
    # whether it is on the path the conversation shows (and the model reads). Versions of a
    # message share its parent; a path is in id order, as a message is written after its parent.
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE", name="fk_messages_parent_id_messages")
    )
    shown: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # "metadata" is reserved on declarative classes, so the attribute is ``meta``.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", MutableDict.as_mutable(JSON), default=dict)

    conversation: Mapped[Conversation] = relationship(back_populates="messages", lazy="raise_on_sql")

    __table_args__ = (
        Index("ix_messages_conversation_order", "conversation_id", "id"),
        Index("ix_messages_parent", "parent_id", "conversation_id"),  # versions; the foreign key
        # One live reply per conversation, across processes and hosts: a second turn started
        # while one is running is refused by the database itself.
        Index(
            "uq_messages_one_live_reply",
            "conversation_id",
            unique=True,
            sqlite_where=_col(status).in_(LIVE),
            postgresql_where=_col(status).in_(LIVE),
        ),
        CheckConstraint(_col(status).in_([s.value for s in Status]), name="ck_messages_status"),
    )

    # Read with every message: a live reply whose lease ran out (by the database's clock).
    lease_expired: Mapped[bool] = column_property(
        case(
            (_col(status).in_(LIVE), or_(_col(lease_until).is_(None), _col(lease_until) < db_clock())),
            else_=false(),
        )
    )

    @property
    def role(self) -> str:
        return "user" if self.is_user else "assistant"

    def __repr__(self) -> str:
        return f"<Message {self.id} {self.role} {self.status}>"


@dataclass(frozen=True, slots=True)
class ConversationRef:
    """What a turn knows of its conversation (the turn writes with Core, not the ORM)."""

    id: int
    public_id: str
    title: str


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """A message as a turn wrote it: rendered by the same templates as a ``Message`` row."""

    id: int
    conversation_id: int
    content: str
    is_user: bool
    status: str
    timestamp: datetime
    meta: dict[str, Any] = field(default_factory=dict)
    lease_expired: bool = False
    parent_id: int | None = None

    @property
    def role(self) -> str:
        return "user" if self.is_user else "assistant"


class SessionRecord(db.Model):  # type: ignore[name-defined]
    """Flask-Session's row layout, declared once here (see ``sessions.py``)."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str] = mapped_column(String(255), unique=True)
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    expiry: Mapped[datetime | None] = mapped_column(DateTime)  # naive UTC, as Flask-Session compares

    def __init__(self, session_id: str, data: bytes, expiry: datetime):
        self.session_id = session_id
        self.data = data
        self.expiry = expiry


# --- search (chat/search.py): what the models can't declare -----------------------------------
#
# SQLite: two FTS5 tables, kept in step by triggers. ``messages_fts`` holds the text of the
# messages a conversation shows (``shown``) once they are written (not while a reply streams:
# its ticks rewrite ``content`` every half second, and the triggers' WHEN clauses leave those
# updates alone; the final save indexes the reply once). ``conversations_fts`` holds titles.
# Each row also carries its owner (hex, one token), so a search reads one owner's postings only.
# The FTS tables keep their own copy of the text (not ``content=``): a delete then needs only
# the rowid, so a row can never be left behind by a delete that names the wrong old values.
#
# PostgreSQL: expression GIN indexes on the same rows, in a text search configuration of our
# own: 'simple' (no stemming, no stop words: customers write English and Spanish, often in one
# conversation) with unaccent first where the server has it, so "bateria" finds "batería" on
# both databases.
#
# Both start-up paths make the same objects: ``create_all`` through the hook below, an older
# database through migration 0005 (its own copy of these statements; tests/test_migrations.py
# compares the two). A migration that rebuilds ``messages`` or ``conversations`` on SQLite
# (batch mode) drops their triggers: it must create them again.

SEARCH_CONFIG = "chatbot_search"
# SQLite (each with its shadow tables); the help articles' own is declared below
SEARCH_TABLES = ("messages_fts", "conversations_fts", "help_passages_fts")
SEARCH_INDEXES = ("ix_messages_search", "ix_conversations_search", "ix_help_passages_search")  # PostgreSQL

# a message the search finds: on the shown path, written (a streaming reply is indexed when it ends)
_SEARCHABLE = "{row}.shown AND {row}.status NOT IN ('streaming', 'stopping') AND {row}.content <> ''"

SQLITE_SEARCH_DDL = (
    "CREATE VIRTUAL TABLE messages_fts USING fts5(content, owner_key,"
    " tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3')",
    "CREATE VIRTUAL TABLE conversations_fts USING fts5(title, owner_key,"
    " tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3')",
    f"""CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages
WHEN {_SEARCHABLE.format(row="new")}
BEGIN
  INSERT INTO messages_fts (rowid, content, owner_key)
  SELECT new.id, new.content, hex(owner) FROM conversations WHERE id = new.conversation_id;
END""",
    f"""CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, shown, status ON messages
WHEN ({_SEARCHABLE.format(row="old")}) OR ({_SEARCHABLE.format(row="new")})
BEGIN
  DELETE FROM messages_fts WHERE rowid = old.id;
  INSERT INTO messages_fts (rowid, content, owner_key)
  SELECT new.id, new.content, hex(owner) FROM conversations
  WHERE id = new.conversation_id AND {_SEARCHABLE.format(row="new")};
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
)


def search_document(column: str) -> str:
    """PostgreSQL: the text search document of a column, as the indexes have it (queries must
    say the same to use them). '<' and '>' become spaces: the parser would otherwise drop
    "<anything>" as an HTML tag, and all that follows a "<script>"."""
    return f"to_tsvector('{SEARCH_CONFIG}', translate({column}, '<>', '  '))"


POSTGRESQL_SEARCH_DDL = (
    f"CREATE TEXT SEARCH CONFIGURATION {SEARCH_CONFIG} (COPY = pg_catalog.simple)",
    f"CREATE INDEX ix_messages_search ON messages USING gin ({search_document('content')})"
    " WHERE shown AND status NOT IN ('streaming', 'stopping')",
    f"CREATE INDEX ix_conversations_search ON conversations USING gin ({search_document('title')})",
)
# (word types that may hold letters with accents: unaccent first, then 'simple' lowercases)
POSTGRESQL_UNACCENT = (
    f"ALTER TEXT SEARCH CONFIGURATION {SEARCH_CONFIG}"
    " ALTER MAPPING FOR word, hword, hword_part WITH unaccent, simple"
)


def search_object(name: str | None) -> bool:
    """Whether a database object belongs to the search (not declared in the models, so schema
    comparisons leave it to their own check)."""
    if not name:
        return False
    return name in SEARCH_INDEXES or any(name == t or name.startswith(t + "_") for t in SEARCH_TABLES)


def _unaccent(conn: Connection) -> bool:
    """Make the unaccent extension available (trusted since PostgreSQL 13: a database owner may);
    False where the server lacks it or we may not (the search then folds case only)."""
    try:
        with conn.begin_nested():
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS unaccent")
        return True
    except DBAPIError:  # not installed on the server, or not ours to create: search still works
        return False


def create_search(conn: Connection) -> None:
    """The search's tables, triggers, configuration and indexes, on a database whose tables were
    just created from the models."""
    if conn.dialect.name == "sqlite":
        for statement in SQLITE_SEARCH_DDL:
            conn.exec_driver_sql(statement)
    elif conn.dialect.name == "postgresql":
        unaccent = _unaccent(conn)
        conn.exec_driver_sql(POSTGRESQL_SEARCH_DDL[0])
        if unaccent:
            conn.exec_driver_sql(POSTGRESQL_UNACCENT)
        for statement in POSTGRESQL_SEARCH_DDL[1:]:
            conn.exec_driver_sql(statement)


def drop_search(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        for table in SEARCH_TABLES:
            base = table.removesuffix("_fts")
            for trigger in ("insert", "update", "delete"):
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {base}_fts_{trigger}")
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    elif conn.dialect.name == "postgresql":  # (its indexes go with it)
        conn.exec_driver_sql(f"DROP TEXT SEARCH CONFIGURATION IF EXISTS {SEARCH_CONFIG} CASCADE")


@event.listens_for(Message.__table__, "after_create")
def _after_create(target: Any, connection: Connection, **kw: Any) -> None:
    create_search(connection)


@event.listens_for(Message.__table__, "before_drop")
def _before_drop(target: Any, connection: Connection, **kw: Any) -> None:
    drop_search(connection)


# --- the shop's help articles (knowledge/): rebuilt from their files, never edited in place ---


class HelpArticle(db.Model):  # type: ignore[name-defined]
    __tablename__ = "help_articles"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    lang: Mapped[str] = mapped_column(String(8))
    topic: Mapped[str] = mapped_column(String(80))
    tags: Mapped[str] = mapped_column(Text, default="")  # comma-separated
    body: Mapped[str] = mapped_column(Text)


class HelpPassage(db.Model):  # type: ignore[name-defined]
    """A section of an article, with its search terms (``knowledge/terms.py``): ``head`` (the
    article's title and tags, the section's heading) and ``body`` (its text)."""

    __tablename__ = "help_passages"

    id: Mapped[int] = mapped_column(primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("help_articles.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    heading: Mapped[str] = mapped_column(String(200), default="")
    text: Mapped[str] = mapped_column(Text)
    head_terms: Mapped[str] = mapped_column(Text, default="")
    body_terms: Mapped[str] = mapped_column(Text, default="")


class HelpIndex(db.Model):  # type: ignore[name-defined]
    """One row: what the index was built from (the folder's fingerprint) and when."""

    __tablename__ = "help_index"

    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(Text)
    articles: Mapped[int] = mapped_column(Integer)
    passages: Mapped[int] = mapped_column(Integer)
    indexed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# SQLite: an FTS5 table over the passages' terms (the terms are already folded and stemmed: the
# tokenizer only splits them); the indexer fills it with the passages. PostgreSQL: a GIN index on
# the same terms, weighted A (head) and B (body), in the 'simple' configuration.
HELP_SQLITE_DDL = ("CREATE VIRTUAL TABLE help_passages_fts USING fts5(head, body, tokenize = 'unicode61')",)
HELP_DOCUMENT = (
    "(setweight(to_tsvector('simple', head_terms), 'A') || setweight(to_tsvector('simple', body_terms), 'B'))"
)
HELP_POSTGRESQL_DDL = (f"CREATE INDEX ix_help_passages_search ON help_passages USING gin ({HELP_DOCUMENT})",)


def create_help_search(conn: Connection) -> None:
    statements = {"sqlite": HELP_SQLITE_DDL, "postgresql": HELP_POSTGRESQL_DDL}.get(conn.dialect.name, ())
    for statement in statements:
        conn.exec_driver_sql(statement)


def drop_help_search(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("DROP TABLE IF EXISTS help_passages_fts")


@event.listens_for(HelpPassage.__table__, "after_create")
def _help_after_create(target: Any, connection: Connection, **kw: Any) -> None:
    create_help_search(connection)


@event.listens_for(HelpPassage.__table__, "before_drop")
def _help_before_drop(target: Any, connection: Connection, **kw: Any) -> None:
    drop_help_search(connection)


# --- the shop's admin area (admin/): its accounts, their sessions and what they did ------------


class AdminUser(db.Model):  # type: ignore[name-defined]
    """An operator who may sign in at ``/admin`` (made with ``flask admin create-user``).

    ``failed_logins`` counts wrong passwords in a row and ``locked_until`` is set when they reach
    the limit: both live here, in the database, so every worker and host agrees on a lockout."""

    __tablename__ = "admin_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AdminSession(db.Model):  # type: ignore[name-defined]
    """A signed-in admin browser. The cookie holds a random token; only its SHA-256 is kept here
    (a copy of this table signs nobody in). A row ends at logout, when its password changes, at
    ``expires_at`` (absolute) and after ``ADMIN_IDLE_MINUTES`` without a request (``seen_at``)."""

    __tablename__ = "admin_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("admin_users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AdminAudit(db.Model):  # type: ignore[name-defined]
    """One thing done in (or to) the admin area: who (NULL for a failed login by an unknown
    name, or the command line), what, its details and from which address."""

    __tablename__ = "admin_audit"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    admin_name: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(40))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    remote_addr: Mapped[str | None] = mapped_column(String(64))
