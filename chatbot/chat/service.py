"""The conversation rules: one turn, from the user's words to the saved reply.

Plain Python on the models and a provider; no Flask request objects here, so the views, the CLI
and the tests all call the same code. A turn is two steps:

1. ``begin_turn`` / ``begin_retry`` validate, save the user's message and an empty assistant
   message (status "streaming") and commit, so nothing the user wrote can be lost;
2. ``run(turn, …)`` builds the model input (system prompt + the path of messages before the reply,
   newest first until the token budget is spent), reads the provider in a helper thread, yields
   text in small batches (and heartbeats while the model is silent, so a stop or a departed client
   is noticed), and saves the reply in a ``finally`` with its metadata, whatever ended it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm.attributes import set_committed_value

from ..extensions import db
from ..llm import Finish, Provider, ProviderError, ReplyStream, Text, Usage
from ..models import (
    DEFAULT_TITLE,
    LIVE,
    PROGRESS_SECONDS,
    STREAM_LEASE,
    Conversation,
    Message,
    utcnow,
)

log = logging.getLogger(__name__)

TITLE_CHARS = 60
STOP_CHECK_SECONDS = 0.2  # how stale a stop request may be before the turn notices it
RETRYABLE = ("error", "interrupted")


class TurnRefused(Exception):
    """The request can't start a turn; ``message`` is shown to the user, ``status`` is HTTP's."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.message = message
        self.status = status


# --- reading -------------------------------------------------------------------------------

def find_conversation(owner: str, public_id: str | None) -> Conversation | None:
    """The owner's conversation with this public id, or None (also for anyone else's)."""
    if not public_id or not owner:
        return None
    return db.session.execute(
        select(Conversation).where(Conversation.public_id == public_id, Conversation.owner == owner)
    ).scalar_one_or_none()


def conversation_of_message(owner: str, message_id: int) -> Conversation | None:
    """The owner's conversation holding this message, or None."""
    return db.session.execute(
        select(Conversation).join(Message, Message.conversation_id == Conversation.id)
        .where(Message.id == message_id, Conversation.owner == owner)
    ).scalar_one_or_none()


def message_in(conversation: Conversation, message_id: int) -> Message:
    return db.session.execute(
        select(Message).where(Message.id == message_id, Message.conversation_id == conversation.id)
    ).scalar_one()


def last_message_id(conversation: Conversation) -> int | None:
    return db.session.execute(
        select(func.max(Message.id)).where(Message.conversation_id == conversation.id)
    ).scalar()


def messages_of(conversation: Conversation, before_id: int | None = None,
                limit: int = 50) -> tuple[list[Message], bool]:
    """Up to ``limit`` messages (before ``before_id``), oldest first, and whether older exist.

    A page shows the newest part of a conversation and loads the rest on demand, so a
    conversation of thousands of messages opens as fast as a short one.
    """
    query = select(Message).where(Message.conversation_id == conversation.id)
    if before_id is not None:
        query = query.where(Message.id < before_id)
    rows = list(db.session.execute(query.order_by(Message.id.desc()).limit(limit + 1)).scalars())
    has_more = len(rows) > limit
    rows = rows[:limit]
    rows.reverse()
    return rows, has_more


def estimate_tokens(text: str) -> int:
    """A cheap, deliberately generous token estimate (about 3 characters a token, plus framing)."""
    return len(text) // 3 + 4


# Built once: the statement for "this conversation's usable messages before X, newest first".
_HISTORY = (
    select(Message.is_user, Message.content)
    .where(
        Message.conversation_id == bindparam("conversation_id"),
        Message.id < bindparam("before_id"),
        Message.status != "error",
        Message.content != "",
    )
    .order_by(Message.id.desc())
)


def model_input(conversation_id: int, before_id: int, system_prompt: str, budget: int) -> list[dict]:
    """System prompt + the conversation's messages before ``before_id``, oldest first.

    Rows are streamed newest first and reading stops once ``budget`` tokens are spent, so a
    conversation of thousands of messages costs no more than its recent part. Failed replies
    (status "error", no text) are left out; the newest message always goes in.
    """
    budget -= estimate_tokens(system_prompt)
    picked: list[dict] = []
    result = db.session.connection().execution_options(yield_per=128).execute(
        _HISTORY, {"conversation_id": conversation_id, "before_id": before_id}
    )
    try:
        for is_user, content in result:
            cost = estimate_tokens(content)
            if picked and cost > budget:
                break
            budget -= cost
            picked.append({"role": "user" if is_user else "assistant", "content": content})
    finally:
        result.close()
    picked.append({"role": "system", "content": system_prompt})
    picked.reverse()
    return picked


