"""Finding the passages that answer a question, in the context of its conversation.

Two steps. The database's own full-text search picks candidates (SQLite FTS5 ranked by BM25,
PostgreSQL's GIN index ranked by ``ts_rank``), then they are ranked here by BM25 with the query's
own weights: the latest message's words count fully, the earlier question it refers back to ("and
if it's the cable?") less; an article in the other language counts less. What the ranking needs of
the whole collection (how common each term is, for typos the words it knows) is read once per
index and kept in memory.

A question is asked alone first: a message that names a new topic ("ok, and how do I back up my
photos?") is answered on that topic, and only a message that refers back ("and if it's the
cable?", "¿y eso cuánto cuesta?") or finds nothing confident alone is read with the question
before it.
"""

from __future__ import annotations

import heapq
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy import Connection, select, text

from ..language import detect, words
from ..models import HELP_DOCUMENT, HelpArticle, HelpPassage
from .terms import GROUPS, Stats, Vocabulary, bm25, counts, expand, stems

HEAD_WEIGHT = 2.0  # a term in a passage's heading counts twice
ARTICLE_WEIGHT = 1.0  # the article's title and tags, added to each of its passages' score
OTHER_LANGUAGE = 0.6  # an article in the other language must match clearly better
EARLIER_WEIGHT = 0.5  # the earlier question, in a follow-up's query
TYPO_WEIGHT = 0.5  # a word read as the known term it most likely misspells
AGGREGATE = 0.2  # an article's other matching passages add this much of their score to its best
CANDIDATES = 100
CANDIDATE_TERMS = 16  # the query's terms the database looks for, most telling first
MAX_QUERY_TERMS = 48  # a long message is judged by its first words (bounded work per turn)
# Confidence: a passage that matches enough of the question, by weight (idf) of its words
MIN_SCORE = 3.0
MIN_COVERAGE = 0.45
RELEVANT_COVERAGE = 0.3  # less than this of the question: not worth giving to the model
TOPICAL_SHARE = 0.3  # a question less about what the articles are about than this is off-topic

# A message that refers back to what was said before
_BACK = {
    "it", "its", "that", "this", "those", "these", "them", "one", "same", "then", "instead",
    "eso", "esto", "ese", "esa", "este", "esta", "lo", "la", "le", "ello", "mismo", "entonces",
}  # fmt: skip
_OPENERS = re.compile(
    r"^\s*(?:(?:ok|okay|vale|bueno|and|but|also|what about|how about|what if|y|pero|tambien|"
    r"que tal|y si|y que|and if|and what|and how)\b)",
)


@dataclass(frozen=True, slots=True)
class Found:
    """A passage found for a question."""

    passage_id: int
    heading: str
    text: str
    score: float


@dataclass(frozen=True, slots=True)
class Source:
    """An article found for a question, with its best passages (best first)."""

    slug: str
    title: str
    lang: str
    topic: str
    score: float
    coverage: float  # how much of the question (by weight) its best passage holds
    passages: tuple[Found, ...]

    @property
    def confident(self) -> bool:
        return self.score >= MIN_SCORE and self.coverage >= MIN_COVERAGE

    @property
    def relevant(self) -> bool:
        return self.coverage >= RELEVANT_COVERAGE


@dataclass(frozen=True, slots=True)
class Retrieved:
    sources: tuple[Source, ...] = ()
    query: dict[str, float] = field(default_factory=dict)
    follow_up: bool = False  # read with the earlier question
    lang: str | None = None
    topical: bool = False  # the question names something the articles are about (as typed)

    @property
    def confident(self) -> bool:
        return bool(self.sources) and self.sources[0].confident


def described(sources: Sequence[Source]) -> list[dict[str, object]]:
    """What was retrieved, as a reply's metadata keeps it."""
    return [
        {
            "slug": s.slug,
            "title": s.title,
            "score": round(s.score, 2),
            "passages": [p.passage_id for p in s.passages],
        }
        for s in sources
    ]


@dataclass(slots=True)
class _Doc:
    article: int
    heading: str
    text: str
    terms: dict[str, float]
    length: float


