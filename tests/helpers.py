"""Small helpers the tests share: post a message like the page does, read the stream back."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import select

from chatbot.extensions import db
from chatbot.models import Conversation, Message

HX = {"HX-Request": "true", "Accept": "text/html, text/event-stream"}

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T], timeout: float = 5.0, interval: float = 0.02, what: str | None = None
) -> T:
    """Poll ``predicate`` until it returns something truthy (returned), or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def parse_sse(text: str) -> list[dict]:
    """Split a text/event-stream body into events: {"event": name or None, "data": str}."""
    events = []
    for block in re.split(r"\n\n", text):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        if data or name:
            events.append({"event": name, "data": "\n".join(data)})
    return events


def post_url(conversation: str | None = None) -> str:
    """Where the composer posts: a new conversation, or a message in this one."""
    return f"/c/{conversation}/messages" if conversation else "/c"


def message_url(conversation: str, message_id: int, action: str = "") -> str:
    return f"/c/{conversation}/messages/{message_id}" + (f"/{action}" if action else "")


def send(
    client, content: str = "", conversation: str | None = None, retry: int | None = None, htmx: bool = True
):
    """Post the composer form; returns the response with its body read."""
    form = {"content": content}
    if retry is not None:
        form["retry"] = str(retry)
    return client.post(post_url(conversation), data=form, headers=HX if htmx else {}, buffered=True)


def conversation_id_from(response) -> str:
    """The new conversation's public id, from the stream's navigate event."""
    for event in parse_sse(response.get_data(as_text=True)):
        if event["event"] == "chatbot:navigate":
            return event["data"].rsplit("/", 1)[1]
    raise AssertionError("no chatbot:navigate event in the stream")


def all_messages(app) -> list[Message]:
    with app.app_context():
        return list(db.session.execute(select(Message).order_by(Message.id)).scalars())


def all_conversations(app) -> list[Conversation]:
    with app.app_context():
        return list(db.session.execute(select(Conversation).order_by(Conversation.id)).scalars())


def only_conversation(app) -> str:
    """The public id of the one conversation in the database."""
    (conversation,) = all_conversations(app)
    return conversation.public_id


def raw_post(base_url: str, content: str, *, reset: bool = False) -> socket.socket:
    """Post a first message like the page does, on a bare socket the test may drop at any point
    (a closed tab). ``reset``: the close sends a TCP reset at once, as a killed browser does."""
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    body = "content=" + content.replace(" ", "+")
    sock.sendall(
        f"POST /c HTTP/1.1\r\nHost: {host}\r\nHX-Request: true\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
    )
    return sock


def busy_model_readers() -> list[threading.Thread]:
    """Reader threads busy with a model call right now (idle pooled ones are named differently)."""
    return [t for t in threading.enumerate() if t.name == "model-reply" and t.is_alive()]


# --- stored sessions, wherever the app keeps them (the database, or Redis on the postgres stack) --


def stored_sessions(app) -> list[str]:
    """The ids (with their store prefix) of the sessions the app has stored."""
    iface = app.session_interface
    if app.config.get("REDIS_URL"):
        return sorted(key.decode() for key in iface.client.scan_iter(match=iface.key_prefix + "*"))
    from chatbot.models import SessionRecord

    with app.app_context():
        return sorted(db.session.execute(select(SessionRecord.session_id)).scalars())


def plant_session(app, sid: str, data: dict) -> None:
    """Store a session as an attacker who could write one would (it expires in 2100)."""
    iface = app.session_interface
    encoded = iface.serializer.encode(data)
    if app.config.get("REDIS_URL"):
        iface.client.set(iface.key_prefix + sid, encoded)
        return
    from datetime import datetime

    from chatbot.models import SessionRecord

    with app.app_context():
        db.session.add(
            SessionRecord(session_id=iface.key_prefix + sid, data=encoded, expiry=datetime(2100, 1, 1))
        )
        db.session.commit()


def history(request) -> list[dict]:
    """The conversation a model request carried: its messages without the turn's note about the
    shop's articles (a system message after the first, just before the customer's latest)."""
    messages = request.json["messages"]
    return [m for i, m in enumerate(messages) if not (i > 0 and m["role"] == "system")]


def articles_note(request) -> str | None:
    """The turn's note about the shop's articles in a model request, if it has one."""
    messages = request.json["messages"]
    notes = [m["content"] for i, m in enumerate(messages) if i > 0 and m["role"] == "system"]
    return notes[0] if notes else None
