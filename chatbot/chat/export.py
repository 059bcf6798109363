"""Conversations as files: Markdown and JSON (one conversation as it reads), and JSONL in OpenAI's
chat fine-tuning format (many conversations, one training example a line).

Plain Python (no Flask request objects): the download routes (``export_views.py``) and
``flask conversations export`` call the same functions. What is exported is the path a
conversation shows (``Message.shown``, in id order), never the versions set aside.

Everything streams: messages are read in batches of ``BATCH`` on a short connection each (a slow
download holds no pooled connection between batches), conversations in pages of ``BATCH`` too, and
every renderer is a generator of text chunks. Exporting thousands of conversations never builds
one big string or list; the largest thing held is one conversation's JSONL line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token
from sqlalchemy import select

from ..extensions import db
from ..models import Conversation, Message, Status
from . import replies

FORMATS = ("jsonl", "json", "md")
BATCH = 500
_PUBLIC_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")

# The reply's metadata a customer may take home. An allow-list, so that operator-only fields
# (``error_detail``, ``error_kind``, ``retryable``) and anything added later stay out.
PUBLIC_META = (
    "provider",
    "model",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "ttft_ms",
    "latency_ms",
    "feedback",
    "lang",
    "error",  # (the one line the page shows under a failed reply)
    "sources",  # the shop's articles the answer cites
    "resolution",  # the customer's answer to "Did this solve it?"
)


# --- reading -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConversationInfo:
    """What an export says about a conversation (plain values: no ORM row held while streaming)."""

    id: int
    public_id: str
    title: str
    created_at: datetime
    updated_at: datetime
    outcome: str | None = None  # how it ended (chat/outcomes.py); None while open

    @classmethod
    def of(cls, conversation: Conversation) -> ConversationInfo:
        return cls(
            conversation.id,
            conversation.public_id,
            conversation.title,
            conversation.created_at,
            conversation.updated_at,
            conversation.outcome,
        )


@dataclass(slots=True)  # (not frozen: replies' ``Shown`` protocol reads plain attributes)
class ExportedMessage:
    id: int
    is_user: bool
    content: str
    status: str  # as stored; ``shown_status`` is what a reader sees
    timestamp: datetime
    meta: dict[str, Any] = field(default_factory=dict)
    lease_expired: bool = False
    lease_holder: str | None = None

    @property
    def role(self) -> str:
        return "user" if self.is_user else "assistant"

    @property
    def shown_status(self) -> str:
        """complete | streaming | error | interrupted, as the page shows it."""
        return replies.shown_status(self)


_COLUMNS = (
    Message.id,
    Message.is_user,
    Message.content,
    Message.status,
    Message.timestamp,
    Message.meta.label("meta"),  # (the column is named "metadata")
    Message.lease_expired.label("lease_expired"),
    Message.lease_holder,
)
# what a ConversationInfo is read from (also the admin area's list)
INFO_COLUMNS = (
    Conversation.id,
    Conversation.public_id,
    Conversation.title,
    Conversation.created_at,
    Conversation.updated_at,
    Conversation.outcome,
)


def shown_messages(conversation_id: int, batch: int = BATCH) -> Iterator[ExportedMessage]:
    """The conversation's shown path, oldest first, read ``batch`` messages at a time."""
    after = 0
    while True:
        with db.engine.connect() as conn:
            rows = conn.execute(
                select(*_COLUMNS)
                .where(Message.conversation_id == conversation_id, Message.shown, Message.id > after)
                .order_by(Message.id)
                .limit(batch)
            ).all()
        for row in rows:
            yield ExportedMessage(
                row.id,
                row.is_user,
                row.content,
                row.status,
                row.timestamp,
                dict(row.meta or {}),
                bool(row.lease_expired),
                row.lease_holder,
            )
        if len(rows) < batch:
            return
        after = rows[-1].id


