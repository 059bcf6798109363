"""A conversation's own writes: its title, and removing conversations (CLI now, views later)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select

from ..extensions import db, rowcount
from ..models import Conversation, Message

TITLE_CHARS = 60


def title_from(text: str) -> str:
    """The first message on one line, cut at a word near ``TITLE_CHARS``."""
    line = " ".join(text.split())
    if len(line) <= TITLE_CHARS:
        return line
    cut = line[:TITLE_CHARS].rsplit(" ", 1)[0] or line[:TITLE_CHARS]
    return cut.rstrip(" ,.;:") + "…"


def delete_conversations(ids: Sequence[int]) -> tuple[int, int]:
    """Remove these conversations and their messages; returns (conversations, messages)."""
    if not ids:
        return 0, 0
    n_messages = db.session.execute(
        select(func.count(Message.id)).where(Message.conversation_id.in_(ids))
    ).scalar_one()
    # Messages go first explicitly: not every database enforces ON DELETE CASCADE.
    db.session.execute(delete(Message).where(Message.conversation_id.in_(ids)))
    n = rowcount(db.session.execute(delete(Conversation).where(Conversation.id.in_(ids))))
    db.session.commit()
    return n, n_messages
