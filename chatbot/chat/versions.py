"""Switching between a message's versions (regenerate and edit keep the earlier ones).

Messages form a tree: versions of a message share its parent. The path a conversation shows
(and the model reads) is marked ``shown``; switching to another version sets aside the shown
path from the current version on, and shows the other version with the newest conversation that
followed it. One transaction that writes first (so two switches, or a switch and a message, take
turns and each reads what the other wrote), refused while a reply is being written; a few
statements whatever the length of the conversation.
"""

from __future__ import annotations

from sqlalchemy import select, text, update

from ..extensions import db
from ..i18n import _
from ..models import LIVE, Conversation, Message
from . import replies
from .begin import BUSY, STALE, TurnRefused

_m = Message

# Down from the chosen version, the newest continuation at each step (a recursive query: one
# statement for a path of any length).
_SHOW_PATH = text(
    """
    WITH RECURSIVE path(id) AS (
        SELECT CAST(:target AS INTEGER)
        UNION ALL
        SELECT (SELECT MAX(child.id) FROM messages AS child WHERE child.parent_id = path.id)
        FROM path WHERE path.id IS NOT NULL
    )
    UPDATE messages SET shown = TRUE WHERE id IN (SELECT id FROM path WHERE id IS NOT NULL)
    """
)
_TOUCH = text("UPDATE conversations SET updated_at = updated_at WHERE id = :conversation")


def show_version(conversation: Conversation, current_id: int, target_id: int) -> None:
    """Show version ``target_id`` in place of ``current_id`` (a shown message with the same parent)."""
    db.session.commit()  # (end the request's reads: what follows reads after taking its turn)
    replies.lock_owner(conversation.owner)  # PostgreSQL: one such change per owner at a time
    db.session.execute(_TOUCH, {"conversation": conversation.id})  # SQLite: the write lock, first
    rows = {
        row.id: row
        for row in db.session.execute(
            select(_m.id, _m.parent_id, _m.shown).where(
                _m.conversation_id == conversation.id, _m.id.in_((current_id, target_id))
            )
        )
    }
    current, target = rows.get(current_id), rows.get(target_id)
    if current is None or target is None or current.parent_id != target.parent_id:
        db.session.rollback()
        raise TurnRefused(_("That isn't a version of this message."), 409)
    if not current.shown:
        db.session.rollback()
        raise TurnRefused(STALE, 409)
    if current_id == target_id:
        db.session.rollback()
        return
    if _live(conversation.id):
        db.session.rollback()
        if not replies.sweep(conversation.id) or _live(conversation.id):
            raise TurnRefused(BUSY, 409)
        return show_version(conversation, current_id, target_id)
    db.session.execute(
        update(_m)
        .where(_m.conversation_id == conversation.id, _m.shown, _m.id >= current_id)
        .values(shown=False),
        execution_options={"synchronize_session": False},
    )
    db.session.execute(_SHOW_PATH, {"target": target_id})
    db.session.commit()


def _live(conversation_id: int) -> bool:
    found = db.session.execute(
        select(_m.id).where(_m.conversation_id == conversation_id, _m.status.in_(LIVE)).limit(1)
    ).scalar()
    return found is not None
