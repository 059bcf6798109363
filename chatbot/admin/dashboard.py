"""The admin dashboard's figures: plain functions of a date range (UTC days, both ends included).

How they are computed: the rows of the range are read in bounded batches (keyset on the primary
key, ``BATCH`` rows at a time) and added up in Python. Only the few fields a figure needs are read:
the JSON ones through SQLAlchemy's JSON path accessors (``meta["model"].as_string()``…), which
compile to ``JSON_EXTRACT`` on SQLite and ``->>`` / ``#>>`` on PostgreSQL, so a reply's retrieved
passages and sources never leave the database. Why not ``GROUP BY`` in SQL: a UTC day of a
timestamp is written differently on each database (and PostgreSQL's depends on the session's time
zone), and the percentiles of time to first token need the values anyway; reading the range once
keeps every figure of a day and of a model from the same rows, on both databases.

What counts where:
- a **day**'s conversations are those started that day (``created_at``), and its confirmed
  resolution rate is how many of those ended ``resolved`` (the customer said so; nothing else
  counts) out of all of them, open ones included;
- a day's messages, replies, errors, feedback, tokens, cost and times to first token are those of
  the messages written that day (``timestamp``), every version included (a regenerated reply was
  a real call: its tokens were paid for);
- a **model**'s conversations are the conversations with at least one reply of that model in the
  range, and its rate how many of those ended ``resolved``; its messages are its replies.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import aliased

from ..extensions import db
from ..models import Conversation, Message, Outcome, Status

BATCH = 5000
DEFAULT_DAYS = 30
MAX_DAYS = 366
TOP_QUESTIONS = 20
UNANSWERED_OUTCOMES = (Outcome.UNRESOLVED.value, Outcome.ESCALATED.value)
UNANSWERED_SOURCES = ("off_topic", "fallback")
NO_MODEL = ""  # (replies without a model: the offline assistant's, or an error before any call)


class BadRange(ValueError):
    """A date range the dashboard can't show (its message is for the page)."""


@dataclass(frozen=True, slots=True)
class Range:
    first: date
    last: date  # (included)

    @property
    def start(self) -> datetime:
        return datetime(self.first.year, self.first.month, self.first.day, tzinfo=UTC)

    @property
    def end(self) -> datetime:  # (excluded)
        return self.start + timedelta(days=self.days)

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def each_day(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range(self.days)]


def parse_range(first: str | None, last: str | None, today: date | None = None) -> Range:
    """``?from=YYYY-MM-DD&to=YYYY-MM-DD``; either may be left out (the last ``DEFAULT_DAYS`` days
    up to today, UTC). Raises ``BadRange`` for a date that isn't one, ``from`` after ``to`` or a
    range longer than ``MAX_DAYS``."""
    today = today or datetime.now(UTC).date()

    def day(value: str | None, name: str) -> date | None:
        if value is None or value.strip() == "":
            return None
        try:
            if len(value.strip()) != 10:
                raise ValueError(value)
            return date.fromisoformat(value.strip())
        except ValueError:
            raise BadRange(f"{name}: {value!r} is not a date like 2025-01-31") from None

    end = day(last, "to") or today
    begin = day(first, "from") or end - timedelta(days=DEFAULT_DAYS - 1)
    if begin > end:
        raise BadRange("from must not be after to")
    if (end - begin).days + 1 > MAX_DAYS:
        raise BadRange(f"a range is at most {MAX_DAYS} days")
    return Range(begin, end)


# --- prices --------------------------------------------------------------------------------------


def price_for(model: str, prices: Mapping[str, Mapping[str, float]]) -> Mapping[str, float] | None:
    """A model's prices (USD per million tokens, "input" and "output"): the longest prefix of its
    id in ``prices`` (so "ft:gpt-4.1-nano-2025-04-14:shop::abc" finds "ft:gpt-4.1-nano"), or None."""
    best = None
    for prefix in prices:
        if model.startswith(prefix) and (best is None or len(prefix) > len(best)):
            best = prefix
    return prices[best] if best is not None else None


def cost_of(
    model: str, prompt: int, completion: int, prices: Mapping[str, Mapping[str, float]]
) -> float | None:
    price = price_for(model, prices) if model else None
    if price is None:
        return None
    return (prompt * float(price["input"]) + completion * float(price["output"])) / 1_000_000


