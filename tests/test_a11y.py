"""Accessibility in a real browser (Chromium): axe-core in every state of the page, in both
themes and both languages; what the live region says while a reply streams; every message's
name; the skip link, the focusable message list and where the focus goes after Stop, Retry and
"Show earlier messages", from the keyboard alone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .a11y import assert_no_serious_violations
from .fake_openai import Reply
from .test_long import fill

ASSISTANT = '#messages article.message[data-role="assistant"]'
USER = '#messages article.message[data-role="user"]'
MESSAGES = "#messages article.message"
LOCALES = {"en": "en-US", "es": "es-ES"}
SLOW_REPLY = " ".join(f"word{i}" for i in range(300))  # 300 tokens, 0.05 s apart: 15 s
# About 150 words, for the live region (streamed in some 30 batches)
WORDS_150 = " ".join(
    "Open Settings, then Battery, and look at which apps used the most power today.".split() * 11
)[:900]
AT_BOTTOM = "m => m.scrollHeight - m.scrollTop - m.clientHeight < 80"
SCROLLED_ABOVE = "(y) => document.getElementById('messages').scrollTop < y"
SCROLLED_BELOW = "(y) => document.getElementById('messages').scrollTop > y"


@pytest.fixture
def app(app_factory, openai_config):
    """The app as shipped: CSRF protection on (the page carries and refreshes its token)."""
    return app_factory(**openai_config, CSRF_ENABLED=True)


def open_page(
    browser, url: str, *, theme: str = "light", lang: str = "en", width: int = 1100, height: int = 800
):
    """A fresh browser context (its own cookies) in this colour scheme and language, on ``url``."""
    context = browser.new_context(
        viewport={"width": width, "height": height}, color_scheme=theme, locale=LOCALES[lang]
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.page_errors = []
    page.on("pageerror", lambda exc: page.page_errors.append(str(exc)))
    page.goto(url)
    page.wait_for_load_state("load")  # deferred scripts (htmx, chat.js) have run
    return page


def send(page, text: str) -> None:
    box = page.locator("#composer-input")
    box.fill(text)
    box.press("Enter")


def long_conversation(app, page, base_url: str, older: int = 60) -> str:
    """One real exchange after ``older`` messages put straight in the database; opened afresh."""
    send(page, "first question")
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "complete")
    public_id = page.url.rsplit("/", 1)[1]
    fill(app, public_id, older)
    page.goto(f"{base_url}/c/{public_id}")
    page.wait_for_load_state("load")
    return public_id


# --- axe-core ------------------------------------------------------------------------------------
#
# The matrix: every state in both themes and in both languages. Each test walks one theme and
# one language through the five states in order, on one server and one conversation: the empty
# page; the conversation grown to 60 old messages + 1 exchange (the list scrolls, "Show earlier
# messages" shows); a reply streaming (paced, 15 s: checked while it streams); the error state (the
# model fails, the reply shows its reason and Retry); the same page at 360 px. Two walks, light in
# English and dark in Spanish, check every state in each theme and in each language (10 axe runs,
# ~35 s). The two pairs left out (light Spanish, dark English) would test theme x language, and
# the two don't meet: a theme changes colours only (contrast), a language the words only (names,
# lengths that wrap at 360 px). Adding them is one more line each below (~18 s each).


@pytest.mark.parametrize(("theme", "lang"), [("light", "en"), ("dark", "es")])
def test_axe_finds_nothing_serious_or_critical_in_any_state(
    browser, app, live_server, fake_openai, theme, lang
):
    page = open_page(browser, live_server.url + "/", theme=theme, lang=lang)
    assert page.evaluate("document.documentElement.lang") == lang
    assert page.evaluate(f"matchMedia('(prefers-color-scheme: {theme})').matches")
    where = f"{theme} theme, {lang}"

    assert_no_serious_violations(page, f"the empty page, {where}")

    long_conversation(app, page, live_server.url)
    expect(page.locator(".earlier a")).to_be_visible()
    assert page.locator("#messages").evaluate("m => m.scrollHeight > m.clientHeight")
    assert_no_serious_violations(page, f"a long conversation, {where}")

    fake_openai.will(Reply(SLOW_REPLY, token_delay=0.05))
    send(page, "Tell me everything about eSIM")
    reply = page.locator(ASSISTANT).last
    expect(reply.locator(".message-body")).to_contain_text("word3")
    assert_no_serious_violations(page, f"a reply streaming, {where}")
    expect(reply).to_have_attribute("data-status", "streaming")  # (still, when axe was done)
    page.keyboard.press("Escape")
    expect(reply).to_have_attribute("data-status", "interrupted")

    fake_openai.will(Reply(status=500))
    send(page, "Is my warranty still valid?")
    failed = page.locator(ASSISTANT).last
    expect(failed).to_have_attribute("data-status", "error")
    expect(failed.locator('[data-action="retry"]')).to_be_visible()
    assert_no_serious_violations(page, f"the error state, {where}")

    page.set_viewport_size({"width": 360, "height": 740})
    expect(page.locator('[data-action="conversations"]')).to_be_visible()  # (the phone layout)
    assert_no_serious_violations(page, f"360 px wide, {where}")
    assert page.page_errors == []
    page.context.close()


# --- the live region -------------------------------------------------------------------------------

# Every change inside a live region (anything under aria-live other than "off", or a role that is
# live by default), with what the region said after it; installed before the page's own scripts.
RECORD_LIVE_REGIONS = """
window.__live = [];
const LIVE = ['[aria-live]:not([aria-live="off"])', '[role="log"]', '[role="status"]', '[role="alert"]',
              '[role="marquee"]', '[role="timer"]'].join(", ");
