"""A conversation's own writes: its title, and removing conversations (the CLI and the sidebar)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from flask import current_app
from sqlalchemy import delete, func, select

from ..extensions import db, rowcount
from ..i18n import _
from ..models import LIVE, Conversation, Message
from .live import live_replies
from .replies import STOPPED

_INVISIBLE = re.compile(r"[\x00-\x1f\x7f\u200b\u202a-\u202e\u2066-\u2069\ufeff]")

TITLE_CHARS = 60


def one_line(text: str) -> str:
    """Text as a title shows it: one line, trimmed, without control, zero-width or bidi
    characters (a title such as "\u202egnp.exe" would read "exe.png")."""
    return " ".join(_INVISIBLE.sub("", text).split())


def title_from(text: str) -> str:
    """The first message on one line, cut at a word near ``TITLE_CHARS``."""
    line = one_line(text)
    if len(line) <= TITLE_CHARS:
        return line
    cut = line[:TITLE_CHARS].rsplit(" ", 1)[0] or line[:TITLE_CHARS]
    return cut.rstrip(" ,.;:") + "…"


def rename(conversation: Conversation, title: str) -> str:
    """A title the customer chose: one line, trimmed, at most TITLE_CHARS * 2 characters; an
    empty one is refused (ValueError)."""
    line = one_line(title)
    if not line:
        raise ValueError(_("Please give the conversation a name."))
    if len(line) > TITLE_CHARS * 2:
        raise ValueError(_("A name can be up to %(limit)s characters.", limit=TITLE_CHARS * 2))
    conversation.title = line
    db.session.commit()
    return line


def delete_conversations(ids: Sequence[int]) -> tuple[int, int]:
    """Remove these conversations and their messages; returns (conversations, messages). A reply
    still being written in one of them is stopped first (its model call cancelled here at once;
    in another process its next tick finds the reply gone and cancels it)."""
    if not ids:
        return 0, 0
    live = db.session.execute(
        select(Message.id).where(Message.conversation_id.in_(ids), Message.status.in_(LIVE))
    ).scalars()
    registry = live_replies(current_app)
    for reply_id in live:
        registry.cancel(reply_id, STOPPED)
    n_messages = db.session.execute(
        select(func.count(Message.id)).where(Message.conversation_id.in_(ids))
    ).scalar_one()
    # Messages go first explicitly: not every database enforces ON DELETE CASCADE.
    db.session.execute(delete(Message).where(Message.conversation_id.in_(ids)))
    n = rowcount(db.session.execute(delete(Conversation).where(Conversation.id.in_(ids))))
    db.session.commit()
    return n, n_messages
