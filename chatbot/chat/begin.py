"""Starting a turn: check the words, then save them and an empty live reply in one commit (or
claim the failed reply again for a retry). The database refuses a second live reply in the same
conversation; ``turns.run`` does the rest."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Float, Integer, String, bindparam, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..i18n import _, _l, number
from ..knowledge.briefing import contact
from ..models import (
    DEFAULT_TITLE,
    LIVE,
    Conversation,
    ConversationRef,
    Message,
    MessageRecord,
    Status,
    UTCDateTime,
    db_clock,
    new_public_id,
    utcnow,
)
from . import holder, queries, replies
from .conversations import title_from

BUSY = _l(
    "The assistant is still answering in this conversation. "
    "Wait for the reply to finish, or stop it, then send again."
)
STALE = _l(
    "This conversation changed in another tab or window. Please reload the page to see it as it is now."
)


class TurnRefused(Exception):
    """The request can't start a turn; ``message`` is shown to the user, ``status`` is HTTP's."""

    def __init__(self, message: Any, status: int = 422):  # (a string, or a lazy one: BUSY, STALE)
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Settings:
    """What a turn needs from the configuration."""

    system_prompt: str
    history_tokens: int
    max_chars: int
    flush_seconds: float
    flush_max_seconds: float
    batches_per_second: float
    keepalive_seconds: float
    lease_seconds: float
    save_seconds: float
    max_conversations: int
    max_messages: int
    max_live: int
    auto_title: bool = False  # ask the model for a title after a conversation's first reply
    retrieval_articles: int = 3  # the shop's articles given to the model per turn (0: none)
    contact: tuple[tuple[str, str], ...] = ()  # how to reach a person (knowledge/briefing.py)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        return cls(
            system_prompt=config["SYSTEM_PROMPT"],
            history_tokens=int(config["HISTORY_TOKENS"]),
            max_chars=int(config["MAX_MESSAGE_CHARS"]),
            flush_seconds=float(config["STREAM_FLUSH_SECONDS"]),
            flush_max_seconds=float(config["STREAM_FLUSH_MAX_SECONDS"]),
            batches_per_second=float(config["STREAM_BATCHES_PER_SECOND"]),
            keepalive_seconds=float(config["STREAM_KEEPALIVE_SECONDS"]),
            lease_seconds=float(config["STREAM_LEASE_SECONDS"]),
            save_seconds=float(config["REPLY_SAVE_SECONDS"]),
            max_conversations=int(config["MAX_CONVERSATIONS_PER_OWNER"]),
            max_messages=int(config["MAX_MESSAGES_PER_CONVERSATION"]),
            max_live=int(config["MAX_LIVE_REPLIES_PER_OWNER"]),
            auto_title=str(config.get("AUTO_TITLE") or "").strip().lower() == "model",
            retrieval_articles=int(config.get("RETRIEVAL_ARTICLES", 3)),
            contact=contact(config),
        )


@dataclass
class Turn:
    conversation: ConversationRef
    reply: MessageRecord
    lease: replies.Lease
    user_message: MessageRecord | None = None  # None for a retry or a regenerate
    created: bool = False  # the conversation was created by this turn
    replaced: int | None = None  # a new version of this message (edit, regenerate) shows instead


@dataclass(frozen=True)
class Fork:
    """A new version of message ``replaced`` (the same parent): it and everything shown after it
    are set aside (kept, and reachable through the version switcher)."""

    replaced: int
    parent_id: int | None
    retitle: bool = False  # the conversation's title is taken from the new version


# --- starting a turn -----------------------------------------------------------------------


# Control characters other than newline and tab are stripped from messages (PostgreSQL refuses
# NUL; the rest would only garble the page or a terminal). Letters in any script, emoji and
# punctuation count as visible; spaces, zero-width and format characters, and lone combining
# marks don't.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_INVISIBLE = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Me"})


def clean_content(content: str | None, max_chars: int) -> str:
    """The message as saved: line endings as a browser counts them (CRLF is one character),
    control characters stripped, outer whitespace trimmed; refused if nothing visible is left or
    it is too long."""
    text = (content or "").replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text).strip()
    if not any(not ch.isspace() and unicodedata.category(ch) not in _INVISIBLE for ch in text):
        raise TurnRefused(_("Please type a message first."))
    if len(text) > max_chars:
        raise TurnRefused(
            _(
                "Your message is %(length)s characters long; the limit is %(limit)s. Please shorten it.",
                length=number(len(text)),
                limit=number(max_chars),
            )
        )
    return text


_c, _m = Conversation.__table__.c, Message.__table__.c
# The limits ride on the writes themselves (no extra query per turn): a new conversation is
# inserted only while its owner has fewer than the most allowed, and a conversation is touched
# (then given two messages) only while it has room for them.
_OWNED = (
    select(func.count()).select_from(Conversation.__table__).where(_c.owner == bindparam("owner"))
).scalar_subquery()
_NEW_CONVERSATION = (
    insert(Conversation.__table__)
    .from_select(
        ["public_id", "owner", "title", "created_at", "updated_at"],
        select(
            bindparam("public_id", type_=String()),
            bindparam("owner", type_=String()),
            bindparam("title", type_=String()),
            bindparam("now", type_=UTCDateTime()),
            bindparam("now", type_=UTCDateTime()),
        ).where(bindparam("max_conversations") > _OWNED),
    )
    .returning(_c.id)
)
_HELD = (
    select(func.count())
    .select_from(Message.__table__)
    .where(_m.conversation_id == bindparam("conversation_id"))
).scalar_subquery()
# A new title only when the turn gives one (``title`` None: the title as it is in the database,
# never as this request read it: a rename committed meanwhile is kept); the title as now saved.
_TOUCH = (
    update(Conversation.__table__)
    .where(_c.id == bindparam("conversation_id"))
    .values(updated_at=bindparam("now"), title=func.coalesce(bindparam("title", type_=String()), _c.title))
    .returning(_c.title)
)
_TOUCH_WITH_ROOM = _TOUCH.where(bindparam("max_messages") >= _HELD + bindparam("adding"))
_NEW_MESSAGE = (
    insert(Message.__table__)
    .values(
        conversation_id=bindparam("conversation_id"),
        content=bindparam("content"),
        is_user=True,
        status=Status.COMPLETE.value,
        timestamp=bindparam("now"),
        attempt=0,
        metadata={},
        parent_id=bindparam("parent_id", type_=Integer()),
    )
    .returning(_m.id)
)
# A message sent in the composer follows the last message shown.
# (ORDER BY … LIMIT 1 walks the (conversation, id) index back to the first shown row; max(id)
# with the extra condition would read the whole conversation.)
_NEXT_MESSAGE = _NEW_MESSAGE.values(
    parent_id=select(_m.id)
    .where(_m.conversation_id == bindparam("conversation_id"), _m.shown)
    .order_by(_m.id.desc())
    .limit(1)
    .scalar_subquery()
)
# A new version sets aside the one it replaces and everything shown after it.
_SET_ASIDE = (
    update(Message.__table__)
    .where(_m.conversation_id == bindparam("in_conversation"), _m.shown, _m.id >= bindparam("replaced"))
    .values(shown=False)
)
# ...and the reply only while its owner has fewer live replies than allowed (each is a paid
# model call and a held stream).
_NEW_REPLY = (
    insert(Message.__table__)
    .from_select(
        [
            "conversation_id",
            "content",
            "is_user",
            "status",
            "timestamp",
            "attempt",
            "metadata",
            "lease_until",
            "lease_holder",
            "parent_id",
        ],
        select(
            bindparam("conversation_id", type_=Integer()),
            literal(""),
            literal(False),
            literal(Status.STREAMING.value),
            bindparam("now", type_=UTCDateTime()),
            literal(1),
            literal({}, type_=JSON()),
            db_clock() + bindparam("lease", type_=Float()),
            bindparam("holder", type_=String()),
            bindparam("parent_id", type_=Integer()),
        ).where(replies.LIVE_OWNED < bindparam("max_live")),
    )
    .returning(_m.id)
)


def begin_turn(
    owner: str, conversation: Conversation | None, content: str | None, settings: Settings
) -> Turn:
    """Save the user's message (creating the conversation on the first one) and a live reply.

    Refused (409) while another reply of the conversation is live; a live reply whose turn died
    (its lease ran out) is swept first, so a crashed worker never blocks a conversation.
    """
    return _insert_with_sweep(owner, conversation, clean_content(content, settings.max_chars), settings)


def begin_edit(conversation: Conversation, message_id: int, content: str | None, settings: Settings) -> Turn:
    """A new version of one of the customer's shown messages, and a reply to it: the earlier
    version and the conversation that followed it are kept, set aside."""
    edited = queries.message_in(conversation, message_id)
    if edited is None or not edited.is_user:
        raise TurnRefused(_("Only a message of yours in this conversation can be edited."), 409)
    if not edited.shown:
        raise TurnRefused(STALE, 409)
    text = clean_content(content, settings.max_chars)
    # the conversation's title came from its first message: it follows that message's edit
    retitle = edited.parent_id is None and conversation.title == title_from(edited.content)
    return _insert_with_sweep(
        conversation.owner, conversation, text, settings, Fork(edited.id, edited.parent_id, retitle)
    )


def check_current(conversation: Conversation, last_seen: int) -> None:
    """Refuse a message from a page whose last message another tab has since set aside (an edit,
    a version switch): it would follow a conversation the page doesn't show. (A conversation that
    only grew meanwhile goes on: the page's messages are all still in it.)"""
    seen = queries.message_in(conversation, last_seen)
    if seen is None or not seen.shown:
        raise TurnRefused(STALE, 409)


