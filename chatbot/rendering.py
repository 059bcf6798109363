"""Model output is untrusted: Markdown -> HTML, then sanitized to a small allow-list.

A finished message is rendered whole (``render_markdown``, the ``markdown`` filter). A reply that is
still being written is rendered as it arrives (``StreamingMarkdown``): the blocks that can no longer
change are rendered once, and only the open block at the end is rendered again with each batch, with
the same renderer and allow-list, so the finished message looks the same as the streamed one.

What a reply looks like: its headings sit below the page's own (``#`` is an h3); bare addresses
(``https://…``, ``www.…``, e-mail addresses) are links; every link opens in a new tab, so a click
never takes the page away from a reply being written; a table scrolls sideways in its own box; a
code block has a head with its language (when Pygments knows it: ``highlight``) and a Copy button,
and its code is highlighted with Pygments' classes. Everything the renderer writes still passes the
sanitizer, whose allow-list knows each class and attribute value the renderer uses.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

import nh3
from flask import Flask, has_request_context
from linkify_it import LinkifyIt
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from markdown_it.utils import OptionsDict
from markupsafe import Markup

from . import highlight
from .i18n import _


class _Linkify(LinkifyIt):
    """Bare addresses as GitHub links them: ``http://``, ``https://``, ``www.`` and e-mail
    addresses; not ``ftp:`` or ``//``, nor a bare name with a dot (``main.py``, ``ajustes.es``)."""

    def __init__(self) -> None:
        super().__init__()
        self.add("ftp:", None).add("//", None)

    def pretest(self, text: str) -> bool:
        # (cheap first: the library's own pretest is a long expression, tried on every paragraph)
        return ("://" in text or "@" in text or "www." in text.lower()) and bool(super().pretest(text))

    def match(self, text: str) -> list[Any] | None:
        found = [
            link for link in super().match(text) or [] if link.schema or link.raw.lower().startswith("www.")
        ]
        return found or None


# "commonmark" with raw HTML off: any tag the model writes is shown as text, never parsed.
_md = MarkdownIt("commonmark", {"html": False, "linkify": True, "typographer": False}).enable(
    ["table", "strikethrough", "linkify"]
)
_md.linkify = _Linkify()


def _link_text_as_written(link: str) -> str:
    """A link's text as the model wrote it. (markdown-it decodes punycode for display: the text of
    ``http://xn--80ak6aa92e.com`` would read "аррӏе.com", a lookalike of a site it doesn't open.)"""
    return link


_md.normalizeLinkText = _link_text_as_written  # type: ignore[method-assign]

# The page has its h1 (the app) and h2 (the conversation); a reply's headings go below them.
_HEADING_SHIFT = 2


def _demote_headings(state: StateCore) -> None:
    shift = state.env.get("heading_shift", _HEADING_SHIFT) if isinstance(state.env, dict) else _HEADING_SHIFT
    for token in state.tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(6, int(token.tag[1]) + shift)}"


_md.core.ruler.push("demote_headings", _demote_headings)


def _table_open(self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: Any) -> str:
    # (focusable: a keyboard scrolls it sideways too)
    return '<div class="table-scroll" tabindex="0">' + self.renderToken(tokens, idx, options, env)


def _table_close(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: Any
) -> str:
    return self.renderToken(tokens, idx, options, env).rstrip("\n") + "</div>\n"


def _labels() -> tuple[str, str, str, str]:
    """A code block's Copy button: its text, accessible name and feedback, in the page's language
    (English outside a request: the CLI, exports)."""
    if not has_request_context():
        return "Copy", "Copy code", "Copied", "Couldn't copy"
    return _("Copy"), _("Copy code"), _("Copied"), _("Couldn't copy")


def _code(content: str, language: str, closed: bool = True) -> str:
    """A code block: its head (the language Pygments knows it as, and Copy), then the code,
    highlighted once the block is closed (while it is being written, the open block is rendered
    again with each batch: Pygments would cost more than all the rest of a batch)."""
    lexer = highlight.lexer_for(language) if language else None
    html = highlight.highlight(content, language) if lexer and closed else None
    label = f'<span class="code-lang">{escape(lexer.name)}</span>' if lexer else ""
    copy, name, copied, failed = (escape(text) for text in _labels())
    return (
        f'<div class="code-block"><div class="code-head">{label}'
        f'<button type="button" class="button button--small button--tool code-copy" data-action="copy-code"'
        f' aria-label="{name}" data-copied="{copied}" data-failed="{failed}">{copy}</button></div>'
        f'<pre tabindex="0"><code>{escape(content) if html is None else html}</code></pre></div>\n'
    )


