"""On a phone, and the first look: what a customer at 360 px sees and taps, the composer that
grows and counts, Stop in Send's place, and the welcome with its questions."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from chatbot.suggestions import from_dataset

from .fake_openai import Reply
from .helpers import HX

ASSISTANT = '#messages article.message[data-role="assistant"]'

# what a finger taps: buttons, the menu, the export menu, the composer and the search box
TARGETS = (
    "button, [role=button], summary, textarea, input[type=search], #conversations a[data-conversation-id]"
)


@pytest.fixture
def app(app_factory, openai_config):
    return app_factory(**openai_config, CSRF_ENABLED=True)


def phone(browser, live_server, *, height: int = 740, **options):
    context = browser.new_context(viewport={"width": 360, "height": height}, has_touch=True, **options)
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto(live_server.url + "/")
    page.wait_for_load_state("load")
    return context, page


def small_targets(page, at_least: int = 4) -> list[str]:
    """The visible targets smaller than 44 x 44 px (after checking that there are some to see)."""
    shown, small = page.evaluate(
        """(selector) => {
             const shown = [...document.querySelectorAll(selector)]
               .filter((el) => el.offsetParent !== null && el.getBoundingClientRect().width > 0);
             const small = shown
               .map((el) => [el, el.getBoundingClientRect()])
               .filter(([, r]) => r.width < 44 || r.height < 44)
               .map(([el, r]) => `${el.tagName} ${el.dataset.action || el.className} ${r.width}x${r.height}`);
             return [shown.length, small];
           }""",
        TARGETS,
    )
    assert shown >= at_least, shown
    return small


def no_sideways_scroll(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= 360


def test_at_360_px_everything_fits_and_every_target_is_44_px(browser, live_server, fake_openai):
    fake_openai.will(Reply("| Model | Battery |\n|---|---|\n| A | 4000 mAh |\n\nTry **Settings > Battery**."))
    context, page = phone(browser, live_server)
    try:
        no_sideways_scroll(page)
        assert small_targets(page) == []
        page.locator("#composer-input").fill("My battery drains fast")
        page.locator("#composer-input").press("Enter")
        expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
        page.locator(ASSISTANT).hover()  # (its tools show)
        no_sideways_scroll(page)
        assert small_targets(page) == []
        # the title stays readable in the compact header
        title = page.locator("#conversation-title")
        assert title.bounding_box()["width"] >= 120 and title.inner_text() == "My battery drains fast"
        # the list, in its drawer, has the language and theme switches
        page.locator('[data-action="conversations"]').click()
        expect(page.locator('#conversations [data-action="language"]')).to_be_visible()
        expect(page.locator('#conversations [data-action="theme"]')).to_be_visible()
        assert small_targets(page) == []
    finally:
        context.close()


def test_with_a_400_px_tall_screen_the_composer_stays_in_view_and_grows(browser, live_server):
    context, page = phone(browser, live_server, height=400)
    try:
        box = page.locator("#composer-input")
        expect(box).to_be_in_viewport()
        assert box.evaluate("(el) => getComputedStyle(el).fontSize") == "16px"  # (no zoom on focus)
        before = box.bounding_box()["height"]
        box.fill("line\n" * 4 + "the fifth line")
        grown = box.bounding_box()["height"]
        assert grown > before + 40  # it grows with its text
        box.fill("line\n" * 60)
        assert box.bounding_box()["height"] <= 400 * 0.4 + 1  # up to 40% of the screen, then scrolls
        expect(box).to_be_in_viewport()
        expect(page.locator("form#composer button.button--send")).to_be_in_viewport()
    finally:
        context.close()


def test_near_the_limit_a_counter_shows_and_a_longer_message_is_refused_whole(browser, live_server, app):
    limit = app.config["MAX_MESSAGE_CHARS"]
    context, page = phone(browser, live_server)
    try:
        box, count = page.locator("#composer-input"), page.locator("#composer-count")
        box.fill("a" * 100)
        expect(count).to_be_empty()
        box.fill("a" * (limit - 10))
        expect(count).to_have_text(f"{limit - 10:,} / {limit:,}")
        text = "b" * (limit + 5)
        box.fill(text)  # (a paste: nothing is cut off)
        expect(count).to_have_text(f"{limit + 5:,} / {limit:,}")
        assert "composer-count--over" in count.get_attribute("class")
        box.press("Enter")
        expect(page.locator("#composer-error")).to_contain_text(f"the limit is {limit:,}")
        assert box.input_value() == text  # the draft is kept, whole
        expect(page.locator("#messages article")).to_have_count(0)
    finally:
        context.close()


def test_stop_takes_sends_place_while_a_reply_streams(browser, live_server, fake_openai):
    fake_openai.will(Reply("word " * 200, token_delay=0.05))
    context, page = phone(browser, live_server)
    try:
        send, stop = (
            page.locator("button.button--send"),
            page.locator('form#composer [data-action="stop-reply"]'),
        )
        expect(stop).to_be_hidden()
        page.locator("#composer-input").fill("Tell me everything")
        page.locator("#composer-input").press("Enter")
        expect(stop).to_be_visible()
        expect(send).to_be_hidden()
        stop.click()
        reply = page.locator(ASSISTANT)
        expect(reply).to_have_attribute("data-status", "interrupted")
        expect(send).to_be_visible()
        expect(stop).to_be_hidden()
        expect(page.locator("#composer-input")).to_be_focused()
    finally:
        context.close()


# --- the first look -----------------------------------------------------------------------------


def test_an_empty_chat_greets_in_the_visitors_language_with_questions_from_the_dataset(client):
    english = client.get("/").get_data(as_text=True)
    assert "Hi! How can we help with your phone?" in english
    offered = re.findall(
        r'<button type="submit" class="suggestion" data-action="suggestion">(.*?)</button>', english
    )
    assert 4 <= len(offered) <= 6 and offered == list(from_dataset()["en"])
    spanish = client.get("/", headers={"Accept-Language": "es"}).get_data(as_text=True)
    assert "¡Hola! ¿En qué podemos ayudarte con tu teléfono?" in spanish
    offered = re.findall(r'data-action="suggestion">(.*?)</button>', spanish)
    assert 4 <= len(offered) <= 6 and all(q.startswith(("¿", "Se ", "La ", "Mi ", "El ")) for q in offered), (
        offered
    )


def test_the_questions_and_the_name_are_configurable(app_factory):
    app = app_factory(
        PROVIDER="auto",
        SUGGESTIONS={"en": ["Where is my order?"], "es": ["¿Dónde está mi pedido?"]},
        ASSISTANT_NAME="Ayuda Acme",
    )
    client = app.test_client()
    page = client.get("/").get_data(as_text=True)
    assert re.findall(r'data-action="suggestion">(.*?)</button>', page) == ["Where is my order?"]
    assert "<span>Ayuda Acme</span>" in page
    es = client.get("/", headers={"Accept-Language": "es"}).get_data(as_text=True)
    assert re.findall(r'data-action="suggestion">(.*?)</button>', es) == ["¿Dónde está mi pedido?"]
    none = app_factory(PROVIDER="auto", SUGGESTIONS=[]).test_client().get("/").get_data(as_text=True)
    assert 'class="suggestions"' not in none and "Hi! How can we help" in none


def test_a_suggested_question_is_sent_and_answered(page, live_server, fake_openai):
    page.goto(live_server.url + "/")
    page.wait_for_load_state("load")
    first = page.locator('[data-action="suggestion"]').first
    question = first.inner_text()
    first.click()
    expect(page.locator('#messages article[data-role="user"]')).to_have_text(re.compile(re.escape(question)))
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    expect(page.locator(".welcome")).to_be_hidden()
    assert fake_openai.requests[-1].json["messages"][-1]["content"] == question


def test_without_javascript_a_suggestion_is_a_form_and_the_placeholder_says_press_send(
    browser, live_server, fake_openai
):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(live_server.url + "/")
        assert (
            page.locator("#composer-input").get_attribute("placeholder")
            == "Type your question, then press Send."
        )
        expect(page.locator("#composer-keys")).to_be_hidden()  # ("Enter to send" is chat.js's doing)
        with page.expect_navigation():
            page.locator('[data-action="suggestion"]').first.click()
        expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    finally:
        context.close()


def test_with_javascript_the_placeholder_and_hint_say_enter_sends(page, live_server):
    page.goto(live_server.url + "/")
    page.wait_for_load_state("load")
    assert page.locator("#composer-input").get_attribute("placeholder") == "Type your question…"
    expect(page.locator("#composer-keys")).to_have_text("Enter to send · Shift+Enter for a new line")


def test_the_model_id_is_never_shown(client, fake_openai, openai_config):
    response = client.post("/c", data={"content": "Hi"}, headers=HX)
    assert openai_config["MODEL"] not in response.get_data(as_text=True)
