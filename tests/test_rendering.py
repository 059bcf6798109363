"""Markdown rendering: a finished message rendered whole, and a reply rendered while it streams
(``StreamingMarkdown``), which must end as the same HTML whatever the pieces it came in."""

from __future__ import annotations

import random
import re

import pytest

from chatbot import highlight, rendering
from chatbot.rendering import StreamingMarkdown, render_markdown, render_streaming

from .fake_openai import tokens

TABLE = "| Setting | Where |\n| --- | --- |\n| Brightness | Display |\n| Refresh | General |\n"
COPY = (
    '<button type="button" class="button button--small button--tool code-copy" data-action="copy-code"'
    ' aria-label="Copy code" data-copied="Copied" data-failed="Couldn\'t copy">Copy</button>'
)


def code_block(code_html: str, language: str = "") -> str:
    """A code block as the renderer writes it (``language``: the label shown, if any)."""
    label = f'<span class="code-lang">{language}</span>' if language else ""
    return (
        f'<div class="code-block"><div class="code-head">{label}{COPY}</div>'
        f'<pre tabindex="0"><code>{code_html}</code></pre></div>'
    )


DOCUMENTS = {
    "fence with blank lines": "Run this:\n\n```sh\nadb shell\n\n\nreboot\n```\n\nThen wait.\n",
    "unclosed fence": "Code:\n\n```\nline one\n\nline two",
    "list with blank lines": "Steps:\n\n- one\n- two\n\n- three\n\n  still three\n\nDone.",
    "numbered from 3": "First part.\n\n3. three\n4. four\n\n5. five\n\nAnd **bold** end.",
    "table": "Compare:\n\n" + TABLE + "\nThat is all.",
    "table then text row": TABLE + "plain row\n\nafter\n",
    "headings": "# Title\n\nIntro line\nSetext\n---\n\n## Part\ntext\n> quote\nlazy\n\n> other quote\n",
    "reference link": "[help]: https://example.com/help\n\nSee [help] and [later].\n\n[later]: https://x.example\n\nend",
    "indented code": "    code one\n\n    code two\n\npara",
    "crlf": "one\r\ntwo\r\n\r\n- a\r\n- b\r\n\r\nend\r\n",
    "emphasis and links": "Tap **Settings > Battery**, then [battery health](https://example.com/b) *now*.",
    "code with a language": (
        "Try this:\n\n```python\ndef f(x):\n    return \"<b>\" + x  # hi\n\n\nprint(f('a'))\n```\n\n"
        "Then `run` it:\n~~~console\n$ adb shell\n~~~\nDone."
    ),
    "code in an unknown language": "```klingon\nqapla' <b>\n```\nafter\n",
    "bare addresses": (
        "See https://example.com/help?x=1, www.apple.com/es and soporte@example.com.\n\n"
        "- https://example.org/list\n- (http://x.example/a)\n\nEnd http://x.example/"
    ),
    "wide table and a quote": (
        "| Setting | Where | Effect | Notes |\n| :-- | :-: | --: | --- |\n"
        "| Brightness | Display › Brightness | a lot | www.example.com |\n\n"
        "> Quoted https://example.com/q\n> more\n\n#### Four\n"
    ),
}


def feed_all(pieces: list[str]) -> str:
    """The body's HTML at the end: the finished blocks, then the tail after ``finish``."""
    md, done, tail = StreamingMarkdown(), "", ""
    for update in [*map(md.feed, pieces), md.finish()]:
        done += update.done
        tail = tail if update.tail is None else update.tail
    return done + tail


def shown_after(pieces: list[str]) -> str:
    """The body's HTML after these batches (the reply not finished yet)."""
    md, done, tail = StreamingMarkdown(), "", ""
    for piece in pieces:
        update = md.feed(piece)
        done += update.done
        tail = tail if update.tail is None else update.tail
    return done + tail


def whole(text: str) -> str:
    return str(render_markdown(text)).strip()


def trimmed(html: str) -> str:
    return html.strip()