def _fence(self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: Any) -> str:
    token = tokens[idx]
    info = token.info.strip().split(maxsplit=1)  # (the model's: it only picks a lexer by name)
    # closed: its lines are the opening fence, the content and the closing fence
    closed = token.map is not None and token.map[1] - token.map[0] == token.content.count("\n") + 2
    return _code(token.content, info[0] if info else "", closed)


def _code_block(self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: Any) -> str:
    return _code(tokens[idx].content, "")


_md.add_render_rule("table_open", _table_open)
_md.add_render_rule("table_close", _table_close)
_md.add_render_rule("fence", _fence)
_md.add_render_rule("code_block", _code_block)

_TAGS = {
    "p",
    "br",
    "strong",
    "em",
    "b",
    "i",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "a",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "del",
    "s",
    "div",
    "span",
    "button",
}
_ATTRIBUTES = {
    "a": {"href", "title"},
    "ol": {"start"},
    "th": {"align"},
    "td": {"align"},
    "button": {"aria-label", "data-copied", "data-failed"},
}
# Attributes allowed with these values only, and classes: exactly what the renderer writes.
_VALUES = {
    "button": {"type": {"button"}, "data-action": {"copy-code"}},
    "div": {"tabindex": {"0"}},
    "pre": {"tabindex": {"0"}},
}
_CLASSES = {
    "div": {"code-block", "code-head", "table-scroll"},
    "span": {"code-lang", *highlight.TOKEN_CLASSES},
    "button": {"button", "button--small", "button--tool", "code-copy"},
}
_cleaner = nh3.Cleaner(
    tags=_TAGS,
    attributes=_ATTRIBUTES,
    tag_attribute_values=_VALUES,
    allowed_classes=_CLASSES,
    set_tag_attribute_values={"a": {"target": "_blank"}},  # (a click never leaves the reply)
    url_schemes={"http", "https", "mailto", "tel"},
    link_rel="noopener noreferrer nofollow",
)


def _clean(html: str) -> str:
    return str(_cleaner.clean(html))


def render_markdown(text: str) -> Markup:
    return Markup(_clean(_md.render(text or "")))


def render_article(text: str) -> Markup:
    """A help article on its own page: the same renderer and allow-list as a reply (an article is
    text from a file, and may be wrong too), its headings kept at their level under the page's h1."""
    return Markup(_clean(_md.render(text or "", {"heading_shift": 0})))


# --- while a reply streams ---------------------------------------------------------------------

_LINE_ENDS = re.compile(r"\r\n?")
# A last line still being written that would show as something else for a moment: only markers so
# far ("#", "-", "1.", "| --- |", "> ", "**"), or a code fence's opening line ("```python").
_MARKERS_ONLY = re.compile(r"[-+*=_#>|`~:.)\d \t]*")
_FENCE_OPENING = re.compile(r" {0,3}(?:`{3,}[^`]*|~{3,}.*)")
_UNCLOSED_LINK = re.compile(r"!?\[(?:[^\]]*|[^\]]*\]\([^)]*)$")
_PIPE_ROW = re.compile(r" {0,3}\|")


_LAST_WORD = re.compile(r"\S+$")
_ADDRESS_STARTS = ("http://", "https://", "www.", "mailto:")
_BEFORE_AN_ADDRESS = "(<[*_\"'¡¿"


def _growing_address(line: str) -> int | None:
    """Where a last word that is, or may yet become, a bare address starts (None: it isn't one):
    it would show as text, then as a link to a part of the address, until it is whole."""
    word = _LAST_WORD.search(line)
    if word is None:
        return None
    core = word.group().lstrip(_BEFORE_AN_ADDRESS).lower()
    if core and ("@" in core or any(core.startswith(s) or s.startswith(core) for s in _ADDRESS_STARTS)):
        return word.start()
    return None


def _shown(text: str) -> str:
    """``text`` less what is better held back until the next batch, so that nothing shows for a
    moment as something it is not: the end of a last line that is only markers so far, a fence's
    opening line, an unclosed ``**`` or link, a bare address still being written; and a first
    table row (it becomes the table's header once its delimiter row arrives)."""
    start = text.rfind("\n") + 1
    line = text[start:]
    if _MARKERS_ONLY.fullmatch(line) or _FENCE_OPENING.fullmatch(line):
        line = ""
    else:
        if "`" not in line and line.count("**") % 2:
            line = line[: line.rfind("**")]
        if "`" not in line and (link := _UNCLOSED_LINK.search(line)):
            line = line[: link.start()]
        if (address := _growing_address(line)) is not None:
            line = line[:address]
        if _MARKERS_ONLY.fullmatch(line):  # (what is left may be markers alone: "- " of "- **Sett")
            line = ""
    last = start if line else text.rfind("\n", 0, max(0, start - 1)) + 1  # the last line shown
    if (line or start) and _PIPE_ROW.match(text, last):
        above = text.rfind("\n", 0, max(0, last - 1)) + 1
        if not last or not _PIPE_ROW.match(text, above):
            return text[:last]
    return text[:start] + line


