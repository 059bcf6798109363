"""HTTP only: parse the form, find the owner's conversation (404 otherwise), pick a template.

The conversation rules live in ``turns.py`` and ``replies.py``. An htmx post is answered with a
``text/event-stream`` that htmx 4's ``sse`` extension swaps in message by message; the same form
posted without JavaScript runs the turn to the end and redirects to the conversation.

Every route below a conversation (``/c/<id>/…``) goes through ``owned_conversation_or_404``:
ownership is checked in one place.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

from flask import (
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)
from werkzeug.routing import BaseConverter, ValidationError
from werkzeug.wrappers import Response as BaseResponse

from .. import ratelimit
from ..i18n import _
from ..llm import get_provider
from ..models import Conversation, Message
from ..rendering import StreamingMarkdown
from . import bp, conversations, outcomes, queries, replies, stream, turns, versions
from .live import live_replies
from .pump import Heartbeat
from .turns import Delta, Finished, Settings, TurnRefused

MAX_ID = 2**31 - 1  # ids fit a 32-bit integer on every database
_DIGITS = re.compile(r"[0-9]{1,10}")
# Stripped from a rating's comment: control characters, and the invisible ones that reorder or
# hide text (bidi overrides and isolates, zero-width space, BOM), which would only disguise a
# comment where the shop reads it.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200b\u202a-\u202e\u2066-\u2069\ufeff]")


class IdConverter(BaseConverter):
    """``<id:name>``: an id in a path, ASCII digits within range (werkzeug's ``int`` takes any
    Unicode digit); anything else is a 404."""

    regex = r"[0-9]{1,10}"

    def to_python(self, value: str) -> int:
        number = _id(value)
        if number is None:
            raise ValidationError()
        return number


# --- the browser's identity and its conversations ------------------------------------------


def current_owner() -> str | None:
    """The browser's random owner token, if it has one (its first accepted message made it)."""
    owner: str | None = session.get("owner")
    return owner


def remember(owner: str, public_id: str) -> None:
    """After an accepted message: the session keeps the owner and the open conversation.

    The owner is issued only here, so a refused or cross-site request never creates a session
    (nor replaces the visitor's cookie), and the session id is rotated as it is issued (a planted
    id can't be used to read later conversations). An active browser's session is renewed once a
    day."""
    if session.get("owner") != owner:
        current_app.session_interface.regenerate(session)  # type: ignore[attr-defined]
        session["owner"] = owner
    if session.get("current") != public_id:
        session["current"] = public_id
    today = date.today().isoformat()
    if session.get("renewed") != today:  # one write a day keeps an active browser's session alive
        session["renewed"] = today


def owned_conversation_or_404(public_id: str) -> Conversation:
    """Every route that touches a conversation goes through here: other owners get 404."""
    conversation = queries.find_conversation(current_owner(), public_id)
    if conversation is None:
        abort(404, description=_("This conversation doesn't exist, or it isn't yours."))
    return conversation


def owned_message_or_404(public_id: str, message_id: int) -> tuple[Conversation, Message]:
    conversation = owned_conversation_or_404(public_id)
    message = queries.message_in(conversation, message_id)
    if message is None:
        abort(404, description=_("This message doesn't exist, or it isn't yours."))
    return conversation, message


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def settings() -> Settings:
    return Settings.from_config(current_app.config)