@pytest.mark.parametrize("text", DOCUMENTS.values(), ids=DOCUMENTS.keys())
def test_any_split_ends_as_the_whole_render(text):
    wanted = whole(text)
    assert trimmed(feed_all(list(text))) == trimmed(wanted), "one character at a time"
    assert trimmed(feed_all(tokens(text))) == trimmed(wanted), "as a model sends it"
    for cut in range(1, len(text)):  # every split in two: mid-word, mid-marker, between \r and \n
        assert trimmed(feed_all([text[:cut], text[cut:]])) == trimmed(wanted), cut
    pick = random.Random(16)
    for _ in range(200):
        cuts = sorted(pick.sample(range(1, len(text)), pick.randint(1, min(30, len(text) - 1))))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert trimmed(feed_all(pieces)) == trimmed(wanted), pieces


@pytest.mark.parametrize("text", DOCUMENTS.values(), ids=DOCUMENTS.keys())
def test_every_batch_shows_what_the_text_so_far_renders_to(text):
    """Finished blocks plus the tail, after any batch, are the whole render of what is shown so
    far: splitting never changes how a block looks."""
    pieces = tokens(text)
    for n in range(1, len(pieces) + 1):
        so_far = "".join(pieces[:n]).replace("\r\n", "\n")
        assert trimmed(shown_after(pieces[:n])) == trimmed(whole(rendering._shown(so_far))), so_far


def test_a_block_is_finished_only_once_the_next_one_has_begun():
    md = StreamingMarkdown()
    assert md.feed("Intro.\n\n- a\n- b\n\n").done == "<p>Intro.</p>\n"
    update = md.feed("- c\n\n")  # the list goes on (and becomes loose): not finished
    assert update.done == ""
    assert "<li>\n<p>c</p>" in update.tail
    assert md.feed("1").done == ""  # (a line being written could still be "1. item")
    update = md.feed("0 minutes later\n")  # a paragraph begins: the list can't change any more
    assert update.done == "<ul>\n<li>\n<p>a</p>\n</li>\n<li>\n<p>b</p>\n</li>\n<li>\n<p>c</p>\n</li>\n</ul>\n"
    assert update.tail == "<p>10 minutes later</p>"
    assert md.feed("it works.").done == ""  # each finished block is sent once


def test_a_fence_with_blank_lines_stays_open_until_it_closes():
    md = StreamingMarkdown()
    assert md.feed("Run:\n\n```\nadb shell\n\n").done == "<p>Run:</p>\n"  # (once the fence began)
    update = md.feed("\nreboot\n")
    assert update.done == "" and update.tail == code_block("adb shell\n\n\nreboot\n")
    update = md.feed("Text after the code\n")  # still inside the fence
    assert update.done == "" and "Text after the code" in update.tail and "<pre " in update.tail
    assert md.feed("```\n\nThen").done == ""  # (a line being written could be anything yet)
    update = md.feed(" reboot.\n")
    assert update.done == code_block("adb shell\n\n\nreboot\nText after the code\n") + "\n"
    assert update.tail == "<p>Then reboot.</p>"


def test_an_ordered_list_keeps_its_number():
    md = StreamingMarkdown()
    md.feed("Next:\n\n3. three\n4. four\n\n")
    assert md.feed("5. five\n\nok\n").done.startswith('<ol start="3">\n<li>\n<p>three</p>')


@pytest.mark.parametrize(
    ("so_far", "shown"),
    [
        ("Intro\n\n``", "<p>Intro</p>"),  # a fence marker being written
        ("Intro\n\n```pyth", "<p>Intro</p>"),  # the fence's opening line
        ("Intro\n\n#", "<p>Intro</p>"),  # a heading's marker alone
        ("Intro\n-", "<p>Intro</p>"),  # not a setext heading for a moment
        ("Open **Sett", "<p>Open</p>"),  # unclosed bold
        ("Open **Settings** now", "<p>Open <strong>Settings</strong> now</p>"),
        ("See [the guide](https://exa", "<p>See</p>"),  # unclosed link
        ("Intro\n\n| Setting | Where |", "<p>Intro</p>"),  # a table's header row, perhaps
        ("Intro\n\n| Setting | Where |\n", "<p>Intro</p>"),
        ("Intro\n\n| Setting | Where |\n| --", "<p>Intro</p>"),
        ("| a |\n| - |\n| 1", "<table>"),  # a table's rows show as they come
        ("Intro\n\n| a |\nthen text", "<p>| a |\nthen text</p>"),  # not a table after all
    ],
)
def test_what_would_flicker_waits_for_the_next_batch(so_far, shown):
    for pieces in ([so_far], tokens(so_far)):
        html = shown_after(pieces)
        assert trimmed(shown) in trimmed(html), pieces
        visible = re.sub(r"<[^>]+>", "", html)
        assert not any(marker in visible for marker in ("**", "``", "##", "](", "| --")), visible


