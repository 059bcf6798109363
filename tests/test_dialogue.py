"""The offline assistant in a real dialogue, in both languages: follow-ups stay on their topic, a
new topic gets its own answer, greetings, thanks and goodbyes are answered briefly in the language
of the latest message, "a person, please" gets the ways to reach one, off-topic questions are
declined politely, and answers come from the shop's articles with their citations. Through HTTP,
then in Chromium as a customer would."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from chatbot.language import detect
from chatbot.llm.offline import OFF_TOPIC, SMALL_TALK

from .conftest import LiveServer
from .helpers import all_messages, conversation_id_from, send


class Chat:
    """One customer's conversation with the offline assistant, over HTTP."""

    def __init__(self, app):
        self.app = app
        self.client = app.test_client()
        self.cid: str | None = None

    def say(self, text: str):
        response = send(self.client, text, self.cid)
        self.cid = self.cid or conversation_id_from(response)
        return all_messages(self.app)[-1]


@pytest.fixture
def chat(app_factory):
    return Chat(app_factory(PROVIDER="offline"))


def cites(reply) -> list[str]:
    return [s["slug"] for s in reply.meta.get("sources", [])]


def test_a_follow_up_stays_on_topic_and_a_new_topic_changes_it(chat):
    first = chat.say("my bluetooth headphones won't pair")
    assert cites(first) == ["bluetooth-pairing"] and "[1]" in first.content
    switched = chat.say("ok, and how do I back up my photos?")
    assert cites(switched) == ["back-up-your-phone"]
    assert switched.content != first.content


def test_a_follow_up_gets_the_next_part_not_the_same_answer_again(chat):
    first = chat.say("My phone won't charge")
    follow = chat.say("and if it's the cable?")
    assert cites(follow) == ["phone-wont-charge"]
    assert follow.content != first.content and "cable" in follow.content.lower()


@pytest.mark.parametrize(
    ("said", "kind", "lang"),
    [
        ("thanks!", "thanks", "en"),
        ("gracias", "thanks", "es"),
        ("hola", "greeting", "es"),
        ("hi there", "greeting", "en"),
        ("bye", "goodbye", "en"),
        ("adiós, gracias", "goodbye", "es"),
    ],
)
def test_small_talk_is_answered_briefly_in_the_language_of_the_latest_message(chat, said, kind, lang):
    chat.say(
        "¿Cómo activo la eSIM?" if lang == "en" else "How do I turn on eSIM?"
    )  # the other language first
    reply = chat.say(said)
    assert reply.content == SMALL_TALK[kind][lang]
    assert reply.meta["intent"] == kind and "sources" not in reply.meta and "ask_outcome" not in reply.meta


@pytest.mark.parametrize(
    ("said", "lang"), [("I want to talk to a human", "en"), ("¿Puedo hablar con una persona?", "es")]
)
def test_asking_for_a_person_gets_how_to_reach_one(app_factory, said, lang):
    chat = Chat(app_factory(PROVIDER="offline", SUPPORT_PHONE="+34 900 123 456", SUPPORT_HOURS="9-20"))
    reply = chat.say(said)
    assert "+34 900 123 456" in reply.content and "9-20" in reply.content
    assert detect(reply.content) == lang
    # without a configured contact: the shop's own contact article
    chat = Chat(app_factory(PROVIDER="offline"))
    reply = chat.say(said)
    assert cites(reply) == [{"en": "contact-and-hours", "es": "contacto-y-horario"}[lang]]


@pytest.mark.parametrize(
    ("said", "lang"),
    [("Can you give me a good recipe for paella?", "en"), ("¿Quién ganó el partido de fútbol ayer?", "es")],
)
def test_off_topic_questions_are_declined_politely(chat, said, lang):
    reply = chat.say(said)
    assert reply.content == OFF_TOPIC[lang] and "ask_outcome" not in reply.meta


def test_answers_come_from_the_articles_and_from_the_dataset(chat):
    policy = chat.say("How much does a battery replacement cost?")
    assert cites(policy) and "59" in policy.content  # the shop's own price, from its article
    # a question only the bundled dataset covers is still answered (without a citation)
    dataset = chat.say("My phone is stuck in a boot loop after an update")
    assert dataset.meta["answered_from"] in ("dataset", "article") and dataset.content