def render_chat(
    conversation: Conversation | None,
    *,
    error: str | None = None,
    draft: str = "",
    status: int = 200,
    before: int | None = None,
    editing: int | None = None,
    edit_draft: str | None = None,
) -> tuple[str, int]:
    """The chat page. ``editing``: that message of the customer's shows its editor (without
    JavaScript, its Edit button opens the page so), holding ``edit_draft`` (a refused edit's
    text) or the message's own."""
    messages, has_more = (
        queries.messages_of(conversation, before, current_app.config["PAGE_MESSAGES"])
        if conversation
        else ([], False)
    )
    conversations, next_after = queries.conversation_page(current_owner())
    edited = queries.message_in(conversation, editing) if conversation and editing else None
    if edited is not None and (not edited.is_user or not edited.shown):
        edited = None
    return render_template(
        "chat/page.html",
        conversation=conversation,
        conversations=conversations,
        next_after=next_after,
        messages=messages,
        versions=queries.versions_of(conversation.id, messages) if conversation else {},
        has_more=has_more,
        before=before,
        last_id=messages[-1].id if messages and before is None else None,
        error=error,
        draft=draft,
        editing=edited,
        edit_draft=edit_draft if edit_draft is not None else edited.content if edited else None,
        max_chars=current_app.config["MAX_MESSAGE_CHARS"],
    ), status


# --- pages ---------------------------------------------------------------------------------


@bp.get("/")
def index() -> tuple[str, int]:
    """The conversation this browser had open, or an empty one (created by its first message)."""
    conversation = queries.find_conversation(current_owner(), session.get("current"))
    return render_chat(conversation)


@bp.get("/c/<public_id>")
def show(public_id: str) -> tuple[str, int]:
    conversation = owned_conversation_or_404(public_id)
    if session.get("current") != public_id:
        session["current"] = public_id
    return render_chat(
        conversation, before=request.args.get("before", type=_id), editing=request.args.get("edit", type=_id)
    )


@bp.get("/c/<public_id>/earlier")
def earlier(public_id: str) -> Any:
    """The messages before ``before``, for the "Show earlier messages" link (htmx swaps it)."""
    conversation = owned_conversation_or_404(public_id)
    before = request.args.get("before", type=_id)
    if before is None:
        abort(400, description=_("Which messages? The link is missing its 'before' id."))
    if not is_htmx():
        return redirect(url_for("chat.show", public_id=public_id, before=before), 303)
    messages, has_more = queries.messages_of(conversation, before, current_app.config["PAGE_MESSAGES"])
    return _message_list(conversation, messages, has_more, last_id=None)


@bp.get("/conversations")
def conversation_list() -> Any:
    """The next page of the sidebar's list (after the conversation last listed)."""
    after = request.args.get("after", "")
    cid = _id(request.args.get("id"))
    cursor = _list_cursor(after, cid) if after and cid is not None else None
    conversations, next_after = queries.conversation_page(current_owner(), cursor)
    current = session.get("current")
    if not is_htmx():  # (the "More conversations" link without JavaScript)
        return (
            redirect(url_for("chat.index"), 303)
            if not conversations
            else render_template(
                "chat/list_page.html", conversations=conversations, next_after=next_after, current=current
            )
        )
    return render_template(
        "chat/_conversation_rows.html", conversations=conversations, next_after=next_after, current=current
    )


def _list_cursor(after: str, cid: int) -> tuple[datetime, int]:
    """Where the next page of the list starts: the last row's time (with its zone) and id."""
    try:
        when = datetime.fromisoformat(after)
        if when.tzinfo is None:
            raise ValueError("a time without its zone")
        return when.astimezone(UTC), cid
    except (ValueError, OverflowError):  # (not a time; no zone; a time whose UTC is out of range)
        abort(400, description=_("That list page doesn't exist."))


@bp.post("/c/<public_id>/rename")
@ratelimit.stops
def rename(public_id: str) -> Any:
    """A name the customer chose for the conversation; the row (and the open chat's title) follow."""
    conversation = owned_conversation_or_404(public_id)
    try:
        conversations.rename(conversation, request.form.get("title", ""))
    except ValueError as refused:
        if is_htmx():
            abort(400, description=str(refused))
        # without JavaScript: the form again, with what was typed and why it was refused
        page = render_template(
            "chat/rename.html",
            conversation=conversation,
            error=str(refused),
            typed=request.form.get("title", ""),
        )
        return page, 400
    if not is_htmx():
        return redirect(url_for("chat.show", public_id=public_id), 303)
    return render_template(
        "chat/_renamed.html",
        c=conversation,
        current=session.get("current"),
        open=session.get("current") == public_id,
    )