def test_the_tail_is_sent_only_when_it_changes():
    md = StreamingMarkdown()
    assert md.feed("Hello").tail == "<p>Hello</p>"
    assert md.feed(" **").tail is None  # held back: nothing new to show
    assert md.feed("world**").tail == "<p>Hello <strong>world</strong></p>"


@pytest.mark.parametrize(
    "attack",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(2)>",
        "[click](javascript:alert(3))",
        '<a href="javascript:alert(4)">x</a>',
        "[x](http://a \"<hx-partial hx-target='#composer-error'>\")",
        '</hx-partial><hx-partial hx-target="#composer-error" hx-swap="innerHTML">pwned</hx-partial>',
    ],
)
def test_model_written_markup_is_sanitized_in_every_batch(attack):
    text = (
        f"Intro\n\n{attack}\n\n- {attack}\n\n| a |\n| - |\n| {attack} |\n\n```\n{attack}\n```\n\nend {attack}"
        f"\n\n```python {attack}\n{attack}\n```\n\n~~~{attack}\nx\n~~~\n\nhttps://example.com/{attack}"
    )
    md = StreamingMarkdown()
    for piece in [*tokens(text), ""]:
        update = md.feed(piece)
        for html in (update.done, update.tail or ""):
            assert "<script" not in html and "<img" not in html and "<hx-" not in html and "</hx-" not in html
            assert not re.search(r"<[^>]*\s(on\w+|href=\"javascript:)", html, re.I), html  # no live attribute


def test_render_streaming_is_what_a_page_opened_mid_reply_shows():
    update = render_streaming("## Steps\n\n- one\n- tw")
    assert update.done == "<h4>Steps</h4>\n"
    assert update.tail == "<ul>\n<li>one</li>\n<li>tw</li>\n</ul>"
    assert render_streaming("").done == "" and render_streaming("").tail == ""


def long_reply(words: int) -> str:
    """A support answer of about ``words`` words: headings, paragraphs, lists, tables, code."""
    parts, n, i = [], 0, 0
    while n < words:
        section = (
            f"## Step {i}\n\n" + "Check the battery and the charger before anything else. " * 6 + "\n\n"
            + "".join(f"- Item {k} of step {i}: turn it off and on again.\n" for k in range(5)) + "\n"
            + TABLE + "\n```\n" + "".join(f"adb shell setting {k}\n" for k in range(4)) + "```\n\n"
        )  # fmt: skip
        parts.append(section)
        n += len(section.split())
        i += 1
    return "".join(parts)


def test_the_work_per_batch_does_not_grow_with_the_reply(monkeypatch):
    """Each batch parses only the text after the last finished block (what its cost grows with:
    bench/stream_markdown.py times it): at the end of a 2,000-word reply no more than at its
    start, where rendering the whole text every batch would parse all of it."""
    text = long_reply(2000)
    assert len(text.split()) >= 2000
    wanted = whole(text)
    parsed: list[int] = []
    parse = rendering._md.parse
    monkeypatch.setattr(
        rendering._md, "parse", lambda src, env=None: parsed.append(len(src)) or parse(src, env)
    )
    pieces = tokens(text)
    html = feed_all(["".join(pieces[i : i + 5]) for i in range(0, len(pieces), 5)])
    assert trimmed(html) == trimmed(wanted)
    tenth = len(parsed) // 10
    assert max(parsed) < 500 < len(text) / 15  # the largest block and a batch, never the whole reply
    assert max(parsed[-tenth:]) <= max(parsed[:tenth]) + 50  # no more at the end than at the start


