"""A reply's lifecycle: its fence and lease, the tick, stop, the final save, the sweep of leftovers,
and what a reader is shown.

- **The fence.** A reply row carries ``attempt``; a retry takes the next number. Every write of a
  turn names its reply *and* its attempt, so a turn whose reply was claimed by a retry matches no
  row: it has lost the reply and ends without writing.
- **The lease.** A live reply is held until ``lease_until`` (the database's clock). A turn renews
  it on every tick; one whose lease ran out has nobody writing it (worker killed, host gone) and
  may be swept or retried.
- **The tick.** One statement per interval saves the text so far, renews the lease and reads back
  the status (a stop asked from any process shows as "stopping"), or nothing if the fence is lost.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement,
    Connection,
    String,
    and_,
    bindparam,
    case,
    func,
    null,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from ..extensions import db, rowcount
from ..i18n import _
from ..models import LIVE, RETRYABLE, Conversation, Message, Outcome, Status, UTCDateTime, db_clock, utcnow
from . import holder

log = logging.getLogger(__name__)

# Why a turn ended before its model did (stored as the reply's finish_reason).
STOPPED = "stopped"
CLIENT_GONE = "client_disconnected"
LOST = "lost"  # a retry took the reply over (the fence); nothing is written
SHUT_DOWN = "server_stopped"  # the server shut down before a reply nobody watched had ended


class Saved(enum.Enum):
    SAVED = "saved"
    LOST = "lost"  # the fence did not match: someone else owns the reply now
    FAILED = "failed"  # the database refused the write for longer than we wait


class Lease:
    """A running turn's hold on its reply; ``cancel`` ends the turn early, whoever calls it."""

    def __init__(self, reply_id: int, attempt: int, conversation_id: int, token: str = ""):
        self.reply_id = reply_id
        self.attempt = attempt
        self.conversation_id = conversation_id
        self.token = token  # the reply row's lease_holder, as this turn wrote it (holder.new_token)
        self.parts: list[str] = []  # the text so far: the turn appends, the ticker reads
        self.ended: str | None = None  # why the turn must end early (STOPPED, CLIENT_GONE, LOST)
        self.saving = False  # the turn is saving the reply: a tick that misses it means nothing
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def text(self) -> str:
        return "".join(self.parts)

    def on_cancel(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if self.ended is None:
                self._callbacks.append(callback)
                return
        callback()

    def cancel(self, reason: str) -> bool:
        """End the turn early: the first reason wins; the model call is cancelled at once."""
        with self._lock:
            if self.ended is not None:
                return False
            self.ended = reason
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()
        return True

    def fence(self) -> dict[str, int | str]:
        return {"reply_id": self.reply_id, "fence_attempt": self.attempt, "fence_token": self.token}


# --- statements (built once; the turn's path pays for SQLite, not for building SQL) ------------

_m = Message.__table__.c
_FENCED = and_(
    _m.id == bindparam("reply_id"),
    _m.attempt == bindparam("fence_attempt"),
    _m.lease_holder == bindparam("fence_token"),
    _m.status.in_(LIVE),
)
_TICK = (
    update(Message.__table__)
    .where(_FENCED)
    .values(content=bindparam("content"), lease_until=db_clock() + bindparam("lease"))
    .returning(_m.status)
)
_FINISH = (
    update(Message.__table__)
    .where(_FENCED)
    .values(
        content=bindparam("content"),
        status=bindparam("status"),
        metadata=bindparam("meta"),
        lease_until=null(),
    )
)
_TOUCH = (
    update(Conversation.__table__)
    .where(Conversation.__table__.c.id == bindparam("conversation_id"))
    .values(
        updated_at=bindparam("updated_at"),
        # a new outcome when the turn has one (the customer asked for a person); an abandoned
        # conversation the customer came back to is open again
        outcome=case(
            (bindparam("outcome", type_=String).is_not(None), bindparam("outcome", type_=String)),
            (Conversation.__table__.c.outcome == Outcome.ABANDONED.value, null()),
            else_=Conversation.__table__.c.outcome,
        ),
        outcome_at=case(
            (bindparam("outcome", type_=String).is_not(None), bindparam("updated_at", type_=UTCDateTime())),
            (Conversation.__table__.c.outcome == Outcome.ABANDONED.value, null()),
            else_=Conversation.__table__.c.outcome_at,
        ),
    )
)


def _expired() -> Any:
    return or_(Message.lease_until.is_(None), Message.lease_until < db_clock())


def lock_owner(owner: str) -> None:
    """On PostgreSQL, the rest of this transaction runs alone for this owner, so two requests at
    once can't both pass a per-owner limit (SQLite runs one writer at a time anyway)."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:owner))"), {"owner": owner})


def tick(conn: Connection, lease: Lease, lease_seconds: float) -> str | None:
    """Save the text so far and renew the lease, in one statement; returns the reply's status
    ("stopping" when a stop was asked), or None when the turn no longer owns its reply."""
    return conn.execute(_TICK, {**lease.fence(), "content": lease.text(), "lease": lease_seconds}).scalar()


class Sleep(Protocol):
    def __call__(self, seconds: float, /) -> None: ...


def finish(
    lease: Lease,
    status: str,
    meta: dict[str, Any],
    *,
    give_up_after: float,
    outcome: str | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Sleep = time.sleep,
) -> Saved:
    """The final save, retried with backoff for up to ``give_up_after`` seconds while the
    database is busy (a write lock held by another process, a dropped connection)."""
    values = {**lease.fence(), "content": lease.text(), "status": status, "meta": meta}
    deadline = clock() + give_up_after
    delay = 0.05
    while True:
        try:
            with db.engine.begin() as conn:
                saved = rowcount(conn.execute(_FINISH, values)) == 1
                if saved:
                    conn.execute(
                        _TOUCH,
                        {
                            "conversation_id": lease.conversation_id,
                            "updated_at": utcnow(),
                            "outcome": outcome,
                        },
                    )
            return Saved.SAVED if saved else Saved.LOST
        except (OperationalError, DBAPIError) as exc:
            if not isinstance(exc, OperationalError) and not exc.connection_invalidated:
                raise
            if clock() + delay > deadline:
                log.error(
                    "could not save reply %s (gave up after %.1f s): %s",
                    lease.reply_id,
                    give_up_after,
                    exc.orig,
                )
                return Saved.FAILED
            log.warning("could not save reply %s yet, retrying: %s", lease.reply_id, exc.orig)
            sleep(delay)
            delay = min(delay * 2, 1.0)


# How many replies an owner has live (each a paid model call and a held stream).
_c = Conversation.__table__.c
LIVE_OWNED = (
    select(func.count())
    .select_from(Message.__table__.join(Conversation.__table__, _m.conversation_id == _c.id))
    .where(_c.owner == bindparam("owner"), _m.status.in_(LIVE))
).scalar_subquery()


def live_count(owner: str) -> int:
    count: int = db.session.execute(select(LIVE_OWNED), {"owner": owner}).scalar_one()
    return count


def claim_for_retry(
    conversation_id: int,
    message_id: int,
    lease_seconds: float,
    now: datetime,
    owner: str,
    max_live: int,
    token: str,
) -> int | None:
    """Take a failed, interrupted or abandoned reply for a new attempt; returns the attempt, or
    None when it is not waiting for a retry (complete, or still live with its lease running), or
    its owner already has ``max_live`` replies live.

    Atomic: two retries of one reply can't both win, and a turn still writing it is fenced out.
    """
    m = Message
    try:
        attempt = db.session.execute(
            update(m)
            .where(
                m.id == message_id,
                m.conversation_id == conversation_id,
                or_(m.status.in_(RETRYABLE), m.status.in_(LIVE) & _expired()),
                LIVE_OWNED < max_live,
            )
            .values(
                status=Status.STREAMING.value,
                content="",
                meta={},
                timestamp=now,
                attempt=m.attempt + 1,
                lease_until=db_clock() + lease_seconds,
                lease_holder=token,
            )
            .returning(m.attempt),
            {"owner": owner},
            execution_options={"synchronize_session": False},
        ).scalar()
    except IntegrityError:  # another reply of this conversation went live meanwhile
        db.session.rollback()
        return None
    if attempt is None:
        db.session.rollback()
        return None
    return attempt


def request_stop(conversation_id: int, message_id: int) -> bool:
    """Ask the turn writing ``message_id`` to stop, wherever it runs; False if it isn't live.

    The row says "stopping", which the turn's next tick reads (another process, another host);
    a turn in this process is cancelled at once as well (see ``live.py``).
    """
    m = Message
    result = db.session.execute(
        update(m)
        .where(m.id == message_id, m.conversation_id == conversation_id, m.status == Status.STREAMING.value)
        .values(status=Status.STOPPING.value),
        execution_options={"synchronize_session": False},
    )
    asked = rowcount(result) == 1
    db.session.commit()
    return asked


RATINGS = ("up", "down")
FEEDBACK_COMMENT_CHARS = 500


def can_rate(message: Message) -> bool:
    """A finished answer (with something in it) can be rated; a live one or a failure can't."""
    return not message.is_user and message.status not in LIVE and bool(message.content)


def set_feedback(message: Message, rating: str, comment: str | None) -> None:
    """The customer's rating of an answer (and an optional comment), kept in its metadata;
    a later rating replaces it."""
    feedback: dict[str, Any] = {"rating": rating, "at": utcnow().isoformat(timespec="seconds")}
    if comment:
        feedback["comment"] = comment
    message.meta = {**(message.meta or {}), "feedback": feedback}
    db.session.commit()


def sweep(conversation_id: int | None = None) -> int:
    """Mark live replies nobody writes any more as interrupted; returns how many.

    Nobody writes a reply whose lease ran out (its turn died, wherever it ran), nor one whose
    writing process on this machine has ended (a server killed and started again: known at once,
    see ``holder.py``). A reply another worker or host is still writing is left alone.
    """
    m = Message
    live: ColumnElement[bool] = m.status.in_(LIVE)
    if conversation_id is not None:
        live = live & (m.conversation_id == conversation_id)
    ended = {
        "status": Status.INTERRUPTED.value,
        "meta": {"finish_reason": "server_restarted"},
        "lease_until": None,
    }
    done = rowcount(
        db.session.execute(
            update(m).where(live, _expired()).values(**ended),
            execution_options={"synchronize_session": False},
        )
    )
    held = db.session.execute(
        select(m.id, m.attempt, m.lease_holder).where(live, m.lease_holder.is_not(None))
    )
    for reply_id, attempt, writer in held.all():
        if holder.gone(writer):
            done += rowcount(
                db.session.execute(
                    update(m).where(m.id == reply_id, m.attempt == attempt, live).values(**ended),
                    execution_options={"synchronize_session": False},
                )
            )
    db.session.commit()
    return done


# --- what a reader is shown ----------------------------------------------------------------


class Shown(Protocol):
    status: str
    meta: dict[str, Any]
    lease_expired: bool


def shown_status(message: Shown) -> str:
    """complete | streaming | error | interrupted: a live reply nobody writes any more (its
    lease ran out, or its writing process here has ended) reads as interrupted."""
    if message.status in LIVE:
        orphaned = message.lease_expired or holder.gone(getattr(message, "lease_holder", None))
        return Status.INTERRUPTED.value if orphaned else Status.STREAMING.value
    return message.status


def can_retry(message: Shown) -> bool:
    """Whether trying again can help: not for a key the model's server refuses, nor for a
    conversation too long for the model (its notice says what to do instead)."""
    return bool((message.meta or {}).get("retryable", True))


class Answer(Shown, Protocol):
    is_user: bool
    content: str


def can_regenerate(message: Answer) -> bool:
    """A finished answer can be asked for again as a new version (the current one kept): a
    complete one, or one the customer stopped (Retry would replace what they had read)."""
    if message.is_user or not message.content:
        return False
    status = shown_status(message)
    return status == Status.COMPLETE or (
        status == Status.INTERRUPTED and (message.meta or {}).get("finish_reason") == STOPPED
    )


def notice(message: Shown) -> str | None:
    """The one line under a reply that says how it ended, when that is not simply "complete"."""
    meta = message.meta or {}
    reason = meta.get("finish_reason")
    status = shown_status(message)
    if status == Status.ERROR:
        return _(meta["error"]) if meta.get("error") else _("The assistant could not answer.")
    if status == Status.INTERRUPTED:
        if reason == STOPPED:
            return _("Stopped.")
        if reason == "incomplete":
            why = _(meta["error"]) if meta.get("error") else _("the reply broke off.")
            return _("Incomplete: %(why)s", why=why)
        if reason == CLIENT_GONE and message.status not in LIVE:
            return _("Interrupted: the page was closed before the reply finished.")
        return _("Interrupted: the reply stopped before it finished.")
    if status == Status.COMPLETE:
        if reason == "length":
            return _("The reply reached its length limit and was cut short.")
        if reason == "content_filter":
            return _("The model's content filter withheld all or part of this reply.")
    return None
