"""Search: an owner's conversations by title and by the text of the messages they show.

What is searched: the title, and the messages on the path a conversation shows (a version set
aside by an edit or a regenerate doesn't match), once written (a streaming reply matches when it
ends). The index is the database's own full-text search, kept in step by the database itself
(``chatbot/models.py``): FTS5 on SQLite, GIN indexes on PostgreSQL.

The query: what the customer types, taken as words (letters and digits; everything else is a
separator, so quotes, ``*``, ``-``, ``NEAR``, ``:`` or brackets are never query syntax), each
word a prefix ("batt" finds "battery", as you type), all words in one message or in the title.
Case and accents don't matter ("bateria" finds "Batería"). A word of one letter must match a
whole word (a prefix of one letter would read most of the index).

The order: newest match first. A conversation ranks by its most recent matching message, or by
its last update when its title matches: the conversation where you last said those words comes
first, as the list itself shows the conversation you last used first. Relevance (bm25) would rank
every match before showing any; newest-first lets SQLite stop reading as soon as a page is full,
so a common word in thousands of conversations costs about what a rare one does. (PostgreSQL
reads all of the owner's matches from its index, then keeps a page: bench/search.py.)

The snippet: made here, from the matching message's text, the same way on both databases:
everything from the database is escaped, and the only markup is the ``<mark>`` this module
writes around the words that matched.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from markupsafe import Markup, escape
from sqlalchemy import Integer, String, TextClause, bindparam, column, text

from ..extensions import db
from ..models import SEARCH_CONFIG, UTCDateTime, search_document

MAX_QUERY_CHARS = 200  # of the query, read; the rest is ignored
MAX_TERMS = 8
MAX_TERM_CHARS = 40
SNIPPET_BEFORE = 40  # characters of context before the first match, about
SNIPPET_CHARS = 160  # characters in a snippet, about

_NOT_ASCII = re.compile(r"[^\x00-\x7f]")
_WORD = re.compile(r"[^\W_]+")  # letters and digits (as SQLite's unicode61 and PostgreSQL's parser see words)
_EMPHASIS = str.maketrans("", "", "*`")  # Markdown's emphasis and code markers: not shown
_LINE_MARKERS = re.compile(r"^[ \t]{0,3}(?:#{1,6}[ \t]+|>[ \t]?)", re.MULTILINE)  # headings, quotes


@dataclass(frozen=True, slots=True)
class Term:
    word: str  # as typed (NFKC): what the database's own tokenizer folds
    folded: str  # lower case, accents removed: what the snippet compares
    prefix: bool


@dataclass(frozen=True, slots=True)
class Hit:
    """A conversation the search found, and where."""

    public_id: str
    title: str
    updated_at: datetime
    title_html: Markup  # the title, escaped, with the matching words marked
    # the matching message around its first match (escaped, marked); empty when only the title matched
    snippet: Markup


# --- the query -----------------------------------------------------------------------------


def _fold_char(ch: str) -> str:
    """One character, lower case and without accents, still one character (so a folded text's
    positions are the original's): characters that would become several are only lowered."""
    base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c)).casefold()
    if len(base) == 1:
        return base
    low = ch.lower()
    return low if len(low) == 1 else ch


@lru_cache(maxsize=1)
def _fold_table() -> dict[int, str]:
    # Latin (with its extensions), Greek and Cyrillic; other scripts have no case or accents to fold.
    ranges = (range(0x41, 0x5B), range(0xC0, 0x250), range(0x370, 0x530), range(0x1E00, 0x1F00))
    return {code: _fold_char(chr(code)) for r in ranges for code in r if _fold_char(chr(code)) != chr(code)}


def fold(value: str) -> str:
    """Lower case, accents removed, the same length as ``value`` (NFC)."""
    lower = value.lower()
    if value.isascii():
        return lower
    if len(lower) != len(value):  # (a capital that lowers to two characters, as "İ" does)
        return value.translate(_fold_table())
    table = _fold_table()
    return _NOT_ASCII.sub(lambda m: table.get(ord(m.group()), m.group()), lower)


