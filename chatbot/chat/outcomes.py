"""How each conversation ended, honestly: only the customer's own "yes, it solved it" counts as
resolved. Silence is not a yes: a conversation nobody answered for ``ABANDONED_AFTER_MINUTES`` is
abandoned (the sweep), and is open again if the customer comes back.

- The turn records ``escalated`` when the customer asks for a person in words (with its save);
- ``answer`` records the customer's reply to "Did this solve it?" (Yes / No / Talk to a person)
  on the reply that asked and on the conversation;
- ``settle`` marks idle open conversations abandoned (at most once a minute per process, after a
  request; ``flask conversations settle`` does it at once);
- ``summary`` counts them for reports.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, Response
from sqlalchemy import and_, exists, func, select, update

from ..extensions import db
from ..models import LIVE, Conversation, Message, Outcome, Status, utcnow

log = logging.getLogger(__name__)

ANSWERS = {"yes": Outcome.RESOLVED, "no": Outcome.UNRESOLVED, "person": Outcome.ESCALATED}


def asks(message: Any) -> bool:
    """Whether this reply asks "Did this solve it?" (an answer to a question, complete)."""
    meta = message.meta or {}
    return bool(meta.get("ask_outcome")) and message.status == Status.COMPLETE.value and not message.is_user


def answer(conversation: Conversation, message: Message, choice: str, now: datetime | None = None) -> None:
    """The customer's answer to the reply's question: kept on the reply (its prompt shows the
    answer from then on) and as the conversation's outcome."""
    outcome = ANSWERS[choice]
    now = now or utcnow()
    message.meta = {**(message.meta or {}), "resolution": choice}
    conversation.outcome = outcome.value
    conversation.outcome_at = now
    db.session.commit()


def settle(now: datetime, idle: timedelta) -> int:
    """Mark abandoned the open conversations with nothing new for ``idle`` (none with a reply
    being written); returns how many."""
    cutoff = now - idle
    live = exists().where(Message.conversation_id == Conversation.id, Message.status.in_(LIVE))
    result = db.session.execute(
        update(Conversation)
        .where(and_(Conversation.outcome.is_(None), Conversation.updated_at < cutoff, ~live))
        .values(outcome=Outcome.ABANDONED.value, outcome_at=now)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True, slots=True)
class Summary:
    total: int
    by_outcome: dict[str, int]  # each Outcome's count, and "open"

    @property
    def resolution_rate(self) -> float:
        """Confirmed resolved, of all conversations (nothing else counts as resolved)."""
        return self.by_outcome.get(Outcome.RESOLVED.value, 0) / self.total if self.total else 0.0


def summary(since: datetime | None = None) -> Summary:
    query = select(Conversation.outcome, func.count()).group_by(Conversation.outcome)
    if since is not None:
        query = query.where(Conversation.created_at >= since)
    counts = {(k or "open"): int(n) for k, n in db.session.execute(query).all()}
    by_outcome = {o.value: counts.get(o.value, 0) for o in Outcome} | {"open": counts.get("open", 0)}
    return Summary(sum(by_outcome.values()), by_outcome)


class _Sweeper:
    """Runs ``settle`` after a response at most every ``every`` seconds in this process."""

    def __init__(self, app: Flask, every: float = 60.0):
        self.app = app
        self.every = every
        self._next = 0.0
        self._lock = threading.Lock()

    def due(self) -> bool:
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                return False
            self._next = now + self.every
            return True

    def run(self) -> None:
        minutes = float(self.app.config["ABANDONED_AFTER_MINUTES"])
        try:
            with self.app.app_context():
                settled = settle(utcnow(), timedelta(minutes=minutes))
            if settled:
                log.info("%s idle conversation(s) marked abandoned", settled)
        except Exception:
            log.exception("the abandoned-conversation sweep failed (it runs again later)")


def init_app(app: Flask) -> None:
    if float(app.config["ABANDONED_AFTER_MINUTES"]) <= 0:
        return
    sweeper = _Sweeper(app, float(app.config["ABANDONED_SWEEP_SECONDS"]))

    @app.after_request
    def _sweep_later(response: Response) -> Response:
        if sweeper.due():
            response.call_on_close(sweeper.run)
        return response
