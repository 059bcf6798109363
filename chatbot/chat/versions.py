"""Switching between a message's versions (regenerate and edit keep the earlier ones).

Messages form a tree: versions of a message share its parent. The path a conversation shows
(and the model reads) is marked ``shown``; switching to another version sets aside the shown
path from the current version on, and shows the other version with the newest conversation that
followed it. One transaction, under the owner's lock, refused while a reply is being written.
"""

from __future__ import annotations

from sqlalchemy import func, select, update

from ..extensions import db
from ..models import LIVE, Conversation, Message
from . import queries, replies
from .begin import BUSY, TurnRefused

_m = Message


def show_version(conversation: Conversation, current_id: int, target_id: int) -> None:
    """Show version ``target_id`` in place of ``current_id`` (a shown message with the same parent)."""
    current = queries.message_in(conversation, current_id)
    target = queries.message_in(conversation, target_id)
    if current is None or target is None or not current.shown or current.parent_id != target.parent_id:
        raise TurnRefused("That version isn't there any more. Please reload the page.", 409)
    if current.id == target.id:
        return
    replies.lock_owner(conversation.owner)
    if _live(conversation.id) and (not replies.sweep(conversation.id) or _live(conversation.id)):
        raise TurnRefused(BUSY, 409)
    db.session.execute(
        update(_m)
        .where(_m.conversation_id == conversation.id, _m.shown, _m.id >= current.id)
        .values(shown=False),
        execution_options={"synchronize_session": False},
    )
    path: list[int] = []
    node: int | None = target.id
    while node is not None:  # down the newest continuation of the chosen version
        path.append(node)
        node = db.session.execute(select(func.max(_m.id)).where(_m.parent_id == node)).scalar()
    db.session.execute(
        update(_m).where(_m.id.in_(path)).values(shown=True), execution_options={"synchronize_session": False}
    )
    db.session.commit()


def _live(conversation_id: int) -> bool:
    found = db.session.execute(
        select(_m.id).where(_m.conversation_id == conversation_id, _m.status.in_(LIVE)).limit(1)
    ).scalar()
    return found is not None