# --- starting a turn -----------------------------------------------------------------------

def clean_content(content: str | None, max_chars: int) -> str:
    text = (content or "").strip()
    if not text:
        raise TurnRefused("Please type a message first.")
    if len(text) > max_chars:
        raise TurnRefused(
            f"Your message is {len(text):,} characters long; the limit is {max_chars:,}. "
            "Please shorten it."
        )
    return text


def title_from(text: str) -> str:
    line = " ".join(text.split())
    if len(line) <= TITLE_CHARS:
        return line
    cut = line[:TITLE_CHARS].rsplit(" ", 1)[0] or line[:TITLE_CHARS]
    return cut.rstrip(" ,.;:") + "…"


@dataclass
class Turn:
    conversation: Conversation
    reply: Message
    user_message: Message | None = None  # None for a retry
    created: bool = False  # the conversation was created by this turn


# Prebuilt Core statements for the two writes every turn makes: on this path the ORM's unit of
# work and statement building cost more than SQLite itself (0.8 ms against 5 us per write).
_messages = Message.__table__
_INSERT_MESSAGE = _messages.insert()
_TOUCH = (
    Conversation.__table__.update()
    .where(Conversation.__table__.c.id == bindparam("conversation_id"))
    .values(updated_at=bindparam("updated_at"), title=bindparam("title"))
)
_SAVE_REPLY = (  # only while the reply is still ours: a retry may have claimed a stale one
    _messages.update()
    .where(_messages.c.id == bindparam("reply_id"), _messages.c.status.in_(LIVE))
    .values(content=bindparam("content"), status=bindparam("status"), metadata=bindparam("meta"),
            updated_at=bindparam("updated_at"))
)
_PROGRESS = (  # the text so far and a heartbeat, while the reply is being written
    _messages.update()
    .where(_messages.c.id == bindparam("reply_id"), _messages.c.status.in_(LIVE))
    .values(content=bindparam("content"), updated_at=bindparam("updated_at"))
)
_TOUCH_UPDATED = (
    Conversation.__table__.update()
    .where(Conversation.__table__.c.id == bindparam("conversation_id"))
    .values(updated_at=bindparam("updated_at"))
)


def begin_turn(owner: str, conversation: Conversation | None, content: str | None,
               max_chars: int) -> Turn:
    """Save the user's message (creating the conversation on the first one) and a placeholder."""
    text = clean_content(content, max_chars)
    now = utcnow()
    created = conversation is None
    if created:
        conversation = Conversation(owner=owner, title=title_from(text), created_at=now, updated_at=now)
        db.session.add(conversation)
        db.session.flush()
    else:
        title = title_from(text) if conversation.title == DEFAULT_TITLE else conversation.title
        db.session.connection().execute(
            _TOUCH, {"conversation_id": conversation.id, "updated_at": now, "title": title})
        set_committed_value(conversation, "title", title)
        set_committed_value(conversation, "updated_at", now)
    conn = db.session.connection()
    user_message = Message(conversation_id=conversation.id, content=text, is_user=True,
                           status="complete", timestamp=now, meta={})
    reply = Message(conversation_id=conversation.id, content="", is_user=False,
                    status="streaming", timestamp=now, meta={})
    for message in (user_message, reply):
        message.updated_at = now
        message.id = conn.execute(_INSERT_MESSAGE, {
            "conversation_id": message.conversation_id, "content": message.content,
            "is_user": message.is_user, "status": message.status, "timestamp": now,
            "updated_at": now, "metadata": {},
        }).inserted_primary_key[0]
    db.session.commit()
    return Turn(conversation, reply, user_message, created)


def begin_retry(conversation: Conversation, message_id: int) -> Turn:
    """Run the last turn again, reusing its failed or interrupted reply (no duplicate user message)."""
    last = db.session.execute(
        select(Message).where(Message.conversation_id == conversation.id)
        .order_by(Message.id.desc()).limit(1)
    ).scalar_one_or_none()
    if last is None or last.id != message_id or last.is_user:
        raise TurnRefused("Only the latest reply can be retried.", 409)
    # Claim it atomically: two retries of one reply must not both call the model. A reply left
    # "streaming" by a turn that died (its lease ran out) may be claimed too.
    now = utcnow()
    claimed = db.session.execute(
        update(Message)
        .where(Message.id == message_id,
               Message.status.in_(RETRYABLE)
               | (Message.status.in_(LIVE) & (Message.updated_at < now - STREAM_LEASE)))
        .values(status="streaming", content="", meta={}, timestamp=now, updated_at=now)
    ).rowcount
    if not claimed:
        db.session.rollback()
        raise TurnRefused("That reply is not waiting for a retry.", 409)
    conversation.updated_at = utcnow()
    db.session.commit()
    return Turn(conversation, db.session.get(Message, message_id, populate_existing=True))


