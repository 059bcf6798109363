"""Titles asked of the model (``CHATBOT_AUTO_TITLE=model``): after a conversation's first reply,
off the reply's path, a short title replaces the one taken from the first message, unless the
customer renamed it meanwhile. A failure (or an answer that isn't a title) keeps the first
message's title; nothing of it ever reaches the reply."""

from __future__ import annotations

import logging
import threading

from flask import Flask
from sqlalchemy import update

from ..extensions import db
from ..llm import Provider, Text
from ..models import Conversation
from .conversations import TITLE_CHARS, one_line

log = logging.getLogger(__name__)

INSTRUCTION = (
    "Write a short title (at most six words) for this customer-support conversation, in the "
    "customer's language. Answer with the title only: no quotes, no full stop."
)


def clean(answer: str) -> str | None:
    """The model's answer as a title: one line, quotes and a final full stop removed, cut to
    TITLE_CHARS; None when nothing usable is left."""
    line = one_line(answer).strip("\"'“”«»").rstrip(".").strip()
    if not line or len(line) > TITLE_CHARS * 2:
        return None
    return line[:TITLE_CHARS]


def ask_in_background(
    app: Flask, provider: Provider, conversation_id: int, first_title: str, question: str, answer: str
) -> threading.Thread:
    def work() -> None:
        try:
            messages = [
                {"role": "system", "content": INSTRUCTION},
                {"role": "user", "content": question},
                {"role": "assistant", "content": answer},
                {"role": "user", "content": "Title for the conversation above?"},
            ]
            text = "".join(e.text for e in provider.stream(messages) if isinstance(e, Text))
            title = clean(text)
            if title is None:
                log.info(
                    "conversation=%s: the model's title was unusable; the first message's stays",
                    conversation_id,
                )
                return
            with app.app_context():
                c = Conversation.__table__.c
                db.session.execute(  # only while it still has the title the first message gave it
                    update(Conversation.__table__)
                    .where(c.id == conversation_id, c.title == first_title)
                    .values(title=title)
                )
                db.session.commit()
        except Exception as exc:  # noqa: BLE001 - a title is a nicety: log, keep the first message's
            log.warning("conversation=%s: no title from the model (%s)", conversation_id, exc)

    thread = threading.Thread(target=work, name="conversation-title", daemon=True)
    thread.start()
    return thread
