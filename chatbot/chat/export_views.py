"""Downloads: one conversation as Markdown or JSON, and all of this browser's conversations as
JSONL in OpenAI's chat fine-tuning format. HTTP only; the formats are ``export.py``'s.

- ``GET /c/<id>/export.md`` and ``GET /c/<id>/export.json``: owner only (404 for anyone else);
- ``GET /conversations/export.jsonl``: the browser's own conversations (none: an empty file).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from urllib.parse import quote

from flask import Response, current_app, stream_with_context

from . import bp, export
from .views import current_owner, owned_conversation_or_404

MARKDOWN = "text/markdown; charset=utf-8"
JSON = "application/json; charset=utf-8"
JSONL = "application/jsonl; charset=utf-8"

FILENAME_CHARS = 80
# Never in a file name: path separators, what Windows forbids, quotes, and (below) every control
# and format character (bidi overrides could disguise the extension).
_FORBIDDEN = re.compile(r'[\\/:*?"<>|]+')
_ASCII_UNSAFE = re.compile(r"[^A-Za-z0-9 ._()+,-]+")
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{n}" for p in ("COM", "LPT") for n in range(1, 10)}


def _stem(title: str) -> str:
    """A title as a file name's stem, any script: one line, nothing a file system or a header
    could misread, no leading dot (a hidden file), not too long."""
    text = unicodedata.normalize("NFC", title)
    text = "".join(" " if unicodedata.category(ch)[0] in "CZ" else ch for ch in text)
    text = " ".join(_FORBIDDEN.sub(" ", text).split())[:FILENAME_CHARS].strip(" .")
    if text.split(".")[0].upper() in _WINDOWS_RESERVED:
        text = ""
    return text or "conversation"


def content_disposition(title: str, extension: str) -> str:
    """``attachment`` with an ASCII ``filename`` for old clients and the full name in
    ``filename*`` (RFC 6266 / 8187); neither can break out of its quotes or name a path."""
    stem = _stem(title)
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    ascii_stem = " ".join(_ASCII_UNSAFE.sub(" ", ascii_stem).split())[:FILENAME_CHARS].strip(" .")
    if ascii_stem.split(".")[0].upper() in _WINDOWS_RESERVED:
        ascii_stem = ""
    value = f'attachment; filename="{ascii_stem or "conversation"}.{extension}"'
    full = f"{stem}.{extension}"
    if full != f"{ascii_stem}.{extension}":
        value += f"; filename*=UTF-8''{quote(full, safe='')}"
    return value


def download(chunks: Iterator[str], mimetype: str, disposition: str) -> Response:
    """A streamed attachment. A slow download holds no pooled connection while it waits for the
    client: the request's session is removed as the response is returned (Flask tears the
    context down then, and the stream pushes it again), and the export reads each batch on a
    short connection of its own."""
    return Response(
        stream_with_context(chunks),
        content_type=mimetype,
        headers={"Content-Disposition": disposition, "Cache-Control": "private, no-store"},
    )


@bp.get("/c/<public_id>/export.md")
def export_markdown(public_id: str) -> Response:
    info = export.ConversationInfo.of(owned_conversation_or_404(public_id))
    return download(
        export.markdown(info, export.shown_messages(info.id)),
        MARKDOWN,
        content_disposition(info.title, "md"),
    )


@bp.get("/c/<public_id>/export.json")
def export_json(public_id: str) -> Response:
    info = export.ConversationInfo.of(owned_conversation_or_404(public_id))
    body = export.json_document(info, export.shown_messages(info.id))
    return download(_with_newline(body), JSON, content_disposition(info.title, "json"))


@bp.get("/conversations/export.jsonl")
def export_jsonl() -> Response:
    """Every conversation of this browser with an answer to learn from, one a line."""
    owner = current_owner()
    infos = export.conversations(owner=owner) if owner else iter(())
    chunks = export.jsonl(infos, current_app.config["SYSTEM_PROMPT"])
    return download(chunks, JSONL, content_disposition("conversations", "jsonl"))


def _with_newline(chunks: Iterator[str]) -> Iterator[str]:
    yield from chunks
    yield "\n"