def begin_regenerate(conversation: Conversation, reply_id: int, settings: Settings) -> Turn:
    """Another answer to the latest question: the answer it replaces is kept, set aside."""
    last = queries.latest_message(conversation.id)
    if last is None or last.id != reply_id or last.is_user:
        raise TurnRefused(_("Only the latest answer can be regenerated."), 409)
    if last.status in LIVE:
        raise TurnRefused(BUSY, 409)
    return _insert_with_sweep(conversation.owner, conversation, None, settings, Fork(last.id, last.parent_id))


def _insert_with_sweep(
    owner: str,
    conversation: Conversation | None,
    text: str | None,
    settings: Settings,
    fork: Fork | None = None,
) -> Turn:
    try:
        return _insert_turn(owner, conversation, text, settings, fork)
    except IntegrityError as exc:
        db.session.rollback()
        if conversation is None or not _live_reply_conflict(exc):
            raise
        if not replies.sweep(conversation.id):
            raise TurnRefused(BUSY, 409) from None
    try:
        return _insert_turn(owner, conversation, text, settings, fork)
    except IntegrityError as exc:
        db.session.rollback()
        if not _live_reply_conflict(exc):
            raise
        raise TurnRefused(BUSY, 409) from None


def _live_reply_conflict(exc: IntegrityError) -> bool:
    """The database refused a second live reply in a conversation (the partial unique index)."""
    text = str(exc.orig)
    return "uq_messages_one_live_reply" in text or "messages.conversation_id" in text


