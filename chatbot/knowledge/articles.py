"""The shop's help articles: Markdown files with a little front matter, cut into passages.

A file ``<slug>.md`` (its name is its address, ``/help/<slug>``) starts with::

    ---
    title: Warranty: what's covered and how to claim
    lang: en                      # optional: en or es (else guessed from the text)
    topic: warranty               # optional: the same topic in another language
    tags: [warranty, guarantee]   # optional: words customers use for it
    ---

and goes on in Markdown. Each ``##`` section is a passage (the text before the first one too),
and a long section is cut at paragraph ends: retrieval hands the model the few passages that
answer a question, not whole articles.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..language import language

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "articles"
SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
MAX_FILE_BYTES = 200_000  # a help article, not a book: larger files are refused, said plainly
PASSAGE_CHARS = 1_500  # a section longer than this is cut at paragraph ends

_FRONT = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


class ArticleError(ValueError):
    """An article file that can't be used, with what is wrong and where."""


@dataclass(frozen=True, slots=True)
class Passage:
    position: int
    heading: str  # the section's heading ("" for the text before the first one)
    text: str  # its Markdown


@dataclass(frozen=True, slots=True)
class Article:
    slug: str
    title: str
    lang: str
    topic: str
    tags: tuple[str, ...]
    body: str  # the Markdown after the front matter
    passages: tuple[Passage, ...] = field(default=())


def _clean_line(value: str) -> str:
    """A front matter value as one line of plain text (control and invisible characters out)."""
    value = "".join(ch for ch in value if unicodedata.category(ch)[0] != "C" or ch == "\t")
    return " ".join(value.split())


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _uncommented(line: str) -> str:
    """A front matter line without its comment: from a ``#`` that starts the line or follows a
    space, unless it is inside a quoted value (``title: "Fix #1: the screen"``)."""
    quote = None
    for i, ch in enumerate(line):
        if quote is not None:
            quote = None if ch == quote else quote
        elif ch in "\"'" and (i == 0 or line[i - 1] in " \t[,:-"):
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()


def front_matter(text: str) -> tuple[dict[str, str | list[str]], str]:
    """(fields, the Markdown after them). A small YAML subset: ``key: value`` lines, and lists as
    ``[a, b]`` or ``- item`` lines under a key."""
    match = _FRONT.match(text)
    if not match:
        return {}, text
    fields: dict[str, str | list[str]] = {}
    key: str | None = None
    for raw in match.group(1).splitlines():
        line = _uncommented(raw)
        if not line.strip():
            continue
        item = re.match(r"^\s*-\s+(.*)$", line)
        if item and key is not None:
            current = fields.get(key)
            values = current if isinstance(current, list) else []
            values.append(_clean_line(_unquote(item.group(1))))
            fields[key] = values
            continue
        pair = re.match(r"^([A-Za-z_][\w-]*)\s*:\s*(.*)$", line)
        if not pair:
            raise ArticleError(f"front matter line not understood: {line.strip()!r}")
        key, value = pair.group(1).lower(), pair.group(2).strip()
        if value.startswith("[") and value.endswith("]"):
            fields[key] = [_clean_line(_unquote(v)) for v in value[1:-1].split(",") if v.strip()]
        else:
            fields[key] = _clean_line(_unquote(value))
    return fields, text[match.end() :]


def _text(fields: dict[str, str | list[str]], key: str) -> str:
    value = fields.get(key, "")
    return ", ".join(value) if isinstance(value, list) else value


def _sections(body: str) -> Iterable[tuple[str, str]]:
    """(heading, Markdown) of each ``##`` (or ``#``) section, code fences respected."""
    heading, fence = "", None
    lines: list[str] = []
    for line in body.splitlines():
        opened = _FENCE.match(line)
        if opened and (
            fence is None or (opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence))
        ):
            fence = None if fence is not None else opened.group(1)
        found = _HEADING.match(line) if fence is None else None
        if found and len(found.group(1)) <= 2:
            if "\n".join(lines).strip():
                yield heading, "\n".join(lines).strip()
            heading, lines = _clean_line(found.group(2)), []
        else:
            lines.append(line)
    if "\n".join(lines).strip() or heading:
        yield heading, "\n".join(lines).strip()