# --- in the browser --------------------------------------------------------------------------------


@pytest.fixture
def offline_server(app_factory):
    server = LiveServer(app_factory(PROVIDER="offline", CSRF_ENABLED=True, SUPPORT_PHONE="+34 900 123 456"))
    yield server
    server.stop()


ASSISTANT = '#messages article.message[data-role="assistant"]'


def send_in_page(page, text: str) -> None:
    count = page.locator(ASSISTANT).count()
    page.locator("#composer-input").fill(text)
    page.locator("#composer-input").press("Enter")
    expect(page.locator(ASSISTANT)).to_have_count(count + 1)
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "complete")


@pytest.mark.parametrize("lang", ["en", "es"])
def test_a_dialogue_in_the_browser(browser, offline_server, lang):
    context = browser.new_context(
        locale={"en": "en-GB", "es": "es-ES"}[lang], viewport={"width": 1000, "height": 800}
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(offline_server.url + "/")
    script = {
        "en": ["hi there", "My phone won't charge", "and if it's the cable?", "thanks!"],
        "es": ["hola", "mi móvil no carga", "¿y si es el cable?", "gracias"],
    }[lang]
    send_in_page(page, script[0])
    reply = page.locator(ASSISTANT).last
    expect(reply.locator(".message-body")).to_have_text(SMALL_TALK["greeting"][lang])
    expect(reply.locator("form.outcome")).to_have_count(0)  # not after a greeting

    send_in_page(page, script[1])
    reply = page.locator(ASSISTANT).last
    link = reply.locator(".message-sources a")
    expect(link).to_have_count(1)
    slug = {"en": "/help/phone-wont-charge", "es": "/help/no-carga"}[lang]
    expect(link).to_have_attribute("href", slug)
    expect(reply.locator("form.outcome")).to_be_visible()

    send_in_page(page, script[2])
    expect(page.locator("form.outcome")).to_have_count(1)  # only under the latest answer
    follow = page.locator(ASSISTANT).last
    expect(follow.locator(".message-sources a")).to_have_attribute("href", slug)

    # "No" asks what happened, offers a person, and puts the cursor in the composer
    follow.locator('[data-action="outcome-no"]').click()
    note = page.locator(ASSISTANT).last.locator(".outcome-note")
    expect(note).to_contain_text("+34 900 123 456")
    expect(page.locator("#composer-input")).to_be_focused()

    send_in_page(page, script[3])
    expect(page.locator(ASSISTANT).last.locator(".message-body")).to_have_text(SMALL_TALK["thanks"][lang])

    # a new topic gets its own answer and article
    send_in_page(
        page,
        {
            "en": "ok, and how do I back up my photos?",
            "es": "vale, ¿y cómo hago una copia de seguridad de mis fotos?",
        }[lang],
    )
    expect(page.locator(ASSISTANT).last.locator(".message-sources a")).to_have_attribute(
        "href", {"en": "/help/back-up-your-phone", "es": "/help/copia-de-seguridad"}[lang]
    )
    # off-topic: declined politely, nothing to rate
    send_in_page(
        page,
        {"en": "Can you give me a good recipe for paella?", "es": "¿Quién ganó el partido de fútbol ayer?"}[
            lang
        ],
    )
    expect(page.locator(ASSISTANT).last.locator(".message-body")).to_have_text(OFF_TOPIC[lang])
    expect(page.locator("form.outcome")).to_have_count(0)
    # a person: how to reach one
    send_in_page(page, {"en": "I'd like to talk to a person", "es": "quiero hablar con una persona"}[lang])
    expect(page.locator(ASSISTANT).last.locator(".message-body")).to_contain_text("+34 900 123 456")
    expect(page.locator("form.outcome")).to_have_count(0)

    # the cited article opens as a page of its own
    article = context.new_page()
    article.goto(offline_server.url + slug)
    expect(article.locator("h1")).to_be_visible()
    assert re.search(r"(?i)charg|carg", article.locator("h1").inner_text())
    assert errors == []
    context.close()