# --- what a reply looks like ----------------------------------------------------------------------


def test_headings_sit_below_the_pages_own():
    """The page has its h1 (the app) and h2 (the conversation): a reply's "#" is an h3."""
    html = whole("# One\n\n## Two\n\n### Three\n\n#### Four\n\n##### Five\n\n###### Six\n\nSetext\n===\n")
    assert re.findall(r"<(h\d)>", html) == ["h3", "h4", "h5", "h6", "h6", "h6", "h3"]
    assert re.findall(r"</(h\d)>", html) == ["h3", "h4", "h5", "h6", "h6", "h6", "h3"]


@pytest.mark.parametrize(
    ("text", "href", "shown"),
    [
        ("see https://example.com/a?b=1.", "https://example.com/a?b=1", "https://example.com/a?b=1"),
        ("see www.apple.com/es", "http://www.apple.com/es", "www.apple.com/es"),
        ("write to soporte@example.com", "mailto:soporte@example.com", "soporte@example.com"),
        ("(http://example.org/x)", "http://example.org/x", "http://example.org/x"),
        ("[the guide](https://example.com/g)", "https://example.com/g", "the guide"),
        ("<https://example.com/auto>", "https://example.com/auto", "https://example.com/auto"),
    ],
)
def test_addresses_are_links_that_open_in_a_new_tab(text, href, shown):
    html = whole(text)
    assert f'<a href="{href}" target="_blank" rel="noopener noreferrer nofollow">{shown}</a>' in html


@pytest.mark.parametrize(
    "text",
    [
        "main.py",  # a file name is not an address, though .py is a country's domain
        "ajustes.es",
        "ftp://example.com/file",
        "//example.com/x",
        "javascript:alert(1)",
        "javascript://example.com/%0aalert(1)",
        "JaVaScRiPt:alert(1)//https://example.com",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
        "`https://example.com/in-code`",
    ],
)
def test_only_web_and_mail_addresses_become_links(text):
    html = whole(f"see {text} now")
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert all(href == "https://example.com" for href in hrefs), html  # (only a real https part)
    assert "<script" not in html


def test_every_link_opens_in_a_new_tab_and_gives_nothing_away():
    html = whole("[a](https://example.com) www.example.org <mailto:x@example.com> [b](tel:+34600000000)")
    links = re.findall(r"<a [^>]*>", html)
    assert len(links) == 4
    for link in links:
        assert 'target="_blank"' in link and 'rel="noopener noreferrer nofollow"' in link, link


def test_a_bare_address_is_linked_only_once_it_is_whole():
    """Streamed a character at a time, an address being written shows neither as text that then
    turns into a link, nor as a link to part of it: it appears once it is whole."""
    text = "Details: https://example.com/help/battery?x=1 and more.\n\n- www.apple.com/es\n- Done\n"
    wanted = {"https://example.com/help/battery?x=1", "http://www.apple.com/es"}
    before = ""
    for n in range(1, len(text) + 1):
        html = shown_after(list(text[:n]))
        assert set(re.findall(r'href="([^"]*)"', html)) <= wanted, (n, html)
        visible = " ".join(re.sub(r"<[^>]+>", " ", html).split())
        assert visible.startswith(before), (n, before, visible)  # text never goes away again
        before = visible
    assert set(re.findall(r'href="([^"]*)"', feed_all(list(text)))) == wanted


def test_a_table_scrolls_in_its_own_box():
    html = whole(TABLE)
    assert html.startswith('<div class="table-scroll" tabindex="0"><table>\n<thead>')
    assert html.endswith("</tbody>\n</table></div>")


# --- code ---------------------------------------------------------------------------------------

