"""HTTP only: parse the form, find the owner's conversation (404 otherwise), pick a template.

The conversation rules live in ``service.py``. An HTMX post is answered with a
``text/event-stream`` that htmx 4's ``sse`` extension swaps in message by message; the same form
posted without JavaScript runs the turn to the end and redirects to the conversation.
"""

from __future__ import annotations

import secrets
from datetime import date

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
from markupsafe import escape

from ..llm import get_provider
from ..models import Conversation
from . import bp, service
from .service import HEARTBEAT, Delta, Finished, TurnRefused


# --- the browser's identity and its conversations ------------------------------------------

def current_owner(create: bool = True) -> str | None:
    """The browser's random owner token; created by its first message (a visit that only reads
    stores nothing, so crawlers and health checks leave no session rows). An active browser's
    session is renewed once a day."""
    owner = session.get("owner")
    if owner is None:
        if not create:
            return None
        owner = session["owner"] = secrets.token_urlsafe(24)
    today = date.today().isoformat()
    if session.get("renewed") != today:  # one write a day keeps an active browser's session alive
        session["renewed"] = today
    return owner


def owned_conversation_or_404(public_id: str) -> Conversation:
    """Every route that touches a conversation goes through here: other owners get 404."""
    conversation = service.find_conversation(current_owner(create=False), public_id)
    if conversation is None:
        abort(404, description="This conversation doesn't exist, or it isn't yours.")
    return conversation


def owned_conversation_of_message_or_404(message_id: int) -> Conversation:
    conversation = service.conversation_of_message(current_owner(create=False), message_id)
    if conversation is None:
        abort(404, description="This message doesn't exist, or it isn't yours.")
    return conversation


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def render_chat(conversation: Conversation | None, *, error: str | None = None, draft: str = "",
                status: int = 200, before: int | None = None):
    messages, has_more = (service.messages_of(conversation, before, current_app.config["PAGE_MESSAGES"])
                          if conversation else ([], False))
    return render_template(
        "chat/page.html",
        conversation=conversation,
        messages=messages,
        has_more=has_more,
        before=before,
        last_id=messages[-1].id if messages and before is None else None,
        assistant=get_provider(current_app),
        error=error,
        draft=draft,
        max_chars=current_app.config["MAX_MESSAGE_CHARS"],
    ), status


# --- pages ---------------------------------------------------------------------------------

@bp.get("/")
def index():
    """The conversation this browser had open, or an empty one (created by its first message)."""
    conversation = service.find_conversation(current_owner(create=False), session.get("current"))
    return render_chat(conversation)


@bp.get("/c/<public_id>")
def show(public_id: str):
    conversation = owned_conversation_or_404(public_id)
    if session.get("current") != public_id:
        session["current"] = public_id
    return render_chat(conversation, before=request.args.get("before", type=int))


@bp.get("/c/<public_id>/earlier")
def earlier(public_id: str):
    """The messages before ``before``, for the "Show earlier messages" link (htmx swaps it)."""
    conversation = owned_conversation_or_404(public_id)
    before = request.args.get("before", type=int)
    if before is None:
        abort(400, description="Which messages? The link is missing its 'before' id.")
    if not is_htmx():
        return redirect(url_for("chat.show", public_id=public_id, before=before), 303)
    messages, has_more = service.messages_of(conversation, before, current_app.config["PAGE_MESSAGES"])
    return render_template("chat/_earlier.html", conversation=conversation, messages=messages,
                           has_more=has_more, last_id=None, assistant=get_provider(current_app))


@bp.post("/new")
def new_conversation():
    """Start an empty chat; the old conversation stays saved."""
    session.pop("current", None)
    return redirect(url_for("chat.index"), 303)


# --- a turn --------------------------------------------------------------------------------

@bp.post("/messages")
def send():
    owner = current_owner()
    public_id = request.form.get("conversation") or None
    conversation = owned_conversation_or_404(public_id) if public_id else None
    content = request.form.get("content", "")
    retry = request.form.get("retry")
    try:
        if retry:
            if conversation is None or not retry.isdigit():
                raise TurnRefused("There is nothing to retry here.", 409)
            turn = service.begin_retry(conversation, int(retry))
        else:
            turn = service.begin_turn(owner, conversation, content,
                                      current_app.config["MAX_MESSAGE_CHARS"])
    except TurnRefused as refused:
        if is_htmx():
            return render_template("chat/_composer_error.html", error=refused.message), refused.status
        return render_chat(conversation, error=refused.message, draft=content, status=refused.status)

    if session.get("current") != turn.conversation.public_id:
        session["current"] = turn.conversation.public_id
    provider = get_provider(current_app)
    if is_htmx():
        return _stream(turn, provider, retried=bool(retry))
    for _ in service.run(turn, provider, current_app.config):
        pass
    return redirect(url_for("chat.show", public_id=turn.conversation.public_id), 303)


@bp.post("/messages/<int:message_id>/stop")
def stop(message_id: int):
    """Ask the running reply to stop; it is saved as stopped and ends its own stream."""
    conversation = owned_conversation_of_message_or_404(message_id)
    service.request_stop(conversation, message_id)
    if is_htmx():
        return "", 204
    return redirect(url_for("chat.show", public_id=conversation.public_id), 303)


@bp.get("/messages/<int:message_id>")
def message(message_id: int):
    """One message as it is now: a page opened while a reply is written polls this until it ends."""
    conversation = owned_conversation_of_message_or_404(message_id)
    found = service.message_in(conversation, message_id)
    return render_template("chat/_message.html", message=found, poll=True,
                           last_id=service.last_message_id(conversation),
                           assistant=get_provider(current_app))


# --- the stream ----------------------------------------------------------------------------

def sse(html: str, event: str | None = None) -> str:
    """One server-sent event; each line of ``html`` becomes a ``data:`` line."""
    lines = html.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    head = f"event: {event}\n" if event else ""
    return head + "".join(f"data: {line}\n" for line in lines) + "\n"


def _stream(turn: service.Turn, provider, *, retried: bool) -> Response:
    conversation, reply = turn.conversation, turn.reply
    first = render_template(
        "chat/_turn_start.html", turn=turn, retried=retried, assistant=provider,
    )
    body = f"#msg-{reply.id}-body"
    config = current_app.config
    address = url_for("chat.show", public_id=conversation.public_id)

    def events():
        started = False
        try:
            yield sse(first)
            if turn.created:  # the address bar follows the new conversation (pushed by chat.js)
                yield sse(address, event="chatbot:navigate")
            started = True
            yield from turn_events()
        finally:
            if not started:  # the client left before the turn began: don't leave it "streaming"
                service.abandon(turn)

    def turn_events():
        for event in service.run(turn, provider, config):
            if isinstance(event, Delta):
                yield sse(f'<hx-partial hx-target="{body}" hx-swap="beforeend">'
                          f"{escape(event.text)}</hx-partial>")
            elif event is HEARTBEAT:
                yield ": keep-alive\n\n"
            elif isinstance(event, Finished):
                yield sse(render_template(
                    "chat/_turn_end.html", message=event.reply, last_id=event.reply.id,
                    assistant=provider,
                ))

    return Response(
        stream_with_context(events()),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