@dataclass(slots=True)
class _Article:
    slug: str
    title: str
    lang: str
    topic: str
    terms: dict[str, float]  # its title's and tags' (what the whole article is about)
    length: float


class Collection:
    """The index as one process knows it: every passage's terms, the articles, the statistics."""

    def __init__(self, key: tuple[object, ...], articles: dict[int, _Article], docs: dict[int, _Doc]):
        self.key = key
        self.checked = 0.0  # (monotonic) when the database last said this is the index
        self.articles = articles
        self.docs = docs
        self.stats = Stats.of(d.terms for d in docs.values())
        self.article_stats = Stats.of(a.terms for a in articles.values())
        self.vocabulary = Vocabulary({*self.stats.df, *self.article_stats.df})
        # what the articles are about: the words of their titles and tags
        self.topical = frozenset(self.article_stats.df)

    @classmethod
    def load(cls, conn: Connection, key: tuple[object, ...]) -> Collection:
        articles = {}
        for row in conn.execute(
            select(
                HelpArticle.id,
                HelpArticle.slug,
                HelpArticle.title,
                HelpArticle.lang,
                HelpArticle.topic,
                HelpArticle.tags,
            )
        ):
            about = counts(stems(f"{row.title} {row.tags}"))
            articles[row.id] = _Article(row.slug, row.title, row.lang, row.topic, about, sum(about.values()))
        docs = {}
        for part in conn.execute(
            select(
                HelpPassage.id,
                HelpPassage.article_id,
                HelpPassage.heading,
                HelpPassage.text,
                HelpPassage.body_terms,
            )
        ):
            terms = counts(stems(part.heading), HEAD_WEIGHT)
            counts(part.body_terms.split(), 1.0, terms)
            docs[part.id] = _Doc(part.article_id, part.heading, part.text, terms, sum(terms.values()))
        return cls(key, articles, docs)

    def terms(self, text_: str) -> tuple[dict[str, float], dict[str, float]]:
        """A message's query terms: a word the collection knows as it is; a typo as the term it
        most likely means, at half weight; a word the articles never use as itself (it matches
        nothing, but says the question is about something they don't cover: "a recipe for
        paella" is not made an answer by "recipe" looking like "receipt").

        Returns (the weights it is searched with, the weights it asks: what an article must hold
        of it, a typo whole)."""
        query: dict[str, float] = {}
        asked: dict[str, float] = {}
        for term in stems(text_)[:MAX_QUERY_TERMS]:
            found = self.vocabulary.closest(term)
            key = found or term
            query[key] = query.get(key, 0.0) + (TYPO_WEIGHT if found is not None and found != term else 1.0)
            asked[key] = asked.get(key, 0.0) + 1.0
        return query, asked

    def topical_share(self, query: dict[str, float], asked: dict[str, float]) -> float:
        """How much of a question (by weight) names what the articles are about, as typed."""
        total = sum(self.stats.idf(t) * w for t, w in asked.items()) or 1.0
        return (
            sum(self.stats.idf(t) * w for t, w in asked.items() if t in self.topical and query[t] >= 1.0)
            / total
        )

    def known_terms(self, text_: str) -> int:
        """How many of the message's words the articles know (typos aside)."""
        return sum(term in self.vocabulary.known for term in stems(text_)[:MAX_QUERY_TERMS])


_cache: Collection | None = None
_cache_lock = threading.Lock()
RECHECK_SECONDS = 1.0  # how soon another process's rebuild of the index is seen
_STATE = text("SELECT id, fingerprint, indexed_at FROM help_index ORDER BY id DESC LIMIT 1")