def conversations(*, owner: str | None = None, batch: int = BATCH) -> Iterator[ConversationInfo]:
    """Conversations in the order they were started: this owner's, or (None) everybody's."""
    query = select(*INFO_COLUMNS).order_by(Conversation.id).limit(batch)
    if owner is not None:
        query = query.where(Conversation.owner == owner)
    after = 0
    while True:
        with db.engine.connect() as conn:
            rows = conn.execute(query.where(Conversation.id > after)).all()
        for row in rows:
            yield ConversationInfo(*row)
        if len(rows) < batch:
            return
        after = rows[-1].id


def find_by_public_ids(public_ids: Iterable[str]) -> tuple[list[ConversationInfo], list[str]]:
    """(the conversations with these public ids, in the order asked; the ids that match none)."""
    wanted = list(dict.fromkeys(public_ids))
    possible = [p for p in wanted if _PUBLIC_ID.fullmatch(p)]  # (never a query with a NUL in it)
    with db.engine.connect() as conn:
        rows = conn.execute(select(*INFO_COLUMNS).where(Conversation.public_id.in_(possible))).all()
    found = {row.public_id: ConversationInfo(*row) for row in rows}
    return [found[p] for p in wanted if p in found], [p for p in wanted if p not in found]


# --- shared --------------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    """UTC, to the second: 2026-05-01T12:00:00Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def dumps(value: Any) -> str:
    """Compact JSON, UTF-8 as written, and always on one line: NEL, LINE SEPARATOR and
    PARAGRAPH SEPARATOR are valid inside JSON strings but split lines for many readers
    (Python's ``str.splitlines`` among them), so they are escaped."""
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return text.replace("\x85", "\\u0085").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def public_meta(meta: dict[str, Any]) -> dict[str, Any]:
    return {key: meta[key] for key in PUBLIC_META if key in meta}


# --- JSON ----------------------------------------------------------------------------------


def message_json(message: ExportedMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "role": message.role,
        "content": message.content,
        "timestamp": iso(message.timestamp),
        "status": message.shown_status,
        "metadata": public_meta(message.meta),
    }


def json_document(
    info: ConversationInfo, messages: Iterable[ExportedMessage], indent: str = ""
) -> Iterator[str]:
    """One conversation as a JSON object (``id`` is its public id), one message a line."""
    head = {
        "id": info.public_id,
        "title": info.title,
        "created_at": iso(info.created_at),
        "updated_at": iso(info.updated_at),
        "outcome": info.outcome or "open",
    }
    inner = indent + "  "
    yield "{\n"
    for key, value in head.items():
        yield f"{inner}{dumps(key)}: {dumps(value)},\n"
    yield f'{inner}"messages": ['
    separator = "\n"
    for message in messages:
        yield f"{separator}{inner}  {dumps(message_json(message))}"
        separator = ",\n"
    yield f"\n{inner}]\n{indent}}}" if separator != "\n" else f"]\n{indent}}}"


def json_array(infos: Iterable[ConversationInfo]) -> Iterator[str]:
    """Several conversations: a JSON array of the objects ``json_document`` writes."""
    yield "["
    separator = "\n  "
    for info in infos:
        yield separator
        yield from json_document(info, shown_messages(info.id), indent="  ")
        separator = ",\n  "
    yield "\n]\n" if separator != "\n  " else "]\n"


# --- Markdown ------------------------------------------------------------------------------

_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character
_BACKTICKS = re.compile(r"`+")
# How a Markdown viewer reads a .md file: CommonMark with raw HTML on.
_viewer = MarkdownIt("commonmark", {"html": True})
_PROBE = "chatbot-export-probe"


def escape_markdown(text: str) -> str:
    """One line of plain text that Markdown shows as written (no emphasis, link, tag or entity)."""
    return _PUNCTUATION.sub(r"\\\1", " ".join(text.split()))


