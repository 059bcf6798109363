"""The admin area's conversations: everybody's, filtered and searched, a page at a time; one as
its transcript with each reply's metadata; deleted or exported (audited).

The list is newest first (last update) and paged by a keyset cursor on ``(updated_at, id)``,
never an offset: the next page starts where the last one ended, read from the ``updated_at``
index, so page 2,000 costs what page 1 does at 100,000 conversations. Every filter is one
condition on the conversation (those about replies an ``EXISTS`` on the conversation's shown
replies), so they compose with each other, with the search (``search.anyone_matches``) and
with the cursor. A filter value the page doesn't know is refused with a 400 that says which.

The transcript is the shown path (``export.shown_messages``), the exports are the customer's own
(``export.py``), and deleting is the sidebar's (``conversations.delete_conversations``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import abort, current_app, redirect, render_template, request, url_for
from sqlalchemy import ColumnElement, Select, exists, false, or_, select
from sqlalchemy.orm import aliased
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from ..chat import export
from ..chat.conversations import delete_conversations
from ..chat.export_views import JSON, JSONL, MARKDOWN, _with_newline, content_disposition, download
from ..chat.search import anyone_matches
from ..extensions import db
from ..i18n import LANGUAGES, _
from ..models import Conversation, Message, Outcome, Status
from . import signin
from .audit import audit
from .views import bp

PAGE = 50
OPEN = "open"
OUTCOMES = (OPEN, *(o.value for o in Outcome))
RATINGS = ("up", "down")
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,99}")
_CURSOR = re.compile(r"(\d{1,20})-(\d{1,19})")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
MAX_QUERY_CHARS = 200


class BadFilter(ValueError):
    """A filter value the list doesn't know (its message says which, for the page)."""


@dataclass(frozen=True, slots=True)
class Filters:
    since: date | None = None  # created on or after (UTC day)
    until: date | None = None  # created on or before (UTC day)
    outcome: str | None = None  # one of OUTCOMES
    rating: str | None = None  # a shown reply rated "up" / "down"
    model: str | None = None  # a shown reply written by this model
    error: bool = False  # a shown reply that failed
    lang: str | None = None  # a shown reply in this language
    q: str = ""  # the search, across all conversations

    def args(self) -> dict[str, str]:
        """As the list's query string (only what is set)."""
        values = {
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
            "outcome": self.outcome or "",
            "rating": self.rating or "",
            "model": self.model or "",
            "error": "1" if self.error else "",
            "lang": self.lang or "",
            "q": self.q,
        }
        return {k: v for k, v in values.items() if v}