def _insert_turn(
    owner: str, conversation: Conversation | None, text: str | None, settings: Settings, fork: Fork | None
) -> Turn:
    """One commit: the conversation (created or touched, within its limits), the fork's set-aside,
    the user's message (none for a regenerate), and the live reply."""
    now = utcnow()
    replies.lock_owner(owner)
    conn = db.session.connection()
    if conversation is None:
        ref = ConversationRef(0, new_public_id(), title_from(text or ""))
        cid = conn.execute(
            _NEW_CONVERSATION,
            {
                "public_id": ref.public_id,
                "owner": owner,
                "title": ref.title,
                "now": now,
                "max_conversations": settings.max_conversations,
            },
        ).scalar()
        if cid is None:
            db.session.rollback()
            raise TurnRefused(
                _(
                    "You have reached the limit of %(limit)s conversations. Please continue one of them.",
                    limit=number(settings.max_conversations),
                )
            )
        ref = ConversationRef(cid, ref.public_id, ref.title)
    else:
        retitle = conversation.title == DEFAULT_TITLE or (fork is not None and fork.retitle)
        title = conn.execute(
            _TOUCH_WITH_ROOM,
            {
                "conversation_id": conversation.id,
                "now": now,
                "title": title_from(text) if text and retitle else None,
                "max_messages": settings.max_messages,
                "adding": 1 if text is None else 2,
            },
        ).scalar()
        if title is None:
            db.session.rollback()
            raise TurnRefused(
                _(
                    "This conversation has reached its limit of %(limit)s messages. "
                    "Please start a new conversation.",
                    limit=number(settings.max_messages),
                )
            )
        ref = ConversationRef(conversation.id, conversation.public_id, title)
    token = holder.new_token()
    if fork is not None:
        conn.execute(_SET_ASIDE, {"in_conversation": ref.id, "replaced": fork.replaced})
    user: MessageRecord | None = None
    parent_id = fork.parent_id if fork is not None else None
    if text is not None:
        values = {"conversation_id": ref.id, "content": text, "now": now, "parent_id": parent_id}
        user_id: int = conn.execute(_NEW_MESSAGE if fork else _NEXT_MESSAGE, values).scalar_one()
        user = MessageRecord(user_id, ref.id, text, True, Status.COMPLETE.value, now, parent_id=parent_id)
        parent_id = user_id
    reply_id: int | None = conn.execute(
        _NEW_REPLY,
        {
            "conversation_id": ref.id,
            "now": now,
            "lease": settings.lease_seconds,
            "holder": token,
            "owner": owner,
            "max_live": settings.max_live,
            "parent_id": parent_id,
        },
    ).scalar()
    if reply_id is None:
        db.session.rollback()
        raise TurnRefused(_too_many_live(settings), 429)
    db.session.commit()
    return Turn(
        conversation=ref,
        reply=MessageRecord(reply_id, ref.id, "", False, Status.STREAMING.value, now, parent_id=parent_id),
        lease=replies.Lease(reply_id, 1, ref.id, token),
        user_message=user,
        created=conversation is None,
        replaced=fork.replaced if fork is not None else None,
    )