def collection(conn: Connection) -> Collection:
    """This process's copy of the index, read again when the index was rebuilt (here: at once;
    by another process: within ``RECHECK_SECONDS``)."""
    global _cache
    url, now = str(conn.engine.url), time.monotonic()
    cached = _cache
    if cached is not None and cached.key[0] == url and now - cached.checked < RECHECK_SECONDS:
        return cached
    key = _state(conn, url)
    with _cache_lock:
        if _cache is None or _cache.key != key:
            # (its tables are read one statement after another: a rebuild that commits between
            # them would mix two indexes, passages under another index's articles; the state
            # read again after them says whether one did)
            for _attempt in range(3):
                loaded = Collection.load(conn, key)
                after = _state(conn, url)
                if after == key:
                    break
                key = after
            _cache = loaded  # (still mixed after three rebuilds in a row: read again next time)
        _cache.checked = now
        return _cache


def _state(conn: Connection, url: str) -> tuple[object, ...]:
    row = conn.execute(_STATE).first()
    return (url, *(tuple(row) if row else ()))


def forget() -> None:
    """The index was rebuilt in this process: read it again on the next question."""
    global _cache
    _cache = None


COMMON = 0.25  # a term in more than this share of passages doesn't pick candidates (it still scores)


def _candidates(conn: Connection, known: Collection, query: dict[str, float]) -> list[int]:
    """Passages that hold the query's most telling terms, best first (SQLite: by FTS5's BM25)."""
    most = COMMON * known.stats.documents
    df = known.stats.df
    terms = [t for t in query if 0 < df.get(t, 0) <= most] or [t for t in query if t in df]
    if not terms:
        return []
    # a long message looks for its most telling terms only (its others still score the candidates)
    terms = sorted(sorted(terms, key=lambda t: (-known.stats.idf(t) * query[t], t))[:CANDIDATE_TERMS])
    if conn.dialect.name == "sqlite":
        match = " OR ".join(f'"{t}"' for t in terms)
        return list(
            conn.execute(
                text(
                    "SELECT rowid FROM help_passages_fts WHERE help_passages_fts MATCH :match"
                    " ORDER BY bm25(help_passages_fts, 2.0, 1.0) LIMIT :limit"
                ),
                {"match": match, "limit": CANDIDATES},
            ).scalars()
        )
    # PostgreSQL: the GIN index finds the passages, and they are ranked here, from the terms this
    # process holds of them. (``ts_rank`` would parse every match's text again: 30 ms for a
    # question on a thousand articles, a second for a long message.)
    found = (
        conn.execute(
            text(f"SELECT id FROM help_passages WHERE {HELP_DOCUMENT} @@ to_tsquery('simple', :q)"),
            {"q": " | ".join(terms)},
        )
        .scalars()
        .all()
    )
    weights = {t: known.stats.idf(t) * query[t] for t in terms}

    def telling(pid: int) -> float:  # (like ts_rank: the heading's, title's and tags' count more)
        doc = known.docs.get(pid)
        if doc is None:
            return 0.0
        held, about = doc.terms, known.articles[doc.article].terms
        return sum(
            w * (HEAD_WEIGHT if t in about else 1.0) for t, w in weights.items() if t in held or t in about
        )

    return heapq.nlargest(CANDIDATES, found, key=telling)