def _pieces(text: str, limit: int = PASSAGE_CHARS) -> list[str]:
    """A section cut at paragraph ends into pieces of at most about ``limit`` characters."""
    if len(text) <= limit:
        return [text]
    pieces, current = [], ""
    for paragraph in re.split(r"\n\s*\n", text):
        if current and len(current) + len(paragraph) + 2 > limit:
            pieces.append(current)
            current = paragraph
        else:
            current = f"{current}\n\n{paragraph}" if current else paragraph
    if current:
        pieces.append(current)
    return pieces


def passages(body: str) -> tuple[Passage, ...]:
    found: list[Passage] = []
    for heading, text in _sections(body):
        for piece in _pieces(text):
            found.append(Passage(len(found), heading, piece))
    return tuple(found)


def parse(slug: str, text: str) -> Article:
    fields, body = front_matter(text)
    title = _text(fields, "title")[:200]
    if not title:  # a first "# Heading" will do
        first = next((m for m in map(_HEADING.match, body.splitlines()) if m), None)
        title = _clean_line(first.group(2))[:200] if first else slug.replace("-", " ").capitalize()
    lang = _text(fields, "lang").lower() or language(title + " " + body[:2000])
    if lang not in ("en", "es"):
        raise ArticleError(f"lang must be en or es, not {lang!r}")
    tags = fields.get("tags", [])
    tag_list = tuple(t for t in (tags if isinstance(tags, list) else tags.split(",")) if t.strip())
    topic = _text(fields, "topic")[:80] or slug
    return Article(
        slug, title, lang, topic, tuple(t.strip()[:60] for t in tag_list[:30]), body, passages(body)
    )


def shown_body(body: str, title: str) -> str:
    """The Markdown a help page shows under its title: without a first ``# Heading`` that is the
    title itself (a file without front matter takes its title from it; many with front matter
    repeat it), which the page would otherwise show twice."""
    lines = body.lstrip("\r\n").split("\n", 1)
    first = _HEADING.match(lines[0].rstrip("\r"))
    if first and len(first.group(1)) == 1 and _clean_line(first.group(2)) == title:
        return lines[1] if len(lines) > 1 else ""
    return body


def folder(configured: str | None, instance_path: str) -> Path:
    """Where the articles are: the configured folder, else ``instance/articles`` when it holds
    any, else the samples that ship with the package."""
    if configured:
        return Path(configured)
    own = Path(instance_path) / "articles"
    if own.is_dir() and any(own.glob("*.md")):
        return own
    return SAMPLES


def files(where: Path) -> list[Path]:
    return sorted(p for p in where.glob("*.md") if p.is_file())


def fingerprint(where: Path) -> str:
    """What the folder's articles are, as one hash of their names and contents: the index is
    rebuilt when it changes (a file added, edited, renamed or removed)."""
    digest = hashlib.sha256()
    for path in files(where):
        digest.update(path.name.encode() + b"\0")
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:  # (refused by ``load``: not read whole into memory here)
                digest.update(f"{size} {path.stat().st_mtime_ns}".encode())
            else:
                digest.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError as exc:
            raise ArticleError(f"{path.name}: can't be read ({exc.strerror or exc})") from None
    return digest.hexdigest()


def load(where: Path) -> list[Article]:
    """Every article in the folder, in name order. A file that can't be used is an error naming
    it (the index is never half-built from a folder with a broken file)."""
    articles: list[Article] = []
    inside = where.resolve()
    for path in files(where):
        slug = path.stem
        if path.is_symlink() and not path.resolve().is_relative_to(inside):
            # (an article is published as it is: a link to ../secret_key or /etc/passwd would be)
            raise ArticleError(
                f"{path.name}: a link to a file outside the articles folder; copy the article in instead"
            )
        if not SLUG.fullmatch(slug) or len(slug) > 100:
            raise ArticleError(
                f"{path.name}: the file name is the article's address; use lower-case letters, "
                "digits and dashes (e.g. battery-drains-fast.md)"
            )
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise ArticleError(f"{path.name}: larger than {MAX_FILE_BYTES // 1000} KB")
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ArticleError(f"{path.name}: not UTF-8 text ({exc.reason})") from None
        except OSError as exc:
            raise ArticleError(f"{path.name}: can't be read ({exc.strerror or exc})") from None
        try:
            articles.append(parse(slug, text.lstrip("\ufeff")))
        except ArticleError as exc:
            raise ArticleError(f"{path.name}: {exc}") from None
    return articles