def _too_many_live(settings: Settings) -> str:
    return _(
        "You already have %(count)s replies being written. Please wait for one to finish, then send again.",
        count=settings.max_live,
    )


def begin_retry(conversation: Conversation, message_id: int, settings: Settings) -> Turn:
    """Run the last turn again, reusing its failed or interrupted reply (no duplicate user message)."""
    last = queries.latest_message(conversation.id)
    if last is None or last.id != message_id or last.is_user:
        raise TurnRefused(_("Only the latest reply can be retried."), 409)
    now = utcnow()
    replies.lock_owner(conversation.owner)
    token = holder.new_token()
    claim = (
        conversation.id,
        message_id,
        settings.lease_seconds,
        now,
        conversation.owner,
        settings.max_live,
        token,
    )
    attempt = replies.claim_for_retry(*claim)
    if attempt is None and replies.sweep(conversation.id):  # its writer here had died: claim it now
        replies.lock_owner(conversation.owner)
        attempt = replies.claim_for_retry(*claim)
    if attempt is None:
        if replies.live_count(conversation.owner) >= settings.max_live:
            raise TurnRefused(_too_many_live(settings), 429)
        raise TurnRefused(_("That reply is not waiting for a retry."), 409)
    title = db.session.execute(
        _TOUCH, {"conversation_id": conversation.id, "now": now, "title": None}
    ).scalar()
    db.session.commit()
    return Turn(
        conversation=ConversationRef(conversation.id, conversation.public_id, title or conversation.title),
        reply=MessageRecord(
            message_id, conversation.id, "", False, Status.STREAMING.value, now, parent_id=last.parent_id
        ),
        lease=replies.Lease(message_id, attempt, conversation.id, token),
    )