@dataclass(frozen=True, slots=True)
class Update:
    """What a batch changes on the page: finished blocks to add (``done``, maybe empty) before the
    open tail, and the tail's new HTML (``tail``; None when it looks the same as before)."""

    done: Markup
    tail: Markup | None


class StreamingMarkdown:
    """Markdown fed in pieces, rendered as it comes, at a cost per batch that does not grow with the
    length of the reply.

    Markdown's blocks are decided line by line, and once a line has started a new top-level block,
    the blocks before it can no longer change. So each batch parses only the text after the last
    finished block; the top-level blocks followed by another one that starts on a whole line are
    finished: rendered once, and dropped from the text kept. The rest (the open tail, usually one
    block) is rendered again each batch. Finished blocks and the final tail, put together, are the
    same HTML as the whole text rendered at once (``render_markdown``), so the message doesn't move
    when the finished reply replaces the streamed one.

    Link reference definitions are the one thing that reaches backwards in Markdown: those in
    finished blocks apply to later ones; a link that refers to a definition further down the reply
    shows as text until the reply is finished.
    """

    def __init__(self) -> None:
        self._open = ""  # the text after the last finished block (line ends made "\n")
        self._cr = False  # the last piece ended with "\r": a "\n" may follow it
        self._references: dict[str, Any] = {}  # link reference definitions in finished blocks
        self._tail: str | None = None  # the tail's HTML as last returned

    def feed(self, text: str) -> Update:
        """Take the next piece of text; returns what changed."""
        if self._cr:
            text = "\r" + text
        self._cr = text.endswith("\r")
        if self._cr:
            text = text[:-1]
        self._open += _LINE_ENDS.sub("\n", text)
        return self._render(_shown(self._open))

    def finish(self) -> Update:
        """The end of the text: nothing is held back any more."""
        if self._cr:
            self._open += "\n"
            self._cr = False
        return self._render(self._open)

    def _render(self, text: str) -> Update:
        env: dict[str, Any] = {"references": dict(self._references)}
        tokens = _md.parse(text, env)
        cut = self._finished(tokens, text.count("\n"), env)
        done = ""
        if cut:
            line = tokens[cut].map[0]  # type: ignore[index]
            offset = _offset_of_line(self._open, line)
            self._open = self._open[offset:]
            for label, definition in env["references"].items():
                if label not in self._references:  # (all of them are above the cut: see _finished)
                    self._references[label] = {**definition, "map": None}
            done = _clean(_md.renderer.render(tokens[:cut], _md.options, env))
            tokens = tokens[cut:]
        tail = _clean(_md.renderer.render(tokens, _md.options, env)).strip()
        changed = tail != self._tail
        self._tail = tail
        return Update(Markup(done), Markup(tail) if changed else None)

    def _finished(self, tokens: list[Token], whole_lines: int, env: dict[str, Any]) -> int:
        """How many of ``tokens`` make finished blocks: up to the last top-level block after the
        first one that starts on a whole line (0: none yet)."""
        for i in range(len(tokens) - 1, 0, -1):
            token = tokens[i]
            if token.level or token.nesting < 0 or token.map is None or token.map[0] >= whole_lines:
                continue
            line = token.map[0]
            new = (d for label, d in env["references"].items() if label not in self._references)
            if any(d["map"][1] > line for d in new):  # a definition below the cut may still change
                return 0
            return i
        return 0


def _offset_of_line(text: str, line: int) -> int:
    """Where line number ``line`` (from 0) starts in ``text``."""
    offset = 0
    for _n in range(line):
        offset = text.index("\n", offset) + 1
    return offset


def render_streaming(text: str) -> Update:
    """A reply's text so far, as the page that streams it shows it (for a page opened meanwhile)."""
    return StreamingMarkdown().feed(text)


def init_app(app: Flask) -> None:
    app.add_template_filter(render_markdown, "markdown")
    app.add_template_filter(render_article, "article_markdown")
    app.add_template_filter(render_streaming, "markdown_so_far")