new MutationObserver((records) => {
    for (const r of records) {
        const node = r.target.nodeType === 1 ? r.target : r.target.parentElement;
        const region = node && node.closest(LIVE);
        if (region) window.__live.push([region.id || region.className, region.textContent.trim()]);
    }
}).observe(document, {childList: true, subtree: true, characterData: true});
"""


def test_a_reply_is_announced_when_it_starts_and_when_it_ends_not_batch_by_batch(
    browser, live_server, fake_openai
):
    page = open_page(browser, live_server.url + "/")
    page.evaluate(RECORD_LIVE_REGIONS)
    messages = page.locator("#messages")
    assert messages.get_attribute("aria-live") in (None, "off")
    assert messages.get_attribute("role") not in ("log", "status", "alert")
    fake_openai.will(Reply(WORDS_150, token_delay=0.02))  # some 150 tokens: ~3 s, in ~30 batches
    page.evaluate("""() => {
        window.__batches = 0;
        document.addEventListener("htmx:sse:after:message", () => { window.__batches += 1; });
    }""")
    send(page, "How can I make my battery last longer?")

    reply = page.locator(ASSISTANT)
    expect(reply).to_have_attribute("data-status", "streaming")
    expect(reply).to_have_attribute("aria-busy", "true")
    expect(page.locator("#announcer")).to_have_text("Assistant is answering…")
    expect(reply).to_have_attribute("data-status", "complete")
    expect(reply).not_to_have_attribute("aria-busy", "true")
    expect(page.locator("#announcer")).to_have_text(re.compile(r"^The assistant answered: Open Settings"))
    page.wait_for_timeout(300)

    batches = page.evaluate("window.__batches")
    live = page.evaluate("window.__live")
    assert batches >= 10, f"the reply came in {batches} batches: too few to tell"
    assert len(live) <= 3, f"{len(live)} changes in live regions for {batches} batches: {live[:8]}"
    assert [text for _, text in live] == [
        "Assistant is answering…",
        "The assistant answered: " + WORDS_150,
    ]
    assert page.page_errors == []
    page.context.close()


def test_a_stopped_or_failed_reply_is_announced_with_how_it_ended(browser, live_server, fake_openai):
    page = open_page(browser, live_server.url + "/", lang="es")
    announcer = page.locator("#announcer")
    fake_openai.will(Reply(SLOW_REPLY, token_delay=0.05), Reply(status=500))
    send(page, "¿Cómo activo la eSIM?")
    expect(announcer).to_have_text("El asistente está respondiendo…")
    # Stopped once the model is answering (a stop before that never asks it, and the slow reply
    # would then be the second question's)
    expect(page.locator(ASSISTANT).locator(".message-body")).to_contain_text("word1 ")
    page.keyboard.press("Escape")
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "interrupted")
    expect(announcer).to_have_text(page.locator(ASSISTANT).locator(".message-notice").inner_text())
    send(page, "¿Y la garantía?")
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "error")
    expect(announcer).to_have_text(
        page.locator(ASSISTANT).last.locator(".message-notice--error").inner_text()
    )
    page.context.close()


# --- names -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "you", "assistant"), [("en", "You", "Phone support"), ("es", "Tú", "Soporte de teléfonos")]
)
def test_every_message_is_named_by_its_author_and_local_time(
    browser, live_server, fake_openai, lang, you, assistant
):
    page = open_page(browser, live_server.url + "/", lang=lang)
    send(page, "My phone won't charge")
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    for selector, author in ((USER, you), (ASSISTANT, assistant)):
        shown = page.locator(selector).locator(".message-meta time").inner_text()
        assert re.match(r"\d\d:\d\d", shown) and "UTC" not in shown, shown  # (the reader's own time)
        expect(page.get_by_role("article", name=f"{author}, {shown}", exact=True)).to_have_count(1)
    page.reload()  # the same from a page load
    for selector, author in ((USER, you), (ASSISTANT, assistant)):
        shown = page.locator(selector).locator(".message-meta time").inner_text()
        expect(page.get_by_role("article", name=f"{author}, {shown}", exact=True)).to_have_count(1)
    page.context.close()


# --- the keyboard alone ---------------------------------------------------------------------------------


def focused(page) -> str:
    """The focused element, as a short description (its id, data-action or tag)."""
    return page.evaluate("""() => {
        const e = document.activeElement;
        if (!e || e === document.body) return "body";
        return e.id ? "#" + e.id : e.dataset.action || e.tagName.toLowerCase();
    }""")


# Tab from the top of the page, as on arriving (Chromium tabs on from where the focus was last)
FROM_THE_TOP = """() => {
    document.activeElement.blur();
    document.body.tabIndex = -1;
    document.body.focus();
    document.body.removeAttribute("tabindex");
}"""


def test_keyboard_only_skip_link_list_and_show_earlier(browser, app, live_server, fake_openai):
    page = open_page(browser, live_server.url + "/")
    long_conversation(app, page, live_server.url, older=80)
    messages = page.locator("#messages")
    expect(page.locator("#composer-input")).to_be_focused()  # (autofocus)

    # the skip link is the first stop, and shows when it has the focus
    page.evaluate(FROM_THE_TOP)
    page.keyboard.press("Tab")
    skip = page.locator(".skip-link")
    expect(skip).to_be_focused()
    expect(skip).to_have_text("Skip to the message box")
    box = skip.bounding_box()
    assert box and box["y"] >= 0 and box["x"] >= 0 and box["height"] > 10, box
    page.keyboard.press("Enter")
    expect(page.locator("#composer-input")).to_be_focused()
    assert page.url.endswith(page.evaluate("location.pathname"))  # (no #fragment added)

    # Tab from the skip link reaches the message list, which is named, before the composer
    skip.focus()
    order = []
    for _ in range(40):
        page.keyboard.press("Tab")
        order.append(focused(page))
        if order[-1] in ("#messages", "#composer-input"):
            break
    assert order[-1] == "#messages", order  # (after the list of conversations and the header)
    assert order[0] == "#conversation-search", order
    assert messages.get_attribute("aria-label") == "Conversation"

    # the focused list scrolls with PageUp / PageDown
    messages.focus()
    assert messages.evaluate(AT_BOTTOM)
    bottom = messages.evaluate("m => m.scrollTop")
    page.keyboard.press("PageUp")
    page.wait_for_function(SCROLLED_ABOVE, arg=bottom - 100)
    page.keyboard.press("PageUp")
    page.wait_for_timeout(200)
    up = messages.evaluate("m => m.scrollTop")
    page.keyboard.press("PageDown")
    page.wait_for_function(SCROLLED_BELOW, arg=up + 100)
    expect(messages).to_be_focused()

    # "Show earlier messages" from the keyboard: the list keeps the focus and the reader's place
    page.keyboard.press("Home")
    page.wait_for_function("() => document.getElementById('messages').scrollTop === 0")
    page.keyboard.press("Tab")  # into the list: its first link
    expect(page.locator(".earlier a")).to_be_focused()
    first = page.locator(MESSAGES).first
    first_id, before = first.get_attribute("id"), first.bounding_box()["y"]
    page.keyboard.press("Enter")
    expect(page.locator(MESSAGES)).to_have_count(82)
    expect(messages).to_be_focused()
    after = page.locator(f"#{first_id}").bounding_box()["y"]
    assert abs(after - before) < 3, (before, after)
    assert page.page_errors == []
    page.context.close()


def test_keyboard_only_the_focus_returns_to_the_composer_after_stop_and_retry(
    browser, live_server, fake_openai
):
    page = open_page(browser, live_server.url + "/")
    box = page.locator("#composer-input")
    fake_openai.will(Reply(SLOW_REPLY, token_delay=0.05), Reply(status=500))

    send(page, "Tell me everything about eSIM")
    reply = page.locator(ASSISTANT)
    expect(reply.locator(".message-body")).to_contain_text("word3")
    page.keyboard.press("Shift+Tab")  # from the composer, back to the reply's Stop button
    expect(reply.locator('[data-action="stop"]')).to_be_focused()
    page.keyboard.press("Enter")
    expect(reply).to_have_attribute("data-status", "interrupted")
    expect(box).to_be_focused()

    send(page, "Is my warranty still valid?")
    failed = page.locator(ASSISTANT).last
    expect(failed).to_have_attribute("data-status", "error")
    expect(box).to_be_focused()
    page.keyboard.press("Shift+Tab")  # back to its Retry button
    expect(failed.locator('[data-action="retry"]')).to_be_focused()
    page.keyboard.press("Enter")  # (the next model request gets the default reply)
    expect(failed).to_have_attribute("data-status", "complete")
    expect(box).to_be_focused()
    assert focused(page) == "#composer-input"
    assert page.page_errors == []
    page.context.close()