@bp.get("/c/<public_id>/rename")
def rename_page(public_id: str) -> str:
    """Without JavaScript: the rename form (with it, the name is edited in its row)."""
    return render_template("chat/rename.html", conversation=owned_conversation_or_404(public_id))


@bp.get("/c/<public_id>/delete")
def confirm_delete(public_id: str) -> str:
    """Without JavaScript: the confirmation, naming the conversation (htmx asks in a dialog)."""
    return render_template("chat/confirm_delete.html", conversation=owned_conversation_or_404(public_id))


@bp.post("/c/<public_id>/delete")
@ratelimit.stops
def delete(public_id: str) -> Any:
    """Delete the conversation (a reply still being written in it is stopped first). Deleting the
    open one moves to the next in the list (or an empty chat)."""
    conversation = owned_conversation_or_404(public_id)
    listed, _more = queries.conversation_page(current_owner(), limit=500)
    ids = [c.public_id for c in listed]
    position = ids.index(public_id) if public_id in ids else 0
    rest = [pid for pid in ids if pid != public_id]
    conversations.delete_conversations([conversation.id])
    was_open = session.get("current") == public_id
    if was_open:
        session.pop("current", None)
    following = rest[min(position, len(rest) - 1)] if rest else None
    target = url_for("chat.show", public_id=following) if following else url_for("chat.index")
    if not is_htmx():
        return redirect(target if was_open else url_for("chat.index"), 303)
    response = Response("", 200)
    if was_open:  # the page goes to the next conversation (htmx follows HX-Location), list and all
        response.headers["HX-Location"] = json.dumps(
            {"path": target, "target": ".layout", "select": ".layout", "swap": "outerHTML"}
        )
    return response


@bp.post("/new")
def new_conversation() -> BaseResponse:
    """Start an empty chat; the old conversation stays saved."""
    session.pop("current", None)
    return redirect(url_for("chat.index"), 303)


# --- a turn --------------------------------------------------------------------------------


@bp.post("/c")
@ratelimit.new_sessions
@ratelimit.messages
def start() -> Any:
    """The first message of a new conversation (which it creates)."""
    return _turn(None)


@bp.post("/c/<public_id>/messages")
@ratelimit.messages
def send(public_id: str) -> Any:
    """A message in this conversation, or (``retry=<reply id>``) the last reply again."""
    return _turn(owned_conversation_or_404(public_id))


def _turn(conversation: Conversation | None) -> Any:
    """A message; or (one of these fields) ``retry`` the last failed reply in place,
    ``regenerate`` the last answer as a new version, ``edit`` an earlier message of the
    customer's as a new version (``edit_content`` its new text: the editor inside the message
    belongs to the composer's form, whose own draft stays as it is)."""
    if request.files:
        abort(400, description=_("Files can't be sent with a message."))
    content = request.form.get("content", "")
    retry, regenerate = request.form.get("retry"), request.form.get("regenerate")
    edit = request.form.get("edit") or None
    editing = None
    last_seen = _id(request.form.get("after"))  # the last message the page shows
    try:
        if conversation is not None and last_seen is not None:
            turns.check_current(conversation, last_seen)
        if retry is not None or regenerate is not None or edit is not None:
            target = _id(retry if retry is not None else regenerate if regenerate is not None else edit)
            if conversation is None or target is None:
                raise TurnRefused(_("That message isn't in this conversation."), 409)
            if retry is not None:
                turn = turns.begin_retry(conversation, target, settings())
            elif regenerate is not None:
                turn = turns.begin_regenerate(conversation, target, settings())
            else:
                editing, content = target, request.form.get("edit_content", "")
                turn = turns.begin_edit(conversation, target, content, settings())
        else:
            owner = current_owner() or secrets.token_urlsafe(24)
            turn = turns.begin_turn(owner, conversation, content, settings())
    except TurnRefused as refused:
        if is_htmx():
            return render_template("chat/_composer_error.html", error=refused.message), refused.status
        return render_chat(
            conversation,
            error=refused.message,
            draft=request.form.get("content", ""),
            status=refused.status,
            editing=editing,
            edit_draft=content if editing else None,
        )

    if retry is None and regenerate is None and edit is None:
        remember(owner, turn.conversation.public_id)
    elif session.get("current") != turn.conversation.public_id:
        session["current"] = turn.conversation.public_id
    if is_htmx():
        return _stream(turn, retried=retry is not None)
    for _event in _run(turn, watched=False):
        pass
    return redirect(url_for("chat.show", public_id=turn.conversation.public_id), 303)


