"""Reads: conversations and pages of their messages. Nothing here writes."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import ColumnElement, and_, false, func, or_, select

from ..extensions import db
from ..models import Conversation, Message

_PUBLIC_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


def find_conversation(owner: str | None, public_id: str | None) -> Conversation | None:
    """The owner's conversation with this public id, or None (also for anyone else's, and for an
    id that can't be one: never a query with a NUL or a megabyte in it)."""
    if not public_id or not owner or not _PUBLIC_ID.fullmatch(public_id):
        return None
    return db.session.execute(
        select(Conversation).where(Conversation.public_id == public_id, Conversation.owner == owner)
    ).scalar_one_or_none()


def message_in(conversation: Conversation, message_id: int) -> Message | None:
    """One message of this conversation, or None."""
    return db.session.execute(
        select(Message).where(Message.id == message_id, Message.conversation_id == conversation.id)
    ).scalar_one_or_none()


def message_by_id(message_id: int) -> Message | None:
    return db.session.execute(select(Message).where(Message.id == message_id)).scalar_one_or_none()


def latest_message(conversation_id: int) -> Message | None:
    """The last message of the path the conversation shows."""
    return db.session.execute(
        select(Message)
        .where(Message.conversation_id == conversation_id, Message.shown)
        .order_by(Message.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def last_message_id(conversation: Conversation) -> int | None:
    return db.session.execute(
        select(Message.id)
        .where(Message.conversation_id == conversation.id, Message.shown)
        .order_by(Message.id.desc())
        .limit(1)
    ).scalar()


def messages_of(
    conversation: Conversation, before_id: int | None = None, limit: int = 50
) -> tuple[list[Message], bool]:
    """Up to ``limit`` messages of the shown path (before ``before_id``), oldest first, and
    whether older exist.

    A page shows the newest part of a conversation and loads the rest on demand, so a
    conversation of thousands of messages opens as fast as a short one.
    """
    query = select(Message).where(Message.conversation_id == conversation.id, Message.shown)
    if before_id is not None:
        query = query.where(Message.id < before_id)
    rows = list(db.session.execute(query.order_by(Message.id.desc()).limit(limit + 1)).scalars())
    has_more = len(rows) > limit
    rows = rows[:limit]
    rows.reverse()
    return rows, has_more


def messages_since(
    conversation: Conversation, since_id: int, limit: int = 5000
) -> tuple[list[Message], bool]:
    """The shown messages from ``since_id`` on (at most ``limit``, the newest), oldest first, and
    whether older exist: the list as a page that loaded earlier messages has it."""
    query = select(Message).where(
        Message.conversation_id == conversation.id, Message.shown, Message.id >= since_id
    )
    rows = list(db.session.execute(query.order_by(Message.id.desc()).limit(limit)).scalars())
    rows.reverse()
    first = rows[0].id if rows else since_id
    older = db.session.execute(
        select(Message.id)
        .where(Message.conversation_id == conversation.id, Message.shown, Message.id < first)
        .limit(1)
    ).scalar()
    return rows, older is not None


def conversation_page(
    owner: str | None, after: tuple[datetime, int] | None = None, limit: int = 50
) -> tuple[list[Conversation], tuple[datetime, int] | None]:
    """The owner's conversations, most recently updated first, ``limit`` at a time; ``after``
    (updated_at, id) of the last one already listed. Returns the page and the next page's
    ``after`` (None at the end)."""
    if not owner:
        return [], None
    query = select(Conversation).where(Conversation.owner == owner)
    if after is not None:
        updated_at, cid = after
        query = query.where(
            or_(
                Conversation.updated_at < updated_at,
                and_(Conversation.updated_at == updated_at, Conversation.id < cid),
            )
        )
    rows = list(
        db.session.execute(
            query.order_by(Conversation.updated_at.desc(), Conversation.id.desc()).limit(limit + 1)
        ).scalars()
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, ((rows[-1].updated_at, rows[-1].id) if more else None)


def conversations_with_counts(updated_before: datetime | None = None) -> list[tuple[Conversation, int]]:
    """Every conversation with its number of messages, most recently updated first."""
    counts = (
        select(Message.conversation_id, func.count(Message.id).label("n"))
        .group_by(Message.conversation_id)
        .subquery()
    )
    query = (
        select(Conversation, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.conversation_id == Conversation.id)
        .order_by(Conversation.updated_at.desc())
    )
    if updated_before is not None:
        query = query.where(Conversation.updated_at < updated_before)
    return [(row[0], row[1]) for row in db.session.execute(query)]


@dataclass(frozen=True, slots=True)
class Versions:
    """Where a message stands among its versions (the messages that share its parent)."""

    number: int  # 1-based
    count: int
    previous: int | None
    next: int | None


class _Placed(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def parent_id(self) -> int | None: ...


def versions_of(conversation_id: int, messages: Iterable[_Placed]) -> dict[int, Versions]:
    """For each of ``messages`` that has other versions: which one it is, of how many. One
    query for a whole page (its messages' siblings), so a page costs the same however many
    versions the conversation holds elsewhere."""
    placed = list(messages)
    parents = {m.parent_id for m in placed if m.parent_id is not None}
    # (by parent, through ix_messages_parent: never a scan of a long conversation)
    level: ColumnElement[bool] = Message.parent_id.in_(parents) if parents else false()
    if any(m.parent_id is None for m in placed):
        level = or_(level, and_(Message.parent_id.is_(None), Message.conversation_id == conversation_id))
    rows = db.session.execute(select(Message.id, Message.parent_id).where(level).order_by(Message.id)).all()
    siblings: dict[int | None, list[int]] = {}
    for message_id, parent_id in rows:
        siblings.setdefault(parent_id, []).append(message_id)
    found: dict[int, Versions] = {}
    for m in placed:
        group = siblings.get(m.parent_id, [])
        if len(group) > 1 and m.id in group:
            i = group.index(m.id)
            found[m.id] = Versions(
                i + 1,
                len(group),
                group[i - 1] if i > 0 else None,
                group[i + 1] if i + 1 < len(group) else None,
            )
    return found
