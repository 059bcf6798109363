"""The offline assistant: answers from the bundled phone-support dataset, no network needed.

Retrieval is BM25 over the dataset's user turns. Text is folded (lower case, accents removed),
split into words, stop words dropped and words cut to a 5-letter stem, so "batería", "baterias"
and "battery" meet their kin; a word the dataset has never seen is matched to its closest known
word (typos). Each user turn of each example is a document, with the example's earlier user turns
as weaker context; a query is the latest user turn plus, weaker still, the conversation's earlier
user turns, so a follow-up such as "¿y si eso no funciona?" stays on topic.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..knowledge.dialogue import Intent, intent, small_talk_language
from ..knowledge.terms import Vocabulary, stems
from ..language import detect, language, words
from .base import Briefing, Event, Finish, Note, Text, Usage

DATASET = Path(__file__).resolve().parent.parent / "data" / "phone_support.jsonl"

FALLBACK = {
    "es": (
        "No encontré una respuesta para eso en mi guía. Puedo ayudarte con: batería y carga, "
        "pantalla, señal y SIM, eSIM, Wi‑Fi y Bluetooth, almacenamiento, actualizaciones, copias de "
        "seguridad y cambio de teléfono, restablecer de fábrica, daños por agua, "
        "sobrecalentamiento, cámara, teléfono perdido o robado, y garantía y reparaciones. "
        "¿Puedes contarme un poco más sobre el problema?"
    ),
    "en": (
        "I couldn't find an answer to that in my guide. I can help with: battery and charging, "
        "the screen, signal and SIM, eSIM, Wi‑Fi and Bluetooth, storage, software updates, backup "
        "and moving to a new phone, factory reset, water damage, overheating, the camera, a lost or "
        "stolen phone, and warranty and repairs. Could you tell me a bit more about the problem?"
    ),
}


@dataclass(slots=True)
class _Doc:
    terms: dict[str, float]
    length: float
    answer: str
    lang: str


class Index:
    """BM25 over (user turn + weaker earlier turns) -> the assistant reply that followed."""

    K1 = 1.2
    B = 0.75
    CONTEXT_WEIGHT = 0.35  # an example's earlier user turns, in its document
    QUERY_CONTEXT_WEIGHT = 0.3  # the conversation's earlier user turns, in the query
    FOLLOW_UP_CONTEXT_WEIGHT = 1.0  # ... when the latest turn says little on its own
    OTHER_LANGUAGE = 0.6  # an answer in the other language must match clearly better
    MIN_SCORE = 2.5
    TYPO_WEIGHT = 0.5  # a word read as the known word it most likely misspells

    def __init__(self, examples: list[list[dict[str, str]]]):
        self.docs: list[_Doc] = []
        for messages in examples:
            earlier: list[str] = []
            for i, m in enumerate(messages):
                if m["role"] != "user":
                    continue
                nxt = messages[i + 1] if i + 1 < len(messages) else None
                if nxt is None or nxt["role"] != "assistant":
                    continue
                terms: dict[str, float] = {}
                for s in stems(m["content"]):
                    terms[s] = terms.get(s, 0.0) + 1.0
                for s in stems(" ".join(earlier)):
                    terms[s] = terms.get(s, 0.0) + self.CONTEXT_WEIGHT
                self.docs.append(
                    _Doc(
                        dict(terms),
                        sum(terms.values()),
                        nxt["content"],
                        language(m["content"] + " " + nxt["content"]),
                    )
                )
                earlier.append(m["content"])
        n = len(self.docs)
        df: Counter[str] = Counter()
        for d in self.docs:
            df.update(d.terms.keys())
        self.idf = {t: math.log(1 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items()}
        self.avg_len = sum(d.length for d in self.docs) / max(n, 1)
        self.max_idf = math.log(1 + (n + 0.5) / 0.5)
        self.vocabulary = Vocabulary(self.idf)

    @classmethod
    def from_jsonl(cls, path: Path) -> Index:
        with open(path, encoding="utf-8") as f:
            return cls([json.loads(line)["messages"] for line in f if line.strip()])

    def _known(self, stem: str) -> str | None:
        return self.vocabulary.closest(stem)

    MAX_QUERY_STEMS = 64  # a long message is judged by its first words (bounded CPU per turn)

    def query_terms(self, latest: str, earlier: list[str]) -> dict[str, float]:
        q: dict[str, float] = {}
        for s in stems(latest)[: self.MAX_QUERY_STEMS]:
            if (k := self._known(s)) is not None:
                q[k] = q.get(k, 0.0) + (1.0 if k == s else self.TYPO_WEIGHT)
        weight = self.FOLLOW_UP_CONTEXT_WEIGHT if len(q) <= 2 else self.QUERY_CONTEXT_WEIGHT
        for s in stems(" ".join(earlier[-3:]))[: self.MAX_QUERY_STEMS]:
            if (k := self._known(s)) is not None:
                q[k] = q.get(k, 0.0) + weight
        return q

    def best(self, latest: str, earlier: Sequence[str] = ()) -> tuple[str | None, float, float]:
        """(the answer, its score, how much of the latest message's weight its question holds)."""
        q = self.query_terms(latest, list(earlier))
        own = self.query_terms(latest, [])
        lang = language(" ".join([*earlier, latest]) if len(words(latest)) < 4 else latest)
        best_answer, best_score, best_doc = None, 0.0, None
        for d in self.docs:
            score = 0.0
            norm = self.K1 * (1 - self.B + self.B * d.length / self.avg_len)
            for t, qw in q.items():
                tf = d.terms.get(t)
                if tf:
                    score += qw * self.idf[t] * tf * (self.K1 + 1) / (tf + norm)
            if d.lang != lang:
                score *= self.OTHER_LANGUAGE
            if score > best_score:
                best_answer, best_score, best_doc = d.answer, score, d
        # (the words the dataset never uses count too: they are what it can't answer)
        unknown = sum(self._known(s) is None for s in set(stems(latest)[: self.MAX_QUERY_STEMS]))
        weight = sum(self.idf[t] for t in own) + unknown * self.max_idf or 1.0
        coverage = sum(self.idf[t] * min(w, 1.0) for t, w in own.items() if best_doc and t in best_doc.terms)
        coverage /= weight
        if best_score < self.MIN_SCORE:
            return None, best_score, coverage
        return best_answer, best_score, coverage


@lru_cache(maxsize=4)
def load_index(path: str = str(DATASET)) -> Index:
    return Index.from_jsonl(Path(path))


SMALL_TALK = {
    "greeting": {
        "en": "Hi! I'm here to help with your phone, an order, a repair or the warranty. "
        "What can I do for you?",
        "es": "¡Hola! Puedo ayudarte con tu móvil, un pedido, una reparación o la garantía. "
        "¿En qué te ayudo?",
    },
    "thanks": {
        "en": "You're welcome! Is there anything else I can help you with?",
        "es": "¡De nada! ¿Puedo ayudarte con algo más?",
    },
    "goodbye": {
        "en": "Goodbye, and thanks for getting in touch! Come back any time.",
        "es": "¡Hasta luego, y gracias por escribirnos! Aquí estaré si me necesitas.",
    },
}
OFF_TOPIC = {
    "en": (
        "Sorry, I can only help with phones and with the shop: orders, repairs, the warranty and "
        "problems with your phone. Is there something about your phone I can help with?"
    ),
    "es": (
        "Lo siento, solo puedo ayudarte con móviles y con la tienda: pedidos, reparaciones, la "
        "garantía y problemas con tu teléfono. ¿Hay algo de tu móvil en lo que pueda ayudarte?"
    ),
}
FROM_ARTICLE = {
    "en": "Here's what our help article says [{n}]:",
    "es": "Esto es lo que dice nuestro artículo de ayuda [{n}]:",
}
FROM_ARTICLE_OTHER = {  # the article is in the other language
    "en": "Our help article on this is in Spanish [{n}]:",
    "es": "Nuestro artículo de ayuda sobre esto está en inglés [{n}]:",
}
PERSON = {
    "en": "Of course. You can reach a person at our support team here:",
    "es": "Claro. Puedes hablar con una persona de nuestro equipo de atención aquí:",
}
PERSON_ARTICLE = {
    "en": "I can't bring a person into this chat, but here's how to reach our team [{n}]:",
    "es": "No puedo pasarte con una persona en este chat, pero así puedes contactar con nuestro "
    "equipo [{n}]:",
}
PERSON_NOWHERE = {
    "en": "I can't bring a person into this chat. Our help articles at /help explain how to "
    "contact the shop.",
    "es": "No puedo pasarte con una persona en este chat. En nuestros artículos de ayuda (/help) "
    "verás cómo contactar con la tienda.",
}
CONTACT_LABELS = {
    "en": {"phone": "Phone", "email": "E-mail", "hours": "Hours", "url": "Web"},
    "es": {"phone": "Teléfono", "email": "Correo", "hours": "Horario", "url": "Web"},
}
DATASET_COVERAGE = 0.6  # a dataset question that holds this much of the message answers it
RELEVANT_DATASET = 0.4  # ... this much, when no article is relevant


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    source: str  # what it answered from: article, dataset, small_talk, person, off_topic, fallback


def _latest_language(latest: str, earlier: Sequence[str]) -> str:
    """The language of the latest message wins; a message that says too little to tell (a number,
    "ok") is in the language of the conversation so far."""
    found = detect(latest)
    if found is not None:
        return found
    return language(" ".join(earlier[-2:])) if earlier else language(latest)


def _contact(pairs: Sequence[tuple[str, str]], lang: str) -> str:
    labels = CONTACT_LABELS[lang]
    return "\n".join(f"- **{labels[k]}:** {v}" for k, v in pairs)


def _article(source: Any, lang: str, n: int, already: str) -> str:
    """An answer from an article's passage (one the conversation hasn't shown yet, if it can)."""
    passages = [p for p in source.passages if p.text.strip() not in already] or list(source.passages)
    passage = passages[0]
    lead = (FROM_ARTICLE if source.lang == lang else FROM_ARTICLE_OTHER)[lang].format(n=n)
    heading = f"**{passage.heading}**\n\n" if passage.heading else ""
    return f"{lead}\n\n{heading}{passage.text.strip()}"


def reply_to(messages: list[dict[str, Any]], briefing: Briefing | None, index: Index) -> Answer:
    """The offline reply to a wire-format conversation (its last message is the customer's), with
    what the turn found out (``briefing``: the kind of message, the shop's articles). Without a
    briefing (no index at hand) it answers from the bundled dataset alone."""
    users = [m["content"] for m in messages if m["role"] == "user"]
    if not users:
        return Answer(FALLBACK["en"], "fallback")
    latest, earlier = users[-1], users[:-1]
    brief = briefing or Briefing(intent(latest).value)
    if brief.intent in SMALL_TALK:
        lang = small_talk_language(latest) or _latest_language(latest, earlier)
        return Answer(SMALL_TALK[brief.intent][lang], "small_talk")
    lang = _latest_language(latest, earlier)
    shown = "\n".join(m["content"] for m in messages if m["role"] == "assistant")
    if brief.intent == Intent.PERSON.value:
        if brief.contact:
            return Answer(f"{PERSON[lang]}\n\n{_contact(brief.contact, lang)}", "person")
        if brief.sources:
            source = brief.sources[0]
            passage = source.passages[0]
            return Answer(f"{PERSON_ARTICLE[lang].format(n=1)}\n\n{passage.text.strip()}", "person")
        return Answer(PERSON_NOWHERE[lang], "person")
    if brief.confident:
        return Answer(_article(brief.sources[0], lang, 1, shown), "article")
    found, _score, covered = index.best(latest, earlier)
    # Neither sure: the dataset's answer when its question holds most of the message, else the
    # best article that holds a fair part of it (the shop's own word over a near miss).
    if found is not None and (
        briefing is None  # (no articles at hand: the dataset is all there is)
        or covered >= DATASET_COVERAGE
        or (not brief.sources and (covered >= RELEVANT_DATASET or brief.follow_up))
    ):
        return Answer(found, "dataset")
    if brief.sources:
        return Answer(_article(brief.sources[0], lang, 1, shown), "article")
    if briefing is not None and not brief.topical and not brief.follow_up:
        return Answer(OFF_TOPIC[lang], "off_topic")
    # A follow-up too short to match on its own ("and then?") leans on the earlier turns.
    lang_text = latest if len(words(latest)) >= 3 or not earlier else " ".join(users[-2:])
    return Answer(FALLBACK[language(lang_text)], "fallback")


def answer(messages: list[dict[str, Any]], index: Index | None = None) -> str:
    """The offline reply from the bundled dataset alone (no articles): see ``reply_to``."""
    return reply_to(messages, None, index or load_index()).text


_PIECE = re.compile(r"\S+\s*|\s+")


class OfflineProvider:
    name = "offline"
    model = "offline"
    label = "offline assistant"

    def __init__(self, word_delay: float = 0.0, dataset: Path = DATASET):
        self.word_delay = word_delay
        self.dataset = dataset

    def stream(self, messages: list[dict[str, Any]], briefing: Briefing | None = None) -> _OfflineReply:
        return _OfflineReply(self, messages, briefing)


class _OfflineReply:
    def __init__(self, provider: OfflineProvider, messages: list[dict[str, Any]], briefing: Briefing | None):
        self._provider = provider
        self._messages = messages
        self._briefing = briefing
        self._closed = threading.Event()
        self._at_once = False

    def __iter__(self) -> Iterator[Event]:
        found = reply_to(self._messages, self._briefing, load_index(str(self._provider.dataset)))
        text = found.text
        yield Note("answered_from", found.source)
        delay = 0.0 if self._at_once else self._provider.word_delay
        for piece in _PIECE.findall(text):
            if self._closed.wait(delay) if delay else self._closed.is_set():
                return
            yield Text(piece)
        prompt = sum(len(m["content"]) for m in self._messages) // 4
        completion = max(1, len(text) // 4)
        yield Usage(prompt, completion, prompt + completion)
        yield Finish("stop")

    def pace(self, seconds: float) -> None:
        """Nothing to read: the answer is here already."""

    def at_once(self) -> None:
        self._at_once = True

    def close(self) -> None:
        self._closed.set()