def fenced(text: str, info: str = "text") -> str:
    """Text in a code block, shown literally whatever it holds: the fence is longer than any run
    of backticks in the text, so nothing inside can close it."""
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    fence = "`" * max(3, longest + 1)
    body = text if text.endswith("\n") or not text else text + "\n"
    return f"{fence}{info}\n{body}{fence}\n"


def _closes(text: str) -> bool:
    """Whether Markdown that follows ``text`` (after a blank line) is read as its own: nothing in
    ``text`` left open that would swallow the rest of the transcript (a code fence that a stopped
    reply never closed)."""
    tokens = _viewer.parse(f"{text}\n\n# {_PROBE}\n")
    return (
        len(tokens) >= 3
        and tokens[-3].type == "heading_open"
        and tokens[-3].level == 0
        and tokens[-2].content == _PROBE
    )


def _has_html(tokens: list[Token]) -> bool:
    return any(
        t.type == "html_block" or any(c.type == "html_inline" for c in t.children or ()) for t in tokens
    )


def _answer_markdown(text: str) -> str:
    """The assistant's text as written (it is Markdown already), with two exceptions.

    - Raw HTML: the page never renders the model's tags (they show as text), and in a viewer
      that does, an unclosed ``<pre>`` or ``<!--`` would hide the rest of the transcript; such an
      answer is shown literally, in a code block, as the page shows its tags.
    - A code fence the answer never closed (a reply stopped mid-code) is closed, so the
      transcript's next heading stays a heading.
    """
    text = text.rstrip()
    if not any(mark in text for mark in ("`", "~", "<")):
        return text + "\n"  # (no fence, no tag: nothing to check)
    tokens = _viewer.parse(text)
    if _has_html(tokens):
        return fenced(text, "markdown")
    if _closes(text):
        return text + "\n"
    last = [t for t in tokens if t.level == 0][-1:]
    if last and last[0].type == "fence" and _closes(closed := f"{text}\n{last[0].markup}"):
        return closed + "\n"
    return fenced(text, "markdown")


def status_line(message: ExportedMessage) -> str | None:
    if message.is_user:
        return None
    if message.shown_status == Status.STREAMING:
        return "Still being written when this was exported."
    return replies.notice(message)


def markdown(info: ConversationInfo, messages: Iterable[ExportedMessage]) -> Iterator[str]:
    """One conversation as a Markdown transcript: a title heading, then each message under a
    heading naming who wrote it and when (UTC).

    The customer's words go in a code block (``fenced``): they were typed as plain text and are
    shown as typed, and nothing in them (a ``#``, a ``---``, a fence, raw HTML) can become a heading
    or any other structure of the transcript, nor hide what follows. The assistant's text is
    Markdown and stays so; only what it leaves open is closed (``_answer_markdown``)."""
    yield f"# {escape_markdown(info.title) or 'Conversation'}\n\n"
    yield f"Conversation `{info.public_id}`, started {iso(info.created_at)}, "
    yield f"last updated {iso(info.updated_at)} (times in UTC).\n"
    for message in messages:
        who = "You" if message.is_user else "Assistant"
        yield f"\n## {who} · {iso(message.timestamp)}\n\n"
        if message.is_user:
            yield fenced(message.content)
        elif message.content.strip():
            yield _answer_markdown(message.content)
        if (line := status_line(message)) is not None:
            yield f"\n*{escape_markdown(line)}*\n"


def markdown_many(infos: Iterable[ConversationInfo]) -> Iterator[str]:
    """Several transcripts, one after another, with a rule between them."""
    first = True
    for info in infos:
        if not first:
            yield "\n---\n\n"
        first = False
        yield from markdown(info, shown_messages(info.id))


# --- JSONL (OpenAI chat fine-tuning) -------------------------------------------------------

ROLES = ("system", "user", "assistant")
_CUT = ("length", "content_filter")  # complete, but cut short: not an answer to learn from


class InvalidChatLine(ValueError):
    """A line that isn't one example of OpenAI's chat fine-tuning format, as this app checks it."""