def percentile(values: Sequence[float], p: float) -> float | None:
    """The p-th percentile (0-100) by linear interpolation between closest ranks (numpy's
    default); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# --- the figures ---------------------------------------------------------------------------------


@dataclass
class Figures:
    """One row of the dashboard: a day, a model or the whole range."""

    conversations: int = 0
    resolved: int = 0
    messages: int = 0
    replies: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    unpriced_tokens: int = 0  # (tokens of models without a price: not in ``cost``)
    ttfts: list[float] = field(default_factory=list, repr=False)

    @property
    def resolution_rate(self) -> float | None:
        return self.resolved / self.conversations if self.conversations else None

    @property
    def ttft_p50(self) -> float | None:
        return percentile(self.ttfts, 50)

    @property
    def ttft_p95(self) -> float | None:
        return percentile(self.ttfts, 95)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Dashboard:
    range: Range
    days: dict[date, Figures]
    models: dict[str, Figures]
    total: Figures
    priced: dict[str, bool]  # model -> whether config has its price


def _batches(statement: Any, key: Any) -> Iterator[Any]:
    """The rows of ``statement`` in primary-key order, ``BATCH`` at a time (keyset: each batch
    starts after the last key read, so a batch costs the same at the start and at the end)."""
    last = 0
    while True:
        rows = db.session.execute(statement.where(key > last).order_by(key).limit(BATCH)).all()
        yield from rows
        if len(rows) < BATCH:
            return
        last = rows[-1][0]


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def figures(span: Range, prices: Mapping[str, Mapping[str, float]]) -> Dashboard:
    """Every figure of the dashboard for ``span`` (see the module's docstring for what counts)."""
    days = {d: Figures() for d in span.each_day()}
    models: dict[str, Figures] = {}
    total = Figures()
    outcomes: dict[int, str | None] = {}  # conversation id -> outcome, of those read below

    started = select(Conversation.id, Conversation.created_at, Conversation.outcome).where(
        Conversation.created_at >= span.start, Conversation.created_at < span.end
    )
    for conv_id, created_at, outcome in _batches(started, Conversation.id):
        outcomes[conv_id] = outcome
        row = days[_day(created_at)]
        for figs in (row, total):
            figs.conversations += 1
            figs.resolved += outcome == Outcome.RESOLVED.value

    meta = Message.meta
    written = select(
        Message.id,
        Message.conversation_id,
        Message.timestamp,
        Message.is_user,
        Message.status,
        meta["model"].as_string(),
        meta["prompt_tokens"].as_float(),
        meta["completion_tokens"].as_float(),
        meta["ttft_ms"].as_float(),
        meta[("feedback", "rating")].as_string(),
    ).where(Message.timestamp >= span.start, Message.timestamp < span.end)
    model_conversations: dict[str, set[int]] = {}
    for _id, conv_id, timestamp, is_user, status, model, prompt, completion, ttft, rating in _batches(
        written, Message.id
    ):
        day = days[_day(timestamp)]
        day.messages += 1
        total.messages += 1
        if is_user:
            continue
        model = model or NO_MODEL
        by_model = models.setdefault(model, Figures())
        model_conversations.setdefault(model, set()).add(conv_id)
        by_model.messages += 1
        prompt, completion = _int(prompt), _int(completion)
        cost = cost_of(model, prompt, completion, prices)
        for figs in (day, by_model, total):
            figs.replies += 1
            figs.errors += status == Status.ERROR.value
            figs.thumbs_up += rating == "up"
            figs.thumbs_down += rating == "down"
            figs.prompt_tokens += prompt
            figs.completion_tokens += completion
            if cost is None:
                figs.unpriced_tokens += prompt + completion
            else:
                figs.cost += cost
            if ttft is not None:
                figs.ttfts.append(float(ttft))

    # a model's conversations: those with one of its replies (their outcome, read in batches)
    missing = sorted({c for ids in model_conversations.values() for c in ids} - outcomes.keys())
    for start in range(0, len(missing), BATCH):
        chunk = missing[start : start + BATCH]
        rows = db.session.execute(
            select(Conversation.id, Conversation.outcome).where(Conversation.id.in_(chunk))
        )
        outcomes.update({conv_id: outcome for conv_id, outcome in rows})
    for model, ids in model_conversations.items():
        models[model].conversations = len(ids)
        models[model].resolved = sum(outcomes.get(c) == Outcome.RESOLVED.value for c in ids)

    ordered = dict(sorted(models.items(), key=lambda item: (-item[1].replies, item[0])))
    priced = {m: bool(m) and price_for(m, prices) is not None for m in ordered}
    return Dashboard(span, days, ordered, total, priced)


# --- the questions that went unanswered ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Question:
    message_id: int
    content: str
    timestamp: datetime
    public_id: str
    outcome: str | None
    reasons: tuple[str, ...]  # "thumbs_down", "unresolved", "escalated", "off_topic", "fallback"


def unanswered(span: Range, limit: int = TOP_QUESTIONS) -> list[Question]:
    """The most recent ``limit`` customer messages of the range (on the path their conversation
    shows) whose reply got a thumbs down or was off-topic or a fallback, or whose conversation
    ended unresolved or escalated; newest first, each with why it is here."""
    reply = aliased(Message)
    rating = reply.meta[("feedback", "rating")].as_string()
    source = reply.meta["answered_from"].as_string()
    bad_reply = exists().where(
        reply.parent_id == Message.id,
        reply.conversation_id == Message.conversation_id,
        or_(rating == "down", source.in_(UNANSWERED_SOURCES)),
    )
    statement = (
        select(Message.id, Message.content, Message.timestamp, Conversation.public_id, Conversation.outcome)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(
            Message.is_user,
            Message.shown,
            Message.timestamp >= span.start,
            Message.timestamp < span.end,
            or_(Conversation.outcome.in_(UNANSWERED_OUTCOMES), bad_reply),
        )
        .order_by(Message.timestamp.desc(), Message.id.desc())
        .limit(limit)
    )
    rows = db.session.execute(statement).all()
    if not rows:
        return []
    why: dict[int, set[str]] = {row[0]: set() for row in rows}
    replies = select(reply.parent_id, rating, source).where(
        and_(reply.parent_id.in_(list(why)), reply.is_user.is_(False))
    )
    for parent_id, reply_rating, reply_source in db.session.execute(replies):
        if reply_rating == "down":
            why[parent_id].add("thumbs_down")
        if reply_source in UNANSWERED_SOURCES:
            why[parent_id].add(reply_source)
    order = ("thumbs_down", "off_topic", "fallback", "unresolved", "escalated")
    found = []
    for message_id, content, timestamp, public_id, outcome in rows:
        reasons = why[message_id] | ({outcome} if outcome in UNANSWERED_OUTCOMES else set())
        found.append(
            Question(
                message_id, content, timestamp, public_id, outcome, tuple(r for r in order if r in reasons)
            )
        )
    return found
