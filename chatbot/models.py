"""The saved history: conversations, their messages, and the server-side session rows."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.ext.mutable import MutableDict
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db

DEFAULT_TITLE = "New conversation"
# A reply being written is re-saved (with its text so far) at least this often...
PROGRESS_SECONDS = 1.0
# ...so one not re-saved for this long has no turn behind it any more (worker killed, server
# restarted): it is shown as interrupted and may be retried.
STREAM_LEASE = timedelta(seconds=10)
LIVE = ("streaming", "stopping")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_public_id() -> str:
    """A random, unguessable id for URLs (72 bits)."""
    return secrets.token_urlsafe(9)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime: use timezone-aware UTC")
            value = value.astimezone(timezone.utc)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class Conversation(db.Model):
    __tablename__ = "conversations"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    title: Mapped[str] = mapped_column(String(200), default=DEFAULT_TITLE)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    messages: Mapped[list["Message"]] = relationship(
        back_populates="conversation",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Message.id",
        lazy="raise_on_sql",
    )

    def __repr__(self) -> str:
        return f"<Conversation {self.public_id} {self.title!r}>"


class Message(db.Model):
    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_conversation_order", "conversation_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    content: Mapped[str] = mapped_column(Text, default="")
    is_user: Mapped[bool] = mapped_column(Boolean)
    # complete | streaming | stopping (stop asked, not yet seen) | error | interrupted
    status: Mapped[str] = mapped_column(String(16), default="complete")
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Last time the row was written; a live reply's heartbeat (see STREAM_LEASE).
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=utcnow)
    # "metadata" is reserved on declarative classes, so the attribute is ``meta``.
    meta: Mapped[dict] = mapped_column("metadata", MutableDict.as_mutable(JSON), default=dict)

    conversation: Mapped[Conversation] = relationship(back_populates="messages", lazy="raise_on_sql")

    @property
    def role(self) -> str:
        return "user" if self.is_user else "assistant"

    @property
    def shown_status(self) -> str:
        """The status a reader should see: a live reply whose lease ran out is "stale"."""
        if self.status in LIVE:
            written = self.updated_at or self.timestamp
            return "stale" if utcnow() - written > STREAM_LEASE else "streaming"
        return self.status

    def __repr__(self) -> str:
        return f"<Message {self.id} {self.role} {self.status}>"


class SessionRecord(db.Model):
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
