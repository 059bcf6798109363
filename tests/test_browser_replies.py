"""A finished-looking reply in a real browser: highlighted code with its language and a Copy button
(also while the reply is still streaming), a table that scrolls sideways on a phone, a block quote,
links that open in a new tab, headings below the page's own, code colours for both themes."""

from __future__ import annotations

from playwright.sync_api import expect

from .fake_openai import Reply
from .test_browser import ASSISTANT, app, assert_no_js_errors, chat, send_with_enter

__all__ = ["app", "chat"]  # (the fixtures, as test_browser.py sets them up)

CODE = (
    "import subprocess\n"
    "# the battery's state, read over USB\n"
    'out = subprocess.run(["adb", "shell", "dumpsys", "battery"], capture_output=True)\n'
    "print(out.stdout.decode())"
)
REPLY = (
    "# Battery tips\n\n"
    "Compare the settings first:\n\n"
    "| Setting | Where to find it on the phone | What it changes | Battery saved per day |\n"
    "| --- | --- | --- | --- |\n"
    "| Brightness | Settings › Display › Brightness | how bright the screen is | about fifteen percent |\n"
    "| Background refresh | Settings › General › Background refresh | apps updating while closed | "
    "about ten percent |\n\n"
    "Then read the battery's state from a computer:\n\n"
    f"```python\n{CODE}\n```\n\n"
    "> Keep the phone out of the sun while it charges.\n\n"
    "More at https://example.com/help/battery\n\n"
    + " ".join(f"word{i}" for i in range(120))  # (time to use Copy while the reply still streams)
)

# A word broken across two lines has two boxes: every word of every cell must have one.
WORDS_BROKEN = """(table) => {
    const broken = [];
    for (const cell of table.querySelectorAll("th, td")) {
        const node = cell.firstChild;
        let at = 0;
        for (const word of node.textContent.split(" ")) {
            const range = document.createRange();
            range.setStart(node, at);
            range.setEnd(node, at + word.length);
            if (word && range.getClientRects().length !== 1) broken.push(word);
            at += word.length + 1;
        }
    }
    return broken;
}"""


def colour(locator, prop: str = "color") -> str:
    return locator.evaluate(f"(e) => getComputedStyle(e).{prop}")


