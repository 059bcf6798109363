"""What the model is told about the shop's articles, and which of them its answer cites.

The retrieved articles go to the model as one system message, numbered, with an instruction:
answer from them, say plainly when they don't cover the question, and cite with the article's
number in square brackets. The numbers the reply uses become its sources, shown as links under it
the moment it is complete (the reply's metadata keeps them, and what was retrieved).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .retrieve import Retrieved, Source

INSTRUCTION = (
    "Answer using the shop's help articles below; they are the shop's own policies and steps, and "
    "they take precedence over what you know in general. If they don't cover the question, say so "
    "plainly and suggest contacting the shop; never invent prices, times or policies. After each "
    "sentence that uses an article, cite it with its number in square brackets, like [1]. Answer in "
    "the customer's language, even when the article is in another."
)
NO_ARTICLES = (
    "No help article of the shop matches this question. Answer only if it is about phones and "
    "you are sure; for the shop's own prices, times or policies, say you don't have that "
    "information and suggest contacting the shop."
)
PERSON = (
    "The customer asked to talk to a person. Say briefly that you'll put them in touch, and give "
    "these ways to reach the shop's staff, exactly as written:\n{contact}"
)
PERSON_UNKNOWN = (
    "The customer asked to talk to a person. Say that no person can join this chat, and that the "
    "shop's help articles list how to contact the shop."
)

_CITATION = re.compile(r"\[(\d{1,2})\]")
# code, where "[3]" is an index, not a citation: fenced blocks (to their closing fence, or the
# end) and inline code spans
_CODE = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?(?:^ {0,3}\1|\Z)|(`+)[^`].*?\2", re.M | re.S)
NOTE_CHARS = 6_000  # the passages given to the model per turn (about 2,000 tokens)


def system_message(retrieved: Retrieved) -> str:
    """The articles for the model, numbered (the numbers it cites): each article's best passage,
    then its second when there is room."""
    if not retrieved.sources:
        return NO_ARTICLES
    parts, room = [INSTRUCTION, ""], NOTE_CHARS
    for n, source in enumerate(retrieved.sources, 1):
        parts.append(f"[{n}] {source.title} (/help/{source.slug}, {source.lang})")
        for i, passage in enumerate(source.passages):
            text = (f"## {passage.heading}\n" if passage.heading else "") + passage.text.strip()
            if i > 0 and len(text) > room:
                break
            parts.append(text[: max(room, 400)])
            room -= len(text)
        parts.append("")
    return "\n".join(parts).strip()


def person_message(contact: Sequence[str]) -> str:
    return PERSON.format(contact="\n".join(contact)) if contact else PERSON_UNKNOWN


def cited(text: str, sources: Sequence[Source]) -> list[dict[str, object]]:
    """The sources the reply cites ([1], [2] ... in the order first cited), as the reply's
    metadata keeps them: number, address and title."""
    seen: list[int] = []
    for match in _CITATION.finditer(_CODE.sub(" ", text)):
        n = int(match.group(1))
        if 1 <= n <= len(sources) and n not in seen:
            seen.append(n)
    return [{"n": n, "slug": sources[n - 1].slug, "title": sources[n - 1].title} for n in seen]
