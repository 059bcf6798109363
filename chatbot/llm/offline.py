"""The offline assistant: answers from the bundled phone-support dataset, no network needed.

Retrieval is BM25 over the dataset's user turns. Text is folded (lower case, accents removed),
split into words, stop words dropped and words cut to a 5-letter stem, so "batería", "baterias"
and "battery" meet their kin; a word the dataset has never seen is matched to its closest known
word (typos). Each user turn of each example is a document, with the example's earlier user turns
as weaker context; a query is the latest user turn plus, weaker still, the conversation's earlier
user turns, so a follow-up such as "¿y si eso no funciona?" stays on topic.
"""

from __future__ import annotations

import difflib
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

from ..language import language, words
from .base import Event, Finish, Text, Usage

DATASET = Path(__file__).resolve().parent.parent / "data" / "phone_support.jsonl"

STOP = set(
    """
    a al algo algun alguna algunas alguno algunos ante antes aqui asi aun cada como con contra cual
    cuando de del desde donde dos el ella ellas ellos en entre era eres es esa ese eso esta estan
    estas este esto estos estoy fue ha hace hacer hay hasta la las le les lo los mas me mi mis mucho
    muy nada ni no nos o otra otro para pero poco por porque puede puedo que quien se sea ser si sin
    sobre son su sus tambien tengo tiene todo tu tus un una uno unos usted y ya yo hola gracias favor
    mio mia ahora hago debo deberia quiero necesito
    about after again all also am an and any are as at be because been before being but by can
    could did do does doing don for from get got had has have having he her here hi how i if in
    into is it its just me more my no not now of off on once only or other our out over please
    should so some such than thank thanks that the their them then there these they this those to
    too up very was we were what when where which while who why will with would you your yours
    im ive dont cant doesnt isnt wont want need like today toda todas todos hoy
    """.split()
)

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


def stems(text: str) -> list[str]:
    return [w[:5] for w in words(text) if w not in STOP and len(w) > 1]


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
        self.vocab = sorted(self.idf)

    @classmethod
    def from_jsonl(cls, path: Path) -> Index:
        with open(path, encoding="utf-8") as f:
            return cls([json.loads(line)["messages"] for line in f if line.strip()])

    @lru_cache(maxsize=4096)  # noqa: B019 - one Index lives as long as the process
    def _known(self, stem: str) -> str | None:
        if stem in self.idf:
            return stem
        if len(stem) < 4:
            return None
        close = difflib.get_close_matches(stem, self.vocab, n=3, cutoff=0.8)
        close = [c for c in close if abs(len(c) - len(stem)) <= 1]
        return close[0] if close else None

    MAX_QUERY_STEMS = 64  # a long message is judged by its first words (bounded CPU per turn)

    def query_terms(self, latest: str, earlier: list[str]) -> dict[str, float]:
        q: dict[str, float] = {}
        for s in stems(latest)[: self.MAX_QUERY_STEMS]:
            if (k := self._known(s)) is not None:
                q[k] = q.get(k, 0.0) + 1.0
        weight = self.FOLLOW_UP_CONTEXT_WEIGHT if len(q) <= 2 else self.QUERY_CONTEXT_WEIGHT
        for s in stems(" ".join(earlier[-3:]))[: self.MAX_QUERY_STEMS]:
            if (k := self._known(s)) is not None:
                q[k] = q.get(k, 0.0) + weight
        return q

    def best(self, latest: str, earlier: Sequence[str] = ()) -> tuple[str | None, float]:
        q = self.query_terms(latest, list(earlier))
        lang = language(" ".join([*earlier, latest]) if len(words(latest)) < 4 else latest)
        best_answer, best_score = None, 0.0
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
                best_answer, best_score = d.answer, score
        if best_score < self.MIN_SCORE:
            return None, best_score
        return best_answer, best_score


@lru_cache(maxsize=4)
def load_index(path: str = str(DATASET)) -> Index:
    return Index.from_jsonl(Path(path))


def answer(messages: list[dict[str, Any]], index: Index | None = None) -> str:
    """The offline reply to a wire-format conversation (its last message is the user's)."""
    index = index or load_index()
    users = [m["content"] for m in messages if m["role"] == "user"]
    if not users:
        return FALLBACK["en"]
    latest, earlier = users[-1], users[:-1]
    reply, _ = index.best(latest, earlier)
    if reply is None:
        # A follow-up too short to match on its own ("and then?") leans on the earlier turns.
        lang_text = latest if len(words(latest)) >= 3 or not earlier else " ".join(users[-2:])
        return FALLBACK[language(lang_text)]
    return reply


_PIECE = re.compile(r"\S+\s*|\s+")


class OfflineProvider:
    name = "offline"
    model = "offline"
    label = "offline assistant"

    def __init__(self, word_delay: float = 0.0, dataset: Path = DATASET):
        self.word_delay = word_delay
        self.dataset = dataset

    def stream(self, messages: list[dict[str, Any]]) -> _OfflineReply:
        return _OfflineReply(self, messages)


class _OfflineReply:
    def __init__(self, provider: OfflineProvider, messages: list[dict[str, Any]]):
        self._provider = provider
        self._messages = messages
        self._closed = threading.Event()
        self._at_once = False

    def __iter__(self) -> Iterator[Event]:
        text = answer(self._messages, load_index(str(self._provider.dataset)))
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
