"""A turn, from the user's words to the saved reply: the orchestrator, read top to bottom.

Plain Python on the database and a provider; no Flask request objects, so the views, the CLI and
the tests all call the same code. A turn is two steps:

1. ``begin_turn`` / ``begin_retry`` check the input and save the user's message and an empty,
   live reply (or claim the failed reply again) in one commit: nothing the user wrote is lost,
   and the database refuses a second live reply in the same conversation;
2. ``run`` sends the model input, reads the provider in the background, yields text in batches
   (and heartbeats while the model is silent), and saves the reply once, fenced, whatever ended
   it. The reply is shown complete only after that save succeeded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import bindparam, insert, update
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..llm import Finish, Provider, ProviderError, Text, Usage
from ..models import (
    DEFAULT_TITLE,
    Conversation,
    ConversationRef,
    Message,
    MessageRecord,
    Status,
    db_clock,
    new_public_id,
    utcnow,
)
from . import context, queries, replies
from .conversations import title_from
from .live import LiveReplies
from .pump import CANCELLED, END, Batcher, Heartbeat, Pump

log = logging.getLogger(__name__)

BUSY = (
    "The assistant is still answering in this conversation. "
    "Wait for the reply to finish, or stop it, then send again."
)


class TurnRefused(Exception):
    """The request can't start a turn; ``message`` is shown to the user, ``status`` is HTTP's."""

    def __init__(self, message: str, status: int = 422):
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
    keepalive_seconds: float
    lease_seconds: float
    save_seconds: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        return cls(
            system_prompt=config["SYSTEM_PROMPT"],
            history_tokens=int(config["HISTORY_TOKENS"]),
            max_chars=int(config["MAX_MESSAGE_CHARS"]),
            flush_seconds=float(config["STREAM_FLUSH_SECONDS"]),
            keepalive_seconds=float(config["STREAM_KEEPALIVE_SECONDS"]),
            lease_seconds=float(config["STREAM_LEASE_SECONDS"]),
            save_seconds=float(config["REPLY_SAVE_SECONDS"]),
        )


@dataclass
class Turn:
    conversation: ConversationRef
    reply: MessageRecord
    lease: replies.Lease
    user_message: MessageRecord | None = None  # None for a retry
    created: bool = False  # the conversation was created by this turn


# --- starting a turn -----------------------------------------------------------------------


def clean_content(content: str | None, max_chars: int) -> str:
    text = (content or "").strip()
    if not text:
        raise TurnRefused("Please type a message first.")
    if len(text) > max_chars:
        raise TurnRefused(
            f"Your message is {len(text):,} characters long; the limit is {max_chars:,}. Please shorten it."
        )
    return text


_c, _m = Conversation.__table__.c, Message.__table__.c
_NEW_CONVERSATION = (
    insert(Conversation.__table__)
    .values(
        public_id=bindparam("public_id"),
        owner=bindparam("owner"),
        title=bindparam("title"),
        created_at=bindparam("now"),
        updated_at=bindparam("now"),
    )
    .returning(_c.id)
)
_TOUCH = (
    update(Conversation.__table__)
    .where(_c.id == bindparam("conversation_id"))
    .values(updated_at=bindparam("now"), title=bindparam("title"))
)
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
    )
    .returning(_m.id)
)
_NEW_REPLY = (
    insert(Message.__table__)
    .values(
        conversation_id=bindparam("conversation_id"),
        content="",
        is_user=False,
        status=Status.STREAMING.value,
        timestamp=bindparam("now"),
        attempt=1,
        metadata={},
        lease_until=db_clock() + bindparam("lease"),
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
    text = clean_content(content, settings.max_chars)
    try:
        return _insert_turn(owner, conversation, text, settings)
    except IntegrityError as exc:
        db.session.rollback()
        if conversation is None or not _live_reply_conflict(exc):
            raise
        if not replies.sweep(conversation.id):
            raise TurnRefused(BUSY, 409) from None
    try:
        return _insert_turn(owner, conversation, text, settings)
    except IntegrityError as exc:
        db.session.rollback()
        if not _live_reply_conflict(exc):
            raise
        raise TurnRefused(BUSY, 409) from None


def _live_reply_conflict(exc: IntegrityError) -> bool:
    """The database refused a second live reply in a conversation (the partial unique index)."""
    text = str(exc.orig)
    return "uq_messages_one_live_reply" in text or "messages.conversation_id" in text


def _insert_turn(owner: str, conversation: Conversation | None, text: str, settings: Settings) -> Turn:
    now = utcnow()
    conn = db.session.connection()
    if conversation is None:
        ref = ConversationRef(0, new_public_id(), title_from(text))
        cid = conn.execute(
            _NEW_CONVERSATION, {"public_id": ref.public_id, "owner": owner, "title": ref.title, "now": now}
        ).scalar_one()
        ref = ConversationRef(cid, ref.public_id, ref.title)
    else:
        title = title_from(text) if conversation.title == DEFAULT_TITLE else conversation.title
        conn.execute(_TOUCH, {"conversation_id": conversation.id, "now": now, "title": title})
        ref = ConversationRef(conversation.id, conversation.public_id, title)
    user_id: int = conn.execute(
        _NEW_MESSAGE, {"conversation_id": ref.id, "content": text, "now": now}
    ).scalar_one()
    reply_id: int = conn.execute(
        _NEW_REPLY, {"conversation_id": ref.id, "now": now, "lease": settings.lease_seconds}
    ).scalar_one()
    db.session.commit()
    return Turn(
        conversation=ref,
        reply=MessageRecord(reply_id, ref.id, "", False, Status.STREAMING.value, now),
        lease=replies.Lease(reply_id, 1, ref.id),
        user_message=MessageRecord(user_id, ref.id, text, True, Status.COMPLETE.value, now),
        created=conversation is None,
    )


def begin_retry(conversation: Conversation, message_id: int, settings: Settings) -> Turn:
    """Run the last turn again, reusing its failed or interrupted reply (no duplicate user message)."""
    last = queries.latest_message(conversation.id)
    if last is None or last.id != message_id or last.is_user:
        raise TurnRefused("Only the latest reply can be retried.", 409)
    now = utcnow()
    attempt = replies.claim_for_retry(conversation.id, message_id, settings.lease_seconds, now)
    if attempt is None:
        raise TurnRefused("That reply is not waiting for a retry.", 409)
    db.session.execute(_TOUCH, {"conversation_id": conversation.id, "now": now, "title": conversation.title})
    db.session.commit()
    return Turn(
        conversation=ConversationRef(conversation.id, conversation.public_id, conversation.title),
        reply=MessageRecord(message_id, conversation.id, "", False, Status.STREAMING.value, now),
        lease=replies.Lease(message_id, attempt, conversation.id),
    )


def abandon(turn: Turn, settings: Settings) -> None:
    """The client left before the turn started: the reply ends interrupted, not live."""
    replies.finish(
        turn.lease,
        Status.INTERRUPTED.value,
        {"finish_reason": replies.CLIENT_GONE},
        give_up_after=settings.save_seconds,
    )


# --- running a turn ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delta:
    text: str


@dataclass(frozen=True, slots=True)
class Finished:
    reply: Any  # a MessageRecord as saved, or (fence lost) the row as it is now
    lost: bool = False


@dataclass
class _Outcome:
    finish_reason: str | None = None
    usage: Usage | None = None
    ttft: float | None = None
    error: ProviderError | None = None


class _TurnLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Every line of a turn's log names its conversation, reply and attempt."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        lease = cast(replies.Lease, cast(Mapping[str, Any], self.extra)["lease"])
        return (
            f"conversation={lease.conversation_id} reply={lease.reply_id} attempt={lease.attempt}: {msg}"
        ), kwargs


def run(
    turn: Turn,
    provider: Provider,
    settings: Settings,
    live: LiveReplies,
    clock: Callable[[], float] = time.perf_counter,
) -> Iterator[Delta | Heartbeat | Finished]:
    """Generate and save the reply; yields text batches, heartbeats, then ``Finished``.

    If the consumer stops early (``close()``, as when a client goes away), the turn is cancelled
    (``Lease.cancel``, the same call Stop makes) and the reply is still saved, interrupted.
    """
    lease, outcome = turn.lease, _Outcome()
    tlog = _TurnLog(log, {"lease": lease})
    started = clock()
    pump: Pump | None = None
    live.hold(lease)
    try:
        messages = context.model_input(
            turn.conversation.id, lease.reply_id, settings.system_prompt, settings.history_tokens
        )
        db.session.commit()  # never hold a transaction across the model call
        pump = Pump(provider.stream(messages))
        lease.on_cancel(pump.cancel)
        batcher = Batcher(settings.flush_seconds, settings.keepalive_seconds)
        while True:
            event = pump.get(batcher.wait(clock()))
            if event is None:  # quiet for a while: flush what we have, or say we're alive
                idle = batcher.idle(clock())
                yield idle if isinstance(idle, Heartbeat) else Delta(idle)
            elif event is END or event is CANCELLED:
                break
            elif isinstance(event, Text):
                if outcome.ttft is None:
                    outcome.ttft = clock() - started
                lease.parts.append(event.text)
                if (batch := batcher.add(event.text, clock())) is not None:
                    yield Delta(batch)
            elif isinstance(event, Usage):
                outcome.usage = event
            elif isinstance(event, Finish):
                outcome.finish_reason = event.reason
            elif isinstance(event, ProviderError):
                outcome.error = event
            elif isinstance(event, BaseException):
                tlog.error("assistant backend failed", exc_info=event)
                outcome.error = ProviderError("The assistant failed unexpectedly.", "unexpected")
        if lease.ended is None and (rest := batcher.rest()) is not None:
            yield Delta(rest)
    except GeneratorExit:
        lease.cancel(replies.CLIENT_GONE)
        raise
    except Exception:  # noqa: BLE001 - a bug or a database failure: end the turn visibly
        tlog.exception("turn failed")
        outcome.error = ProviderError("Something went wrong on our side. Please try again.", "internal")
    finally:
        if pump is not None:
            if not pump.done():
                pump.cancel()
            if not pump.join(1.0):
                tlog.error("the model call did not end within 1 s of its turn")
        lease.saving = True
        shown = _save(turn, provider, outcome, settings, started, clock, tlog)
        live.release(lease)
    yield shown


def _status(lease: replies.Lease, outcome: _Outcome) -> tuple[str, str]:
    """(status, finish_reason) of a reply, from how its turn ended."""
    if lease.ended is not None:  # stopped, or the client left
        return Status.INTERRUPTED.value, lease.ended
    if outcome.error is not None:
        if lease.parts:  # some text arrived: keep it, marked incomplete
            return Status.INTERRUPTED.value, "incomplete"
        return Status.ERROR.value, "error"
    return Status.COMPLETE.value, outcome.finish_reason or "stop"


def _save(
    turn: Turn,
    provider: Provider,
    outcome: _Outcome,
    settings: Settings,
    started: float,
    clock: Callable[[], float],
    tlog: _TurnLog,
) -> Finished:
    lease = turn.lease
    if lease.ended == replies.LOST:  # another attempt owns the reply: show it as it is now
        return Finished(queries.message_by_id(lease.reply_id), lost=True)
    status, reason = _status(lease, outcome)
    meta: dict[str, Any] = {
        "provider": provider.name,
        "model": provider.model,
        "finish_reason": reason,
        "latency_ms": round((clock() - started) * 1000, 1),
    }
    if outcome.ttft is not None:
        meta["ttft_ms"] = round(outcome.ttft * 1000, 1)
    if outcome.usage is not None:
        meta["prompt_tokens"] = outcome.usage.prompt_tokens
        meta["completion_tokens"] = outcome.usage.completion_tokens
        meta["total_tokens"] = outcome.usage.total_tokens
    if outcome.error is not None and lease.ended is None:
        meta["error"] = outcome.error.reason
        meta["error_kind"] = outcome.error.kind
    saved = replies.finish(lease, status, meta, give_up_after=settings.save_seconds)
    if saved is replies.Saved.LOST:
        tlog.warning("another attempt took this reply over before it was saved; nothing written")
        return Finished(queries.message_by_id(lease.reply_id), lost=True)
    if saved is replies.Saved.FAILED:  # say so, rather than show a reply nobody will find again
        status = Status.ERROR.value
        meta = {
            **meta,
            "finish_reason": "unsaved",
            "error": "This reply could not be saved. Please try again.",
        }
    reply = turn.reply
    return Finished(
        MessageRecord(reply.id, reply.conversation_id, lease.text(), False, status, reply.timestamp, meta)
    )