def terms_of(q: str | None) -> list[Term]:
    """The words of a query (at most ``MAX_TERMS``, each cut at ``MAX_TERM_CHARS``), without
    repeats; nothing for a query of punctuation or spaces only."""
    found: list[Term] = []
    seen: set[str] = set()
    text_ = unicodedata.normalize("NFKC", (q or "")[:MAX_QUERY_CHARS])
    for match in _WORD.finditer(text_):
        word = unicodedata.normalize("NFC", match.group()[:MAX_TERM_CHARS])
        folded = fold(word)
        if folded in seen:
            continue
        seen.add(folded)
        found.append(Term(word, folded, prefix=len(word) > 1))
        if len(found) == MAX_TERMS:
            break
    return found


def _fts5_query(terms: Sequence[Term], column: str, owner: str | None) -> str:
    """An FTS5 query: the owner's rows (``None``: everybody's, for the admin area only), each
    term (a quoted string: never syntax) in ``column``."""
    words = [f'{column} : "{t.word}"' + ("*" if t.prefix else "") for t in terms]
    if owner is None:
        return " AND ".join(words)
    owner_key = owner.encode().hex().upper()  # as the triggers write it: hex(owner), one token
    return " AND ".join([f'owner_key : "{owner_key}"', *words])


def _tsquery(terms: Sequence[Term]) -> str:
    """A PostgreSQL tsquery: each term quoted (letters and digits only), a prefix (``:*``)."""
    return " & ".join(f"'{t.word}'" + (":*" if t.prefix else "") for t in terms)


# --- finding ------------------------------------------------------------------------------

_MESSAGE_HIT = (column("id", Integer), column("conversation_id", Integer), column("at", UTCDateTime))
_TITLE_HIT = (column("id", Integer), column("at", UTCDateTime))
# The owner's matching messages, newest first (read only as far as a page needs): the match
# reads the owner's postings only, and the owner is checked again on the conversation. CROSS
# JOIN: the full-text match first, always (SQLite's planner would otherwise walk the owner's
# conversations and run the match again for each).
_SQLITE_MESSAGES = text(
    "SELECT f.rowid AS id, m.conversation_id, m.timestamp AS at FROM messages_fts AS f"
    " CROSS JOIN messages AS m ON m.id = f.rowid CROSS JOIN conversations AS c ON c.id = m.conversation_id"
    " WHERE messages_fts MATCH :match AND c.owner = :owner ORDER BY f.rowid DESC"
).columns(*_MESSAGE_HIT)
_SQLITE_TITLES = text(
    "SELECT c.id, c.updated_at AS at FROM conversations_fts AS f"
    " CROSS JOIN conversations AS c ON c.id = f.rowid"
    " WHERE conversations_fts MATCH :match AND c.owner = :owner"
).columns(*_TITLE_HIT)
# PostgreSQL: the same, a conversation at a time, as many as a page needs. (The documents and the
# condition are the indexes' own, so it reads the matches from them: a fast-start plan walking
# the messages newest first would work out every message's document until it had a page.)
_PG_MESSAGES = text(
    "SELECT max(m.id) AS id, m.conversation_id, max(m.timestamp) AS at FROM messages AS m"
    " JOIN conversations AS c ON c.id = m.conversation_id"
    f" WHERE {search_document('m.content')} @@ to_tsquery('{SEARCH_CONFIG}', :query)"
    " AND m.shown AND m.status NOT IN ('streaming', 'stopping') AND c.owner = :owner"
    " GROUP BY m.conversation_id ORDER BY max(m.id) DESC LIMIT :want"
).columns(*_MESSAGE_HIT)
_PG_TITLES = text(
    "SELECT c.id, c.updated_at AS at FROM conversations AS c"
    f" WHERE {search_document('c.title')} @@ to_tsquery('{SEARCH_CONFIG}', :query)"
    " AND c.owner = :owner"
).columns(*_TITLE_HIT)
_CONVERSATIONS = (
    text("SELECT id, public_id, title, updated_at FROM conversations WHERE owner = :owner AND id IN :ids")
    .bindparams(bindparam("ids", expanding=True))
    .columns(
        column("id", Integer),
        column("public_id", String),
        column("title", String),
        column("updated_at", UTCDateTime),
    )
)
_CONTENTS = text("SELECT id, content FROM messages WHERE id IN :ids").bindparams(
    bindparam("ids", expanding=True)
)