# --- running a turn ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Delta:
    text: str


class Heartbeat:
    """Nothing new yet; the caller should write something small to notice a departed client."""


HEARTBEAT = Heartbeat()


@dataclass(frozen=True, slots=True)
class Finished:
    reply: Message


@dataclass
class _Outcome:
    parts: list[str] = field(default_factory=list)
    # What a turn ends as unless something says otherwise: the client went away.
    status: str = "interrupted"
    finish_reason: str = "client_disconnected"
    usage: Usage | None = None
    ttft: float | None = None
    error: ProviderError | None = None


_END = object()


class _Pump:
    """Reads a provider's reply in a thread, so silence upstream never blocks the response."""

    def __init__(self, reply: ReplyStream):
        self.reply = reply
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="model-reply", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for event in self.reply:
                self.queue.put(event)
        except BaseException as exc:  # noqa: BLE001 - handed to the reading side
            self.queue.put(exc)
        finally:
            self.queue.put(_END)

    def get(self, timeout: float):
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.reply.close()


def stop_requested(message_id: int) -> bool:
    """A fresh read of the reply's status on its own connection (never a cached row)."""
    with db.engine.connect() as conn:
        status = conn.execute(select(Message.status).where(Message.id == message_id)).scalar()
    return status == "stopping"


def save_progress(message_id: int, content: str) -> None:
    """Save a live reply's text so far and renew its lease (own short transaction)."""
    with db.engine.begin() as conn:
        conn.execute(_PROGRESS, {"reply_id": message_id, "content": content, "updated_at": utcnow()})


def abandon(turn: Turn) -> None:
    """The client left before the turn started: mark its reply interrupted, not "streaming"."""
    with db.engine.begin() as conn:
        conn.execute(_SAVE_REPLY, {
            "reply_id": turn.reply.id, "content": "", "status": "interrupted",
            "meta": {"finish_reason": "client_disconnected"}, "updated_at": utcnow()})


def request_stop(conversation: Conversation, message_id: int) -> bool:
    """Ask the running turn writing ``message_id`` to stop; False if it isn't streaming."""
    done = db.session.execute(
        update(Message)
        .where(Message.id == message_id, Message.conversation_id == conversation.id,
               Message.status == "streaming")
        .values(status="stopping")
    ).rowcount
    db.session.commit()
    return bool(done)


def run(turn: Turn, provider: Provider, config) -> Iterator[Delta | Heartbeat | Finished]:
    """Generate and save the reply; yields text batches, heartbeats, then ``Finished``.

    If the consumer stops early (``close()``, as when a client goes away), the reply is still
    saved, marked interrupted, and the model call is closed.
    """
    outcome = _Outcome()
    reply, conversation_id = turn.reply, turn.conversation.id
    reply_id = reply.id
    started = time.perf_counter()
    try:
        messages = model_input(conversation_id, reply_id, config["SYSTEM_PROMPT"],
                               int(config["HISTORY_TOKENS"]))
        db.session.commit()  # never hold a transaction across the model call
        yield from _generate(provider, messages, reply_id, outcome, started,
                             float(config["STREAM_FLUSH_SECONDS"]),
                             float(config["STREAM_KEEPALIVE_SECONDS"]))
    except Exception:  # noqa: BLE001 - a bug or a database failure: end the turn visibly
        log.exception("turn for reply %s failed", reply_id)
        _fail(outcome, ProviderError("Something went wrong on our side. Please try again.", "internal"))
    finally:
        reply = _save(reply, conversation_id, provider, outcome, started)
    yield Finished(reply)