CODE = {
    "python": ("Python", 'def f(x):\n    return "<b>" + x  # hi\n'),
    "sh": ("Bash", 'adb shell settings put global x 1  # comment\necho "$HOME" > /tmp/a\n'),
    "json": ("JSON", '{"a": [1, true, null], "b": "</code>"}\n'),
    "js": ("JavaScript", "const x = `a${b}`; // c\nif (a < b && c) { alert('</pre>') }\n"),
    "html": ("HTML", '<a href="javascript:alert(1)" onclick="x()">t</a>\n<script>alert(1)</script>\n'),
    "diff": ("Diff", "--- a\n+++ b\n@@ -1 +1 @@\n-old\n+new\n"),
    "kotlin": ("Kotlin", 'fun main() { println("hi ${1 + 2}") }\n'),
    "console": ("Bash Session", "$ adb devices\nList of devices attached\n"),
}


def code_text(html: str) -> str:
    """What a code block's ``<code>`` holds as text (what its Copy button copies)."""
    inner = re.search(r"<code>(.*)</code>", html, re.S).group(1)
    return (
        re.sub(r"<[^>]+>", "", inner)
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", '"')
        .replace("&#39;", "'")
        .replace("&amp;", "&")
    )


@pytest.mark.parametrize("language", CODE)
def test_code_is_highlighted_with_its_language_on_top(language):
    label, code = CODE[language]
    html = whole(f"```{language}\n{code}```")
    assert html.startswith(
        f'<div class="code-block"><div class="code-head"><span class="code-lang">{label}</span>'
    )
    assert COPY in html
    assert re.search(r'<span class="\w+">', html.split("<code>")[1]), "highlighted"
    assert code_text(html) == code  # the code exactly: nothing lost or added, the label outside it
    classes = set(re.findall(r'<span class="([^"]*)"', html.split("<code>")[1]))
    assert classes <= highlight.TOKEN_CLASSES, classes - highlight.TOKEN_CLASSES


def test_code_is_highlighted_once_its_block_is_closed():
    """While a code block is being written it is rendered again with each batch: plain (with its
    label) until its closing fence, so Pygments runs once per block, not once per batch."""
    md = StreamingMarkdown()
    update = md.feed("Run:\n\n```python\nimport os\n")
    assert update.done == "<p>Run:</p>\n" and update.tail == code_block("import os\n", "Python")
    assert md.feed("```").tail is None  # (the closing fence is being written: held back)
    highlighted = '<span class="kn">import</span> <span class="nn">os</span>\n'
    assert md.feed("\n").tail == code_block(highlighted, "Python")
    assert feed_all(["```python\nimport os\n"]) == code_block("import os\n", "Python")  # (cut short: plain)


@pytest.mark.parametrize("language", ["", "klingon", "text", "output", "raw", "python3.12.1"])
def test_code_without_a_known_language_is_plain_with_no_label(language):
    html = whole(f"```{language}\nprint('<b>')\n```")
    assert html == code_block("print(&#39;&lt;b&gt;&#39;)\n") or html == code_block("print('&lt;b&gt;')\n")
    assert whole("    indented <b>\n") == code_block("indented &lt;b&gt;\n")


@pytest.mark.parametrize(
    "info",
    [
        '"><img src=x onerror=alert(1)>',
        'python" onclick="alert(1)',
        "<script>alert(1)</script>",
        "javascript:alert(1)",
        "py onerror=alert(1)",
        "' autofocus onfocus='alert(1)",
        "python{.class onmouseover=alert(1)}",
        "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;",
        "</code></pre><img src=x onerror=alert(1)>",
        "x" * 5000,
        "py\u0000thon",
    ],
)
def test_a_fences_info_string_never_becomes_markup(info):
    """The fence's info string only picks a lexer by name: a label shows only the lexer's own name."""
    html = whole(f"```{info}\nprint(1)\n```\n")
    head = html.split("<pre")[0]
    assert head in (
        code_block("").split("<pre")[0],
        code_block("", "Python").split("<pre")[0],
    ), head
    assert "<img" not in html and "<script" not in html
    assert not re.search(r"<[^>]*\s(on\w+|style|src|autofocus)\b", html, re.I), html
    assert code_text(html) == "print(1)\n"