def _rank(
    conn: Connection,
    known: Collection,
    query: dict[str, float],
    asked: dict[str, float],
    lang: str | None,
    limit: int,
) -> tuple[Source, ...]:
    """The best articles for a query (its own words, before synonyms). A passage's coverage is the
    share of the query's weight (by idf) it holds, each word or one of its synonyms."""
    if not query:
        return ()
    idf = {t: known.stats.idf(t) for t in query}
    weight = sum(idf[t] * w for t, w in asked.items()) or 1.0
    scored = expand(query, known.vocabulary.known)
    best: dict[int, list[tuple[float, int]]] = {}
    for pid in _candidates(conn, known, scored):
        doc = known.docs.get(pid)
        if doc is None:  # (rebuilt since the collection was read: the next turn reads it again)
            continue
        about = known.articles[doc.article]
        score = bm25(scored, doc.terms, doc.length, known.stats)
        score += ARTICLE_WEIGHT * bm25(scored, about.terms, about.length, known.article_stats)
        if lang is not None and known.articles[doc.article].lang != lang:
            score *= OTHER_LANGUAGE
        best.setdefault(doc.article, []).append((score, pid))
    kin = {t: GROUPS.get(t, frozenset()) | {t} for t in query}

    def coverage(pid: int) -> float:
        terms, about = known.docs[pid].terms, known.articles[known.docs[pid].article].terms
        held = sum(idf[t] * w for t, w in query.items() if any(k in terms or k in about for k in kin[t]))
        return held / weight

    ranked = []
    for article_id, found in best.items():
        found.sort(reverse=True)
        top_score, top_pid = found[0]
        score = top_score + AGGREGATE * sum(f[0] for f in found[1:])
        # the article's best passage, and a second one when it is nearly as good
        chosen = [found[0]] + [f for f in found[1:2] if f[0] >= 0.7 * top_score]
        a = known.articles[article_id]
        passages = tuple(
            Found(pid, known.docs[pid].heading, known.docs[pid].text, round(s, 3)) for s, pid in chosen
        )
        ranked.append(Source(a.slug, a.title, a.lang, a.topic, score, coverage(top_pid), passages))
    if lang is not None:
        ranked = _own_language(ranked, lang)
    ranked.sort(key=lambda s: (-s.score, s.slug))
    return tuple(ranked[:limit])


def _own_language(ranked: list[Source], lang: str) -> list[Source]:
    """An article in the other language gives way to its version in the customer's (the same
    topic), when that one was found too: "¿y si es el cable?" after "my phone won't charge" is
    answered from the Spanish article, not quoted from the English one. The version found takes
    the place the better of the two earned."""
    mine = {s.topic: s for s in ranked if s.lang == lang}
    kept: list[Source] = []
    for source in ranked:
        own = mine.get(source.topic) if source.lang != lang else None
        if own is None:
            kept.append(source)
        elif source.score > own.score or source.coverage > own.coverage:
            mine[own.topic] = replace(
                own, score=max(own.score, source.score), coverage=max(own.coverage, source.coverage)
            )
    return [mine.get(s.topic, s) if s.lang == lang else s for s in kept]


def refers_back(message: str, content_terms: int) -> bool:
    """A short message that leans on what was said before: it points back ("it", "eso"), or it
    opens like a follow-up ("and if…", "¿y si…") and names hardly anything itself ("and the
    cable?"; but "ok, and how do I back up my photos?" is a question of its own)."""
    ws = words(message)
    if not ws or len(ws) > 10:
        return False
    if any(w in _BACK for w in ws):
        return True
    return bool(_OPENERS.match(" ".join(ws))) and content_terms <= 1


def retrieve(
    conn: Connection, latest: str, earlier: Sequence[str] = (), *, lang: str | None = None, limit: int = 3
) -> Retrieved:
    """The best articles (and their best passages) for the latest message of a conversation
    whose earlier customer messages are ``earlier`` (oldest first)."""
    known = collection(conn)
    lang = lang or detect(latest) or (detect(" ".join(earlier[-2:])) if earlier else None)
    query, asked = known.terms(latest)
    alone = _rank(conn, known, query, asked, lang, limit)
    previous = next((m for m in reversed(earlier) if known.known_terms(m)), None)
    sure = bool(alone) and alone[0].confident
    topical = known.topical_share(query, asked) >= TOPICAL_SHARE
    # read with the question before it: a message that refers back, or one about the articles'
    # topics that finds nothing sure alone ("it's an iPhone 13"); not one about something else
    back = refers_back(latest, known.known_terms(latest))
    if previous is None or not (back or (topical and not sure)):
        return Retrieved(alone, query, False, lang, topical)
    combined, combined_asked = dict(query), dict(asked)
    before, before_asked = known.terms(previous)
    for term, w in before.items():
        combined[term] = combined.get(term, 0.0) + EARLIER_WEIGHT * w
    for term, w in before_asked.items():
        combined_asked[term] = combined_asked.get(term, 0.0) + EARLIER_WEIGHT * w
    together = _rank(conn, known, combined, combined_asked, lang, limit)
    return Retrieved(together, combined, True, lang, topical)