def _generate(provider, messages, reply_id, outcome: _Outcome, started, flush_every, keepalive):
    pump = _Pump(provider.stream(messages))
    buf: list[str] = []
    last_flush = float("-inf")  # the first text goes out at once
    last_check = last_progress = started  # nobody could have asked to stop before the start

    def should_stop() -> bool:
        """Look for a stop request, at most every STOP_CHECK_SECONDS (it costs a query), and
        save the text so far every PROGRESS_SECONDS (the heartbeat that keeps the reply live)."""
        nonlocal last_check, last_progress
        now = time.perf_counter()
        if now - last_check < STOP_CHECK_SECONDS:
            return False
        last_check = now
        try:
            if now - last_progress >= PROGRESS_SECONDS:
                last_progress = now
                save_progress(reply_id, "".join(outcome.parts))
            return stop_requested(reply_id)
        except Exception:  # noqa: BLE001 - a busy database must not end the reply
            log.warning("could not check reply %s for a stop request", reply_id, exc_info=True)
            return False

    try:
        while True:
            timeout = max(0.0, last_flush + flush_every - time.perf_counter()) if buf else keepalive
            event = pump.get(timeout)
            if event is None:  # quiet for a while: flush what we have, or say we're alive
                if buf:
                    yield Delta("".join(buf))
                    buf.clear()
                    last_flush = time.perf_counter()
                else:
                    yield HEARTBEAT
                if should_stop():
                    outcome.status, outcome.finish_reason = "interrupted", "stopped"
                    return
                continue
            if event is _END:
                break
            if isinstance(event, Text):
                if outcome.ttft is None:
                    outcome.ttft = time.perf_counter() - started
                outcome.parts.append(event.text)
                buf.append(event.text)
                if time.perf_counter() - last_flush >= flush_every:
                    yield Delta("".join(buf))
                    buf.clear()
                    last_flush = time.perf_counter()
                    if should_stop():
                        outcome.status, outcome.finish_reason = "interrupted", "stopped"
                        return
            elif isinstance(event, Usage):
                outcome.usage = event
            elif isinstance(event, Finish):
                outcome.finish_reason = event.reason
            elif isinstance(event, ProviderError):
                _fail(outcome, event)
                break
            elif isinstance(event, BaseException):
                log.error("assistant backend failed", exc_info=event)
                _fail(outcome, ProviderError("The assistant failed unexpectedly.", "unexpected"))
                break
        if outcome.error is None:
            outcome.status = "complete"
        if buf:
            yield Delta("".join(buf))
            buf.clear()
    finally:
        pump.close()


def _fail(outcome: _Outcome, error: ProviderError) -> None:
    outcome.error = error
    if outcome.parts:  # some text arrived: keep it, marked incomplete
        outcome.status, outcome.finish_reason = "interrupted", "incomplete"
    else:
        outcome.status, outcome.finish_reason = "error", "error"


def _save(reply: Message, conversation_id: int, provider: Provider, outcome: _Outcome,
          started: float) -> Message:
    meta = {
        "provider": provider.name,
        "model": provider.model,
        "finish_reason": outcome.finish_reason,
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    if outcome.ttft is not None:
        meta["ttft_ms"] = round(outcome.ttft * 1000, 1)
    if outcome.usage is not None:
        meta["prompt_tokens"] = outcome.usage.prompt_tokens
        meta["completion_tokens"] = outcome.usage.completion_tokens
        meta["total_tokens"] = outcome.usage.total_tokens
    if outcome.error is not None:
        meta["error"] = outcome.error.reason
        meta["error_kind"] = outcome.error.kind
    values = {"content": "".join(outcome.parts), "status": outcome.status, "meta": meta,
              "updated_at": utcnow()}
    try:
        db.session.rollback()  # whatever was open, start clean for one short write
        conn = db.session.connection()
        conn.execute(_SAVE_REPLY, {"reply_id": reply.id, **values})
        conn.execute(_TOUCH_UPDATED, {"conversation_id": conversation_id, "updated_at": utcnow()})
        db.session.commit()
    except Exception:  # noqa: BLE001 - log once; the caller's stream may already be gone
        db.session.rollback()
        log.exception("could not save reply %s", reply.id)
    # The row now holds these values; show them without reading it back (the view's session,
    # which loaded ``reply``, may already be closed when streaming).
    for key, value in values.items():
        set_committed_value(reply, key, value)
    return reply


def interrupt_leftovers() -> int:
    """Mark replies left "streaming" by a server that stopped mid-reply as interrupted.

    Only those whose lease ran out: a reply another worker or host is still writing renews its
    lease every PROGRESS_SECONDS and is left alone.
    """
    done = db.session.execute(
        update(Message)
        .where(Message.status.in_(LIVE), Message.updated_at < utcnow() - STREAM_LEASE)
        .values(status="interrupted", meta={"finish_reason": "server_restarted"})
    ).rowcount
    db.session.commit()
    return done