@bp.post("/c/<public_id>/messages/<id:message_id>/stop")
@ratelimit.stops
def stop(public_id: str, message_id: int) -> Any:
    """Ask the running reply to stop, wherever it runs; it is saved as stopped and ends its stream."""
    conversation, _message = owned_message_or_404(public_id, message_id)
    # At once if the turn runs in this process (no database needed: a busy one can't delay it),
    # and through the row for a turn in another process, which its next tick reads.
    if not live_replies(current_app).cancel(message_id, replies.STOPPED):
        replies.request_stop(conversation.id, message_id)
    if is_htmx():
        return "", 204
    return redirect(url_for("chat.show", public_id=conversation.public_id), 303)


@bp.post("/c/<public_id>/messages/<id:message_id>/feedback")
@ratelimit.stops
def feedback(public_id: str, message_id: int) -> Any:
    """Thumbs up or down on an answer, with an optional comment; changeable."""
    conversation, found = owned_message_or_404(public_id, message_id)
    rating = request.form.get("rating", "")
    if rating not in replies.RATINGS:
        abort(400, description=_("Choose thumbs up or thumbs down."))
    if not replies.can_rate(found):
        abort(409, description=_("Only a finished answer can be rated."))
    comment = _CONTROL.sub("", request.form.get("comment", "").replace("\r\n", "\n")).strip()
    if len(comment) > replies.FEEDBACK_COMMENT_CHARS:
        abort(
            400,
            description=_(
                "A comment can be up to %(limit)s characters.", limit=replies.FEEDBACK_COMMENT_CHARS
            ),
        )
    replies.set_feedback(found, rating, comment or None)
    if not is_htmx():
        return redirect(url_for("chat.show", public_id=public_id) + f"#msg-{message_id}", 303)
    return _one_message(conversation, found, poll=False)


@bp.post("/c/<public_id>/messages/<id:message_id>/outcome")
@ratelimit.stops
def outcome(public_id: str, message_id: int) -> Any:
    """The customer's answer to "Did this solve it?" on the answer that asked (Yes, No, or Talk to
    a person): the conversation's outcome."""
    conversation, found = owned_message_or_404(public_id, message_id)
    choice = request.form.get("answer", "")
    if choice not in outcomes.ANSWERS:
        abort(400, description=_("Choose Yes, No or Talk to a person."))
    if not outcomes.asks(found) or found.id != queries.last_message_id(conversation):
        abort(409, description=_("This answer no longer asks that: the conversation has moved on."))
    outcomes.answer(conversation, found, choice)
    if not is_htmx():
        return redirect(url_for("chat.show", public_id=public_id) + f"#msg-{message_id}", 303)
    return _one_message(conversation, found, poll=False)


@bp.post("/c/<public_id>/messages/<id:message_id>/version")
@ratelimit.stops
def version(public_id: str, message_id: int) -> Any:
    """Show another version of this message (``to``), with the conversation that followed it."""
    conversation, _message = owned_message_or_404(public_id, message_id)
    target = _id(request.form.get("to"))
    if target is None:
        abort(400, description=_("Which version? The form is missing it."))
    try:
        versions.show_version(conversation, message_id, target)
    except TurnRefused as refused:
        abort(refused.status, description=refused.message)
    if not is_htmx():
        return redirect(url_for("chat.show", public_id=public_id) + f"#msg-{target}", 303)
    # the list as the page had it (from its first message shown, "Show earlier" included)
    since = _id(request.form.get("from"))
    if since is not None:
        messages, has_more = queries.messages_since(conversation, min(since, target))
    else:
        messages, has_more = queries.messages_of(conversation, None, current_app.config["PAGE_MESSAGES"])
    return _message_list(conversation, messages, has_more, last_id=messages[-1].id if messages else None)


