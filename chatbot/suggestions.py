"""The questions an empty chat offers, in the visitor's language.

``CHATBOT_SUGGESTIONS`` sets them: a JSON list (every language) or an object by language
(``{"en": [...], "es": [...]}``); ``[]`` offers none. By default they come from the bundled
dataset: for each of its main topics, the shortest customer question on it in that language, so
the offline assistant has a good answer to each."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from flask import Flask, current_app

from .language import detect, fold

DATASET = Path(__file__).resolve().parent / "data" / "phone_support.jsonl"
SHOWN = 5
# the dataset's main topics: a question is on one when it has one of these (folded) words
TOPICS = {
    "en": (
        ("battery", "drain"),
        ("charg",),
        ("screen", "crack"),
        ("esim",),
        ("backup", "new phone"),
        ("lost", "stolen"),
    ),
    "es": (
        ("bateria",),
        ("carga",),
        ("pantalla",),
        ("esim",),
        ("copia", "telefono nuevo"),
        ("perdi", "robad"),
    ),
}


@lru_cache(maxsize=4)
def from_dataset(path: str = str(DATASET)) -> dict[str, tuple[str, ...]]:
    """Per language, one question per topic: the shortest first question (10 to 70 characters)
    of an example on it."""
    questions: dict[str, list[str]] = {"en": [], "es": []}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            messages = json.loads(line)["messages"]
            first = next((m["content"].strip() for m in messages if m["role"] == "user"), "")
            lang = detect(first)
            if lang in questions and 10 <= len(first) <= 70 and "\n" not in first:
                questions[lang].append(first)
    chosen: dict[str, tuple[str, ...]] = {}
    for lang, topics in TOPICS.items():
        picks: list[str] = []
        for words in topics:
            on_topic = sorted(
                (q for q in questions[lang] if any(w in fold(q) for w in words) and q not in picks), key=len
            )
            if on_topic:
                picks.append(_capitalized(on_topic[0]))
        chosen[lang] = tuple(picks[:SHOWN])
    return chosen


def _capitalized(text: str) -> str:
    """ "¿cómo…" -> "¿Cómo…": the first letter upper case."""
    for i, char in enumerate(text):
        if char.isalpha():
            return text[:i] + char.upper() + text[i + 1 :]
    return text


def suggestions(language: str, app: Flask | None = None) -> Sequence[str]:
    configured: Any = (app or current_app).config.get("SUGGESTIONS")
    if configured is None:
        return from_dataset().get(language, ())
    if isinstance(configured, dict):
        configured = configured.get(language, configured.get("en", []))
    return [str(q).strip() for q in configured if str(q).strip()][:6]