def test_a_streamed_reply_with_a_table_and_code_looks_finished_on_a_phone(chat, live_server, fake_openai):
    page = chat
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page.set_viewport_size({"width": 360, "height": 740})
    fake_openai.will(Reply(REPLY, token_delay=0.05))
    send_with_enter(page, "My battery drains fast")
    reply = page.locator(ASSISTANT)
    body = reply.locator(".message-body")

    # While it is still being written, the finished code block is there, highlighted, and copies.
    block = body.locator(".code-block")
    expect(body.locator("blockquote")).to_be_visible(timeout=15_000)  # (the block after it has begun)
    expect(block.locator("pre code span.kn").first).to_have_text("import")
    assert reply.get_attribute("data-status") == "streaming"
    expect(block.get_by_role("button", name="Copy code")).to_be_visible()
    copy = block.locator('[data-action="copy-code"]')
    # (from the keyboard: the list scrolls as the reply grows, and a pointer aimed at a moving
    # button may land beside it; a click is checked on the finished reply below)
    copy.focus()
    page.keyboard.press("Enter")
    # shown and said to a screen reader, at once (checked together: it goes back after 2 s, which
    # a slow machine can spend between two separate checks)
    page.wait_for_function(
        "b => b.textContent === 'Copied' && b.getAttribute('aria-label') === 'Copied'",
        arg=copy.element_handle(),
        timeout=5_000,
    )
    assert page.evaluate("navigator.clipboard.readText()") == CODE
    page.evaluate("navigator.clipboard.writeText('')")

    expect(reply).to_have_attribute("data-status", "complete", timeout=15_000)
    # the finished reply, rendered whole: the code highlighted, its language on top
    expect(block.locator(".code-lang")).to_have_text("Python")
    keyword = block.locator("pre code span.kn").first
    expect(keyword).to_have_text("import")
    comment = block.locator("pre code span.c1")
    expect(comment).to_have_text("# the battery's state, read over USB")
    plain = colour(block.locator("pre"))
    assert colour(keyword) != plain and colour(comment) != plain  # coloured, not just marked up
    expect(block.locator("pre")).to_have_css("background-color", "rgb(248, 248, 248)")
    # Copy copies exactly the code (not the label "Python", not a trailing newline), says so, and
    # goes back to its name
    copy = block.locator('[data-action="copy-code"]')
    copy.click()  # (the reply is finished: nothing moves now)
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == CODE
    expect(copy).to_have_text("Copy", timeout=4_000)
    expect(copy).to_have_accessible_name("Copy code")

    # the table: borders and a header row, in a box that scrolls sideways rather than widening
    # the page or breaking its words
    scroller = body.locator(".table-scroll")
    table = scroller.locator("table")
    expect(table.locator("th").first).to_have_css("border-left-style", "solid")
    expect(table.locator("th").first).to_have_css("font-weight", "600")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    assert page.evaluate("(m) => m.scrollWidth <= m.clientWidth", page.locator("#messages").element_handle())
    assert scroller.evaluate("(e) => e.scrollWidth > e.clientWidth + 50")
    assert table.evaluate(WORDS_BROKEN) == []
    last = table.locator("th").last
    assert not last.evaluate(
        "(th) => { const s = th.closest('.table-scroll').getBoundingClientRect();"
        " return th.getBoundingClientRect().right <= s.right; }"
    )  # (its last column is out of view...)
    scroller.focus()  # ...until it is scrolled to, from the keyboard too
    page.keyboard.press("ArrowRight")
    page.wait_for_function("(e) => e.scrollLeft > 0", arg=scroller.element_handle())
    assert page.evaluate("document.documentElement.scrollWidth") <= 360

    # a block quote with a bar, in muted text; a bare address linked, opening a new tab; the
    # reply's own heading below the page's h1 and h2
    quote = body.locator("blockquote")
    expect(quote).to_have_css("border-left-style", "solid")
    assert colour(quote) == colour(page.locator(".message-meta").first)  # (the muted colour)
    link = body.get_by_role("link", name="https://example.com/help/battery")
    expect(link).to_have_attribute("href", "https://example.com/help/battery")
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
    expect(body.get_by_role("heading", name="Battery tips", level=3)).to_be_visible()
    assert_no_js_errors(page)


def test_code_colours_follow_the_theme(chat, fake_openai):
    """Dark code colours when the visitor chose dark, or by the system unless they chose light."""
    page = chat
    fake_openai.will(Reply(f"```python\n{CODE}\n```"))
    send_with_enter(page, "Show me")
    reply = page.locator(ASSISTANT)
    expect(reply).to_have_attribute("data-status", "complete")
    pre, keyword = reply.locator(".code-block pre"), reply.locator("span.kn").first
    root = page.locator("html")

    def theme(scheme: str, chosen: str | None) -> tuple[str, str]:
        page.emulate_media(color_scheme=scheme)
        root.evaluate(
            "(e, t) => (t ? e.setAttribute('data-theme', t) : e.removeAttribute('data-theme'))", chosen
        )
        return colour(pre, "backgroundColor"), colour(keyword)

    light = ("rgb(248, 248, 248)", "rgb(0, 128, 0)")
    dark = ("rgb(13, 17, 23)", "rgb(255, 123, 114)")
    assert theme("light", None) == light
    assert theme("dark", None) == dark  # followed
    assert theme("dark", "light") == light  # chosen over the system's
    assert theme("light", "dark") == dark
    assert theme("dark", "dark") == dark
    assert_no_js_errors(page)