def _message_list(
    conversation: Conversation, messages: list[Message], has_more: bool, last_id: int | None
) -> str:
    """Messages (with their versions) and, above them, the link to earlier ones: the list's markup."""
    return render_template(
        "chat/_earlier.html",
        conversation=conversation,
        messages=messages,
        versions=queries.versions_of(conversation.id, messages),
        has_more=has_more,
        last_id=last_id,
    )


@bp.get("/c/<public_id>/messages/<id:message_id>")
def message(public_id: str, message_id: int) -> str:
    """One message as it is now: a page opened while a reply is written polls this until it ends."""
    return _one_message(*owned_message_or_404(public_id, message_id), poll=True)


def _one_message(conversation: Conversation, message: Message, *, poll: bool) -> str:
    """One message's markup, to swap in place of its old self."""
    return render_template(
        "chat/_message.html",
        message=message,
        conversation=conversation,
        versions=queries.versions_of(conversation.id, [message]),
        poll=poll,
        last_id=queries.last_message_id(conversation),
    )


# --- the stream ----------------------------------------------------------------------------


def _id(text: str | None) -> int | None:
    """An id from the outside: ASCII digits within range, else None."""
    if text is None or not _DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if 0 < value <= MAX_ID else None


def _run(turn: turns.Turn, *, watched: bool = True) -> Iterator[Delta | Heartbeat | Finished]:
    return turns.run(turn, get_provider(current_app), settings(), live_replies(current_app), watched=watched)


def _stream(turn: turns.Turn, *, retried: bool) -> Response:
    forked = turn.replaced is not None
    first = render_template(
        "chat/_turn_start.html",
        turn=turn,
        retried=retried,
        conversation=turn.conversation,
        sidebar_row={  # (what the sidebar shows of it: the conversation as the turn left it)
            "public_id": turn.conversation.public_id,
            "title": turn.conversation.title,
            "updated_at": turn.reply.timestamp,
        },
        versions=queries.versions_of(turn.conversation.id, [turn.user_message])
        if turn.user_message and forked
        else {},
    )
    address = url_for("chat.show", public_id=turn.conversation.public_id)
    tail = f"msg-{turn.reply.id}-tail"  # the open end of the reply's body (see _message.html)
    rendered = StreamingMarkdown()  # each batch: the finished blocks once, the open one again
    live = live_replies(current_app)
    run = turns.run(turn, get_provider(current_app), settings(), live)  # (starts at its first next)

    def events() -> Iterator[str]:
        ended = False
        try:
            yield stream.event(first)
            if turn.created:  # the address bar and the form follow the new conversation (chat.js)
                yield stream.event(address, name="chatbot:navigate")
            if turn.replaced is not None:  # a new version: what followed the old one goes (chat.js)
                yield stream.event(str(turn.reply.id), name="chatbot:forked")
            for item in run:
                if isinstance(item, Delta):
                    yield stream.markdown_update(tail, rendered.feed(item.text))
                elif isinstance(item, Heartbeat):
                    yield stream.KEEPALIVE
                elif item.reply is not None:  # (None: the conversation was deleted meanwhile)
                    ended = True
                    yield stream.event(
                        render_template(
                            "chat/_turn_end.html",
                            message=item.reply,
                            last_id=item.reply.id,
                            conversation=turn.conversation,
                            versions=queries.versions_of(turn.conversation.id, [item.reply])
                            if forked or retried
                            else {},
                            poll=item.lost,
                        )
                    )
            ended = True
        finally:
            if not ended:  # the page went away: the reply doesn't (whoever opens it follows it)
                live.carry_on(run)

    return Response(
        stream_with_context(events()),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
