"""A turn, from the user's words to the saved reply: the orchestrator, read top to bottom.

Plain Python on the database and a provider; no Flask request objects, so the views, the CLI and
the tests all call the same code. A turn is two steps:

1. ``begin_turn`` / ``begin_retry`` (in ``begin.py``) check the input and save the user's message
   and an empty, live reply (or claim the failed reply again) in one commit: nothing the user
   wrote is lost, and the database refuses a second live reply in the same conversation;
2. ``run`` sends the model input, reads the provider in the background, yields text in batches
   (and heartbeats while the model is silent), and saves the reply once, fenced, whatever ended
   it. The reply is shown complete only after that save succeeded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from ..extensions import db
from ..i18n import N_
from ..knowledge import briefing, grounding, retrieve
from ..knowledge.dialogue import Intent
from ..language import detect
from ..llm import Briefing, Finish, Note, Provider, ProviderError, Text, Usage
from ..models import MessageRecord, Outcome, Status
from . import context, queries, replies, titles
from .begin import (
    BUSY,
    Settings,
    Turn,
    TurnRefused,
    begin_edit,
    begin_regenerate,
    begin_retry,
    begin_turn,
    check_current,
    clean_content,
)
from .live import LiveReplies
from .pump import CANCELLED, END, Batcher, Heartbeat, Pump, batch_interval

__all__ = [
    "BUSY",
    "Delta",
    "Finished",
    "Settings",
    "Turn",
    "TurnRefused",
    "begin_edit",
    "begin_regenerate",
    "begin_retry",
    "begin_turn",
    "check_current",
    "clean_content",
    "run",
]

log = logging.getLogger(__name__)


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
    briefing: Briefing | None = None
    notes: dict[str, Any] = field(default_factory=dict)


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
    *,
    watched: bool = True,
) -> Iterator[Delta | Heartbeat | Finished]:
    """Generate and save the reply; yields text batches, heartbeats, then ``Finished``.

    A page that goes away doesn't close it: the view hands it to ``LiveReplies.carry_on``, which
    reads it to its end. If a consumer does stop early (``close()``), the turn is cancelled
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
        messages, outcome.briefing = briefing.brief(
            db.session.connection(),
            messages,
            articles=settings.retrieval_articles,
            contact=settings.contact,
        )
        db.session.commit()  # never hold a transaction across the model call

        def interval() -> float:  # the more replies this process streams, the bigger the batches
            return batch_interval(
                live.count(), settings.flush_seconds, settings.flush_max_seconds, settings.batches_per_second
            )

        reply = provider.stream(messages, outcome.briefing)
        reply.pace(every := interval())
        if not watched:  # (a page without JavaScript: the whole reply, as soon as it can be had)
            reply.at_once()
        pump = Pump(reply)
        lease.on_cancel(pump.cancel)
        batcher = Batcher(every, settings.keepalive_seconds)
        while True:
            event = pump.get(batcher.wait(clock()))
            if event is None:  # quiet for a while: flush what we have, or say we're alive
                idle = batcher.idle(clock())
                if isinstance(idle, Heartbeat):
                    yield idle
                else:
                    yield Delta(idle)
                    batcher.flush_every = every = interval()
                    reply.pace(every)
            elif event is END or event is CANCELLED:
                break
            elif isinstance(event, Text):
                if outcome.ttft is None:
                    outcome.ttft = clock() - started
                lease.parts.append(event.text)
                if (batch := batcher.add(event.text, clock())) is not None:
                    yield Delta(batch)
                    batcher.flush_every = every = interval()
                    reply.pace(every)
            elif isinstance(event, Usage):
                outcome.usage = event
            elif isinstance(event, Finish):
                outcome.finish_reason = event.reason
            elif isinstance(event, Note):
                outcome.notes[event.key] = event.value
            elif isinstance(event, ProviderError):
                tlog.warning("model call failed (%s): %s", event.kind, event.detail)
                outcome.error = event
            elif isinstance(event, BaseException):
                tlog.error("assistant backend failed", exc_info=event)
                outcome.error = ProviderError(
                    "Something went wrong on our side. Please try again in a moment.",
                    "unexpected",
                    detail=f"the assistant backend raised {type(event).__name__}",
                )
        if lease.ended is None and (rest := batcher.rest()) is not None:
            yield Delta(rest)
    except GeneratorExit:
        lease.cancel(replies.CLIENT_GONE)
        raise
    except ProviderError as error:  # a provider that refuses before it streams
        tlog.warning("model call failed (%s): %s", error.kind, error.detail)
        outcome.error = error
    except Exception:  # noqa: BLE001 - a bug or a database failure: end the turn visibly
        tlog.exception("turn failed")
        outcome.error = ProviderError(
            "Something went wrong on our side. Please try again in a moment.",
            "internal",
            detail="the turn failed (see the traceback above)",
        )
    finally:
        if pump is not None and not pump.done():  # cut short: cancel the model call, at any stage
            pump.cancel()
            if not pump.join(1.0):
                tlog.error("the model call did not end within 1 s of its turn")
        lease.saving = True
        try:
            shown = _save(turn, provider, outcome, settings, started, clock, tlog)
        finally:
            live.release(lease)
    if settings.auto_title and turn.created and turn.user_message and _complete(shown):
        titles.ask_in_background(
            live.app,
            provider,
            turn.conversation.id,
            turn.conversation.title,
            turn.user_message.content,
            shown.reply.content,
        )
    yield shown