def test_every_class_and_attribute_is_one_the_renderer_writes():
    text = "\n\n".join(f"```{language}\n{code}```" for language, (_, code) in CODE.items())
    text += "\n\n" + TABLE + "\n> quote https://example.com\n\n    indented\n"
    html = whole(text)
    allowed = highlight.TOKEN_CLASSES | {
        "code-block", "code-head", "code-lang", "table-scroll", "button", "button--small", "button--tool",
        "code-copy",
    }  # fmt: skip
    classes = {c for value in re.findall(r'class="([^"]*)"', html) for c in value.split()}
    assert classes <= allowed, classes - allowed
    attributes = set(re.findall(r"\s([\w-]+)=", html))
    assert attributes <= {"class", "tabindex", "type", "data-action", "aria-label", "data-copied",
                           "data-failed", "href", "target", "rel"}, attributes  # fmt: skip


def test_the_sanitizer_keeps_only_the_classes_and_values_the_renderer_writes():
    """Should the model ever get raw HTML through, the allow-list stops what isn't ours."""
    html = rendering._clean(
        '<div class="code-block evil" tabindex="-1" onclick="x()"><span class="k hidden" style="x">a</span>'
        '<button type="submit" data-action="delete" class="code-copy modal">b</button>'
        '<pre tabindex="1"><code class="language-x">c</code></pre>'
        '<div class="table-scroll" role="x">d</div></div>'
    )
    assert html == (
        '<div class="code-block"><span class="k">a</span><button class="code-copy">b</button>'
        '<pre><code>c</code></pre><div class="table-scroll">d</div></div>'
    )


def test_very_long_code_is_shown_plain_and_broken_lexers_do_not_cost_the_reply(monkeypatch):
    long = "x = 1\n" * (highlight.MAX_CHARS // 6 + 1)
    html = whole(f"```python\n{long}```")
    assert '<span class="code-lang">Python</span>' in html and '<span class="m' not in html
    assert code_text(html) == long

    def broken(self, text):
        raise RuntimeError("a lexer's bug")

    monkeypatch.setattr(highlight.lexer_for("python"), "get_tokens_unprocessed", broken)
    highlight.highlight.cache_clear()
    html = whole("```python\nx = 1\n```")
    assert code_text(html) == "x = 1\n" and '<span class="m' not in html
    monkeypatch.undo()
    highlight.highlight.cache_clear()  # (what it cached is what the broken lexer gave)


def test_the_copy_buttons_words_are_in_the_pages_language(app, monkeypatch):
    spanish = {
        "Copy": "Copiar",
        "Copy code": "Copiar el código",
        "Copied": "Copiado",
        "Couldn't copy": "No se pudo",
    }
    monkeypatch.setattr(rendering, "_", lambda text: spanish[text])
    with app.test_request_context():
        html = whole("```\nx\n```")
    assert (
        'aria-label="Copiar el código" data-copied="Copiado" data-failed="No se pudo">Copiar</button>' in html
    )
    assert COPY in whole("```\nx\n```")  # outside a request (the CLI, exports): English


# --- the generated stylesheet -------------------------------------------------------------------


def test_the_committed_stylesheet_has_the_generated_code_colours():
    css = highlight.committed_css()
    assert css == highlight.css(), "run: python -m chatbot.highlight --write"
    # the theme contract: dark when chosen, or followed from the system unless light was chosen
    assert ':root[data-theme="dark"] .code-block pre {' in css
    assert '@media (prefers-color-scheme: dark) {\n  :root:not([data-theme="light"]) .code-block pre {' in css


def luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("style", [highlight.LIGHT_STYLE, highlight.DARK_STYLE])
def test_code_colours_are_readable_in_both_themes(style):
    """WCAG AA: every token's colour at least 4.5:1 against what it is drawn on."""
    text, background = highlight.base_colours(style)
    assert contrast(text, background) >= 4.5
    for css, d in highlight.token_styles(style).items():
        fg = text if d["color"] == "inherit" else d["color"]
        bg = background if d["background-color"] == "transparent" else d["background-color"]
        assert contrast(fg, bg) >= 4.5, (css, fg, bg)
