"""A turn's look-up before it asks: what the message is, and what the shop's articles say.

``brief`` reads the model input (system prompt, history, the customer's latest message), tells
small talk and "a person, please" from a question, retrieves the articles for a question (read
with the one before it when it refers back), and returns the messages for a model (the articles
and the instruction to cite them, as a system message just before the latest message) with a
``Briefing`` for backends that read no prose.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from ..llm import Briefing
from .dialogue import Intent, intent, small_talk_language
from .grounding import person_message, system_message
from .retrieve import Retrieved, retrieve

CONTACT_KEYS = ("phone", "email", "hours", "url")


def contact(config: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """How to reach a person, as configured (SUPPORT_PHONE, SUPPORT_EMAIL, SUPPORT_HOURS, SUPPORT_URL)."""
    found = []
    for key in CONTACT_KEYS:
        value = str(config.get(f"SUPPORT_{key.upper()}") or "").strip()
        if value:
            found.append((key, value))
    return tuple(found)


def contact_lines(pairs: tuple[tuple[str, str], ...]) -> list[str]:
    """The contact, one line a way, for a model (in English: it answers in the customer's)."""
    labels = {"phone": "Phone", "email": "E-mail", "hours": "Hours", "url": "Web"}
    return [f"{labels[k]}: {v}" for k, v in pairs]


def brief(
    conn: Connection,
    messages: list[dict[str, str]],
    *,
    articles: int,
    contact: tuple[tuple[str, str], ...],
) -> tuple[list[dict[str, str]], Briefing]:
    """(the messages for a model, the briefing) for a model input whose last message is the
    customer's (anything else, e.g. a regenerate of an answer to nothing, is passed as it is).
    The note about the articles comes on top of the history's budget (``grounding.NOTE_CHARS``
    caps it), so a long conversation keeps its history and a question its articles."""
    if not messages or messages[-1]["role"] != "user":
        return messages, Briefing()
    latest = messages[-1]["content"]
    earlier = [m["content"] for m in messages[:-1] if m["role"] == "user"]
    kind = intent(latest)
    if kind in (Intent.GREETING, Intent.THANKS, Intent.GOODBYE):
        return messages, Briefing(kind.value, small_talk_language(latest))
    found: Retrieved = retrieve(conn, latest, earlier, limit=articles) if articles > 0 else Retrieved()
    coverage = found.sources[0].coverage if found.sources else 0.0
    # only the articles that hold a fair part of the question go to the model (and are cited)
    found = Retrieved(
        tuple(s for s in found.sources if s.relevant), found.query, found.follow_up, found.lang, found.topical
    )
    note = system_message(found)
    if kind is Intent.PERSON:  # (with the articles, which may say more: the shop's hours)
        note = person_message(contact_lines(contact)) + ("\n\n" + note if found.sources else "")
    grounded = [*messages[:-1], {"role": "system", "content": note}, messages[-1]]
    return grounded, Briefing(
        kind.value,
        found.lang,
        found.sources,
        confident=found.confident,
        follow_up=found.follow_up,
        coverage=coverage,
        topical=found.topical,
        contact=contact,
    )