# what the offline assistant answered from, when it makes the reply an answer that may close the question
_ANSWERS = ("article", "dataset")


def _knowledge(meta: dict[str, Any], outcome: _Outcome, status: str, text: str) -> str | None:
    """The reply's knowledge in its metadata: what kind of message it answered, what was
    retrieved, which articles it cites, and whether it asks "Did this solve it?". Returns the
    conversation's new outcome, if the turn decides one (the customer asked for a person)."""
    meta.update(outcome.notes)
    brief = outcome.briefing
    if brief is None:
        return None
    meta["intent"] = brief.intent
    if brief.sources:
        meta["retrieved"] = retrieve.described(brief.sources)
        if sources := grounding.cited(text, brief.sources):
            meta["sources"] = sources
    if status == Status.COMPLETE.value and brief.intent == Intent.QUESTION.value:
        answered_from = outcome.notes.get("answered_from")
        if answered_from in _ANSWERS or (answered_from is None and outcome.finish_reason in (None, "stop")):
            meta["ask_outcome"] = True
    if brief.intent == Intent.PERSON.value and status != Status.ERROR.value:
        return Outcome.ESCALATED.value
    return None


def _complete(shown: Finished) -> bool:
    return not shown.lost and shown.reply is not None and shown.reply.status == Status.COMPLETE.value


# what a reply's log line carries: how it went, never what it said
_LOGGED = (
    "provider", "model", "finish_reason", "prompt_tokens", "completion_tokens", "total_tokens",
    "ttft_ms", "latency_ms",
)  # fmt: skip


def _lost(lease: replies.Lease, tlog: _TurnLog) -> Finished:
    """The turn no longer owns its reply: it writes nothing and shows the row as it is now."""
    now = queries.message_by_id(lease.reply_id)
    if now is None:
        tlog.warning("the reply was deleted while it was written; nothing saved")
    elif now.attempt != lease.attempt:
        tlog.warning("another attempt took this reply over; this turn ends without writing")
    else:
        tlog.warning("the reply was marked ended (%s) while this turn ran; nothing written", now.status)
    return Finished(now, lost=True)


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
        return _lost(lease, tlog)
    status, reason = _status(lease, outcome)
    meta: dict[str, Any] = {
        "provider": provider.name,
        "model": provider.model,
        "finish_reason": reason,
        "latency_ms": round((clock() - started) * 1000, 1),
    }
    if (lang := detect(lease.text())) is not None:  # (the page marks the reply's language)
        meta["lang"] = lang
    if outcome.ttft is not None:
        meta["ttft_ms"] = round(outcome.ttft * 1000, 1)
    if outcome.usage is not None:
        meta["prompt_tokens"] = outcome.usage.prompt_tokens
        meta["completion_tokens"] = outcome.usage.completion_tokens
        meta["total_tokens"] = outcome.usage.total_tokens
    if outcome.error is not None and lease.ended is None:
        meta["error"] = outcome.error.reason  # (what the customer reads)
        meta["error_kind"] = outcome.error.kind
        meta["error_detail"] = outcome.error.detail  # (what the operator reads: never shown)
        if not outcome.error.retryable:
            meta["retryable"] = False
    outcome_now = _knowledge(meta, outcome, status, lease.text())
    saved = replies.finish(lease, status, meta, give_up_after=settings.save_seconds, outcome=outcome_now)
    tlog.info(
        "reply %s (%s), %s",
        status,
        reason,
        saved.value,
        extra={
            "conversation": lease.conversation_id,
            "reply": lease.reply_id,
            "attempt": lease.attempt,
            **{key: meta.get(key) for key in _LOGGED},
        },
    )
    if saved is replies.Saved.LOST:
        return _lost(lease, tlog)
    if saved is replies.Saved.FAILED:  # say so, rather than show a reply nobody will find again
        status = Status.ERROR.value
        meta = {
            **meta,
            "finish_reason": "unsaved",
            "error": N_("This reply could not be saved. Please try again."),
        }
    reply = turn.reply
    return Finished(
        MessageRecord(
            reply.id,
            reply.conversation_id,
            lease.text(),
            False,
            status,
            reply.timestamp,
            meta,
            parent_id=reply.parent_id,
        )
    )