def search(owner: str | None, q: str | None, limit: int = 50, offset: int = 0) -> list[Hit]:
    """The owner's conversations that match ``q``, newest match first: ``limit`` of them after
    the first ``offset``. Nothing for no owner or a query without words (the caller shows the
    usual list then). Ask for one more than a page to know whether there is another."""
    terms = terms_of(q)
    if not owner or not terms or limit <= 0:
        return []
    offset = max(0, offset)
    conn = db.session.connection()
    if conn.dialect.name == "sqlite":
        titles = conn.execute(_SQLITE_TITLES, {"match": _fts5_query(terms, "title", owner), "owner": owner})
        messages = conn.execute(
            _SQLITE_MESSAGES,
            {"match": _fts5_query(terms, "content", owner), "owner": owner},
            execution_options={"yield_per": 100},  # (rows fetched as the merge reads them)
        )
    else:
        query = {"query": _tsquery(terms), "owner": owner}
        titles = conn.execute(_PG_TITLES, query)
        messages = conn.execute(_PG_MESSAGES, {**query, "want": offset + limit})
    by_update = sorted(titles, key=lambda t: (t[1], t[0]), reverse=True)
    try:
        chosen = _newest_first(messages, by_update, offset + limit)
    finally:
        messages.close()  # (the rest is never read)
    page = chosen[offset:]
    if not page:
        return []
    rows = {
        row.id: row for row in conn.execute(_CONVERSATIONS, {"owner": owner, "ids": [cid for cid, _ in page]})
    }
    wanted = [mid for _, mid in page if mid is not None]
    contents: dict[int, str] = dict(conn.execute(_CONTENTS, {"ids": wanted}).all()) if wanted else {}
    hits = []
    for cid, mid in page:
        row = rows.get(cid)
        if row is None:  # (deleted meanwhile)
            continue
        body = contents.get(mid) if mid is not None else None
        hits.append(
            Hit(
                public_id=row.public_id,
                title=row.title,
                updated_at=row.updated_at,
                title_html=marked(row.title, terms),
                snippet=snippet(body, terms) if body else Markup(""),
            )
        )
    return hits


def _newest_first(
    messages: Iterable[tuple[int, int, datetime]], titles: Sequence[tuple[int, datetime]], want: int
) -> list[tuple[int, int | None]]:
    """Merge the owner's matching messages (id, conversation, when: newest first) and title
    matches (by last update, newest first) into up to ``want`` conversations, each once, at its
    newest match; each with the message whose snippet it shows (None: its title matched, and no
    message of it was read before the page was full)."""
    order: list[int] = []
    snippet_of: dict[int, int | None] = {}
    t = 0

    def place(cid: int, mid: int | None) -> None:
        if cid not in snippet_of:
            order.append(cid)
            snippet_of[cid] = mid
        elif snippet_of[cid] is None:
            snippet_of[cid] = mid

    for mid, cid, at in messages:
        while t < len(titles) and titles[t][1] >= at and len(order) < want:
            place(titles[t][0], None)
            t += 1
        if len(order) >= want and cid not in snippet_of:
            break
        place(cid, mid)
    while t < len(titles) and len(order) < want:
        place(titles[t][0], None)
        t += 1
    return [(cid, snippet_of[cid]) for cid in order[:want]]


# --- everybody's conversations (the admin area) --------------------------------------------

# A condition on ``conversations`` (the table, not aliased): its title or a message it shows
# matches. A subquery read once (the index's matches), so it composes with any other condition
# and order, such as the admin list's filters and its keyset pages.
_SQLITE_ANYONE = (
    "(conversations.id IN (SELECT m.conversation_id FROM messages_fts AS f"
    " CROSS JOIN messages AS m ON m.id = f.rowid WHERE messages_fts MATCH :search_messages)"
    " OR conversations.id IN (SELECT f.rowid FROM conversations_fts AS f"
    " WHERE conversations_fts MATCH :search_titles))"
)
# PostgreSQL: one subquery, each half read from its GIN index (an OR on the row would work out
# the document of every title the list walks past).
_PG_ANYONE = (
    "conversations.id IN (SELECT m.conversation_id FROM messages AS m"
    f" WHERE {search_document('m.content')} @@ to_tsquery('{SEARCH_CONFIG}', :search_query)"
    " AND m.shown AND m.status NOT IN ('streaming', 'stopping')"
    " UNION SELECT t.id FROM conversations AS t"
    f" WHERE {search_document('t.title')} @@ to_tsquery('{SEARCH_CONFIG}', :search_query))"
)