def validate_chat_line(line: str) -> list[dict[str, str]]:
    """Check one JSONL line as the bundled dataset is checked, and return its messages.

    The line is one JSON object with ``messages`` only; each message has exactly a known ``role``
    and a ``content`` string with something visible in it; an optional system message comes
    first, then the customer and the assistant take turns, starting with the customer and ending
    with the assistant (at least one answer). Raises ``InvalidChatLine`` saying what is wrong."""
    if "\n" in line.rstrip("\n") or "\r" in line:
        raise InvalidChatLine("more than one line")
    try:
        example = json.loads(line)
    except ValueError as exc:
        raise InvalidChatLine(f"not JSON: {exc}") from None
    if not isinstance(example, dict) or set(example) != {"messages"}:
        raise InvalidChatLine('not an object with "messages" (and nothing else)')
    messages = example["messages"]
    if not isinstance(messages, list) or not messages:
        raise InvalidChatLine('"messages" is not a list of messages')
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            raise InvalidChatLine(f"message {i}: not an object with a role and a content only")
        if message["role"] not in ROLES:
            raise InvalidChatLine(f"message {i}: unknown role {message['role']!r}")
        if not isinstance(message["content"], str) or not message["content"].strip():
            raise InvalidChatLine(f"message {i}: content is not text, or is empty")
    roles = [m["role"] for m in messages]
    turns = roles[1:] if roles[0] == "system" else roles
    if not turns or turns != ["user", "assistant"] * (len(turns) // 2) or len(turns) % 2:
        raise InvalidChatLine(f"roles out of turn: {roles}")
    return messages


def usable_answer(message: ExportedMessage) -> bool:
    """An answer to learn from: finished, not cut short, with text."""
    return (
        not message.is_user
        and message.shown_status == Status.COMPLETE
        and message.meta.get("finish_reason") not in _CUT
        and bool(message.content.strip())
    )


def chat_example(messages: Iterable[ExportedMessage], system_prompt: str) -> dict[str, Any] | None:
    """One conversation as a fine-tuning example, or None when it has no answer to learn from.

    Each question goes in with its answer when that answer is usable; a question whose answer
    failed, was stopped or cut off, or never came is left out with it (the customer usually asked
    again), so the turns always alternate."""
    turns: list[dict[str, str]] = []
    question: ExportedMessage | None = None
    for message in messages:
        if message.is_user:
            question = message if message.content.strip() else None
        elif question is not None:
            if usable_answer(message):
                turns.append({"role": "user", "content": question.content})
                turns.append({"role": "assistant", "content": message.content})
            question = None
    return with_system(turns, system_prompt) if turns else None


def with_system(turns: list[dict[str, str]], system_prompt: str) -> dict[str, Any]:
    """A fine-tuning example: the system prompt (when there is one), then the turns."""
    system = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
    return {"messages": system + turns}


@dataclass
class Tally:
    """How an export went: conversations read, and (JSONL) lines written."""

    conversations: int = 0
    written: int = 0


def jsonl(infos: Iterable[ConversationInfo], system_prompt: str, tally: Tally | None = None) -> Iterator[str]:
    """One line per conversation with an answer to learn from (see ``chat_example``)."""
    tally = tally if tally is not None else Tally()
    for info in infos:
        tally.conversations += 1
        example = chat_example(shown_messages(info.id), system_prompt)
        if example is not None:
            tally.written += 1
            yield dumps(example) + "\n"


def export(fmt: str, infos: Iterable[ConversationInfo], system_prompt: str, tally: Tally) -> Iterator[str]:
    """Several conversations in one of ``FORMATS`` (JSON: an array of conversation objects)."""

    def counted() -> Iterator[ConversationInfo]:
        for info in infos:
            tally.conversations += 1
            yield info

    if fmt == "jsonl":
        return jsonl(infos, system_prompt, tally)
    if fmt == "json":
        return json_array(counted())
    if fmt == "md":
        return markdown_many(counted())
    raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