def _day(args: MultiDict[str, str], name: str, label: str) -> date | None:
    value = args.get(name, "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value) if len(value) == 10 else _bad_day(label)
    except ValueError:
        return _bad_day(label)


def _bad_day(label: str) -> date:
    raise BadFilter(_("%(field)s must be a date written YYYY-MM-DD.", field=label))


def _choice(args: MultiDict[str, str], name: str, allowed: tuple[str, ...], label: str) -> str | None:
    value = args.get(name, "").strip()
    if not value:
        return None
    if value not in allowed:
        raise BadFilter(_("%(field)s must be one of: %(allowed)s.", field=label, allowed=", ".join(allowed)))
    return value


def parse_filters(args: MultiDict[str, str]) -> Filters:
    """The list's filters from its query string; BadFilter for a value it doesn't know."""
    since = _day(args, "since", _("From"))
    until = _day(args, "until", _("To"))
    if since and until and since > until:
        raise BadFilter(_("The first day comes after the last one."))
    model = args.get("model", "").strip() or None
    if model is not None and not _MODEL.fullmatch(model):
        raise BadFilter(_("A model name is up to 100 letters, digits and . _ : / @ + -"))
    error = args.get("error", "").strip()
    if error not in ("", "0", "1"):
        raise BadFilter(_("%(field)s must be one of: %(allowed)s.", field=_("With an error"), allowed="0, 1"))
    return Filters(
        since=since,
        until=until,
        outcome=_choice(args, "outcome", OUTCOMES, _("Outcome")),
        rating=_choice(args, "rating", RATINGS, _("Rating")),
        model=model,
        error=error == "1",
        lang=_choice(args, "lang", tuple(LANGUAGES), _("Language")),
        q=args.get("q", "")[:MAX_QUERY_CHARS].strip(),
    )


# --- the cursor ------------------------------------------------------------------------------


def encode_cursor(updated_at: datetime, conversation_id: int) -> str:
    """Where a page ended: the last row's (updated_at, id), as ``<microseconds>-<id>``."""
    return f"{(updated_at.astimezone(UTC) - _EPOCH) // _MICROSECOND}-{conversation_id}"


def decode_cursor(value: str) -> tuple[datetime, int]:
    match = _CURSOR.fullmatch(value.strip())
    try:
        if match is None:
            raise ValueError
        return _EPOCH + int(match.group(1)) * _MICROSECOND, int(match.group(2))
    except (ValueError, OverflowError):
        raise BadFilter(_("That page link is not valid any more: start from the first page.")) from None


# --- the query -------------------------------------------------------------------------------


def _reply_where(condition: Any) -> ColumnElement[bool]:
    """The conversation has a shown reply for which ``condition(reply)`` holds."""
    reply = aliased(Message)
    return exists().where(
        reply.conversation_id == Conversation.id, reply.shown, reply.is_user.is_(false()), condition(reply)
    )


def conditions(filters: Filters) -> list[Any]:
    """One condition per filter set (all of them hold for a conversation listed)."""
    where: list[Any] = []
    if filters.since:
        where.append(Conversation.created_at >= datetime.combine(filters.since, datetime.min.time(), UTC))
    if filters.until:
        end = datetime.combine(filters.until + timedelta(days=1), datetime.min.time(), UTC)
        where.append(Conversation.created_at < end)
    if filters.outcome == OPEN:
        where.append(Conversation.outcome.is_(None))
    elif filters.outcome:
        where.append(Conversation.outcome == filters.outcome)
    if rating := filters.rating:
        where.append(_reply_where(lambda m: m.meta[("feedback", "rating")].as_string() == rating))
    if model := filters.model:
        where.append(_reply_where(lambda m: m.meta["model"].as_string() == model))
    if filters.error:
        where.append(
            _reply_where(
                lambda m: or_(m.status == Status.ERROR.value, m.meta["error"].as_string().is_not(None))
            )
        )
    if lang := filters.lang:
        where.append(_reply_where(lambda m: m.meta["lang"].as_string() == lang))
    if filters.q and (match := anyone_matches(filters.q, db.session.get_bind().dialect.name)) is not None:
        where.append(match)
    return where


_LISTED = export.INFO_COLUMNS  # (the conversation's own columns, as an export reads them)


def list_query(filters: Filters, after: tuple[datetime, int] | None, limit: int) -> Select[*tuple[Any, ...]]:
    query = select(*_LISTED).where(*conditions(filters))
    if after is not None:
        at, cid = after
        # (the first term alone is what the updated_at index answers; the second breaks ties)
        query = query.where(
            Conversation.updated_at <= at, or_(Conversation.updated_at < at, Conversation.id < cid)
        )
    return query.order_by(Conversation.updated_at.desc(), Conversation.id.desc()).limit(limit)


@dataclass(slots=True)
class Row:
    id: int
    public_id: str
    title: str
    created_at: datetime
    updated_at: datetime
    outcome: str | None
    messages: int = 0
    up: int = 0
    down: int = 0
    models: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Page:
    rows: list[Row]
    next_cursor: str | None


def _summaries(rows: list[Row]) -> None:
    """Each row's shown messages counted, its ratings and its models (one query for the page)."""
    by_id = {row.id: row for row in rows}
    if not by_id:
        return
    found = db.session.execute(
        select(Message.conversation_id, Message.is_user, Message.meta.label("meta"))
        .where(Message.conversation_id.in_(by_id), Message.shown)
        .order_by(Message.id)
    )
    for cid, is_user, meta in found:
        row = by_id[cid]
        row.messages += 1
        if is_user or not meta:
            continue
        rating = (meta.get("feedback") or {}).get("rating")
        row.up += rating == "up"
        row.down += rating == "down"
        model = meta.get("model")
        if isinstance(model, str) and model not in row.models:
            row.models.append(model)


def list_page(filters: Filters, cursor: str | None = None, limit: int = PAGE) -> Page:
    """A page of the list (newest first) and the cursor of the next one (None: the last page)."""
    after = decode_cursor(cursor) if cursor else None
    found = db.session.execute(list_query(filters, after, limit + 1)).all()
    rows = [Row(*r) for r in found[:limit]]
    _summaries(rows)
    more = len(found) > limit
    return Page(rows, encode_cursor(rows[-1].updated_at, rows[-1].id) if more and rows else None)


# --- the pages -------------------------------------------------------------------------------


def _by_public_id_or_404(public_id: str) -> Conversation:
    conversation = db.session.execute(
        select(Conversation).where(Conversation.public_id == public_id[:32])
    ).scalar_one_or_none()
    if conversation is None:
        abort(404)
    return conversation


def outcome_label(outcome: str | None) -> str:
    labels = {
        OPEN: _("Open"),
        Outcome.RESOLVED.value: _("Resolved"),
        Outcome.UNRESOLVED.value: _("Unresolved"),
        Outcome.ESCALATED.value: _("Escalated"),
        Outcome.ABANDONED.value: _("Abandoned"),
    }
    return labels.get(outcome or OPEN, outcome or "")


@bp.get("/conversations")
def conversations() -> tuple[str, int] | str:
    try:
        filters = parse_filters(request.args)
        page = list_page(filters, request.args.get("after") or None, PAGE)
    except BadFilter as exc:
        body = render_template(
            "admin/conversations.html",
            admin=signin.current(),
            error=str(exc),
            filters=Filters(),
            args=request.args,
            page=Page([], None),
            outcomes=OUTCOMES,
            languages=LANGUAGES,
            outcome_label=outcome_label,
            first_page=True,
        )
        return body, 400
    return render_template(
        "admin/conversations.html",
        admin=signin.current(),
        error=None,
        filters=filters,
        args=filters.args(),
        page=page,
        outcomes=OUTCOMES,
        languages=LANGUAGES,
        outcome_label=outcome_label,
        first_page=not request.args.get("after"),
    )


@bp.get("/conversations/<public_id>")
def conversation(public_id: str) -> str:
    info = export.ConversationInfo.of(_by_public_id_or_404(public_id))
    return render_template(
        "admin/conversation.html",
        admin=signin.current(),
        conversation=info,
        messages=list(export.shown_messages(info.id)),
        outcome_label=outcome_label,
    )


@bp.route("/conversations/<public_id>/delete", methods=["GET", "POST"])
def delete(public_id: str) -> Response | str:
    conversation = _by_public_id_or_404(public_id)
    if request.method == "GET":
        return render_template("admin/delete.html", admin=signin.current(), conversation=conversation)
    title, owner = conversation.title, conversation.owner
    _, n_messages = delete_conversations([conversation.id])
    audit("conversation_deleted", public_id=public_id, title=title, owner=owner, messages=n_messages)
    return redirect(url_for("admin.conversations", deleted=1), 303)


EXPORTS = {"md": MARKDOWN, "json": JSON, "jsonl": JSONL}


@bp.get("/conversations/<public_id>/export.<fmt>")
def export_conversation(public_id: str, fmt: str) -> Response:
    if fmt not in EXPORTS:
        abort(404)
    info = export.ConversationInfo.of(_by_public_id_or_404(public_id))
    audit("conversation_exported", public_id=info.public_id, format=fmt)
    if fmt == "md":
        chunks = export.markdown(info, export.shown_messages(info.id))
    elif fmt == "json":
        chunks = _with_newline(export.json_document(info, export.shown_messages(info.id)))
    else:
        chunks = export.jsonl([info], current_app.config["SYSTEM_PROMPT"])
    return download(chunks, EXPORTS[fmt], content_disposition(info.title, fmt))