def anyone_matches(q: str | None, dialect: str) -> TextClause | None:
    """The admin area's search: a condition true for every conversation, of any owner, whose
    title or shown messages match ``q`` (the same words, prefixes and folding as ``search``);
    None for a query without words. Never for a customer's page: it crosses owners."""
    terms = terms_of(q)
    if not terms:
        return None
    if dialect == "sqlite":
        return text(_SQLITE_ANYONE).bindparams(
            search_messages=_fts5_query(terms, "content", None),
            search_titles=_fts5_query(terms, "title", None),
        )
    return text(_PG_ANYONE).bindparams(search_query=_tsquery(terms))


# --- the snippet ---------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _matcher(terms: tuple[Term, ...]) -> re.Pattern[str]:
    """The words (of folded text) that the terms match, whole: those that start with a prefix
    term, and those that are an exact term."""
    # (each term's letters first, then "not inside a word" looking back: many times faster
    # than looking back first at every position)
    parts = [
        f"{re.escape(t.folded)}(?<![^\\W_]{re.escape(t.folded)})"
        + (r"[^\W_]*" if t.prefix else r"(?![^\W_])")
        for t in sorted(terms, key=lambda t: len(t.folded), reverse=True)
    ]
    return re.compile("|".join(parts))


def _mark(value: str, folded: str, terms: Sequence[Term], start: int, end: int) -> str:
    """``value[start:end]`` escaped, with the matching words in ``<mark>``s (the only markup);
    ``folded`` is ``fold(value)``, position for position."""
    out: list[str] = []
    pos = start
    for match in _matcher(tuple(terms)).finditer(folded, start, end):
        out += (
            escape(value[pos : match.start()]),
            "<mark>",
            escape(value[match.start() : match.end()]),
            "</mark>",
        )
        pos = match.end()
    out.append(escape(value[pos:end]))
    return "".join(out)


def marked(value: str, terms: Sequence[Term]) -> Markup:
    """All of ``value``, escaped, with the words that match marked."""
    value = unicodedata.normalize("NFC", value)
    return Markup(_mark(value, fold(value), terms, 0, len(value)))


def snippet(body: str, terms: Sequence[Term]) -> Markup:
    """A short part of a message around its first matching word, on one line, without Markdown's
    emphasis, heading and quote markers, escaped, with the words that match marked (and "…"
    where it was cut)."""
    matcher = _matcher(tuple(terms))
    body = unicodedata.normalize("NFC", body)
    first = matcher.search(fold(body))
    at = first.start() if first else 0
    # only the part around it is read again: a message may be thousands of words long
    lo, hi = max(0, at - 3 * SNIPPET_BEFORE), at + 2 * SNIPPET_CHARS
    plain = body[lo:hi].translate(_EMPHASIS)
    if "#" in plain or ">" in plain:
        plain = _LINE_MARKERS.sub("", plain)
    plain = " ".join(plain.split())
    clipped_before, clipped_after = lo > 0, hi < len(body)
    folded = fold(plain)
    first = matcher.search(folded)
    at = first.start() if first else 0
    if at <= SNIPPET_BEFORE and not clipped_before:
        start = 0
    else:
        start = plain.find(" ", max(0, at - SNIPPET_BEFORE), at) + 1
    end = start + SNIPPET_CHARS
    if end >= len(plain):
        end = len(plain)
    else:
        space = plain.rfind(" ", at + 1, end)
        end = space if space > at else end
    cut_before = start > 0 or clipped_before
    cut_after = end < len(plain) or clipped_after
    marked_part = _mark(plain, folded, terms, start, end).strip()
    return Markup(("…" if cut_before else "") + marked_part + ("…" if cut_after else ""))
