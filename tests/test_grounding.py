"""Grounded replies with a model: each turn gives the (fake) model the shop's articles that answer
the question, with the instruction to answer from them and cite; the reply's citations become
links to the articles, shown in the same stream event that completes it; what was retrieved is in
the reply's metadata."""

from __future__ import annotations

import re
from pathlib import Path

from chatbot.knowledge.grounding import INSTRUCTION, NO_ARTICLES

from .fake_openai import Reply
from .helpers import (
    all_conversations,
    all_messages,
    articles_note,
    conversation_id_from,
    history,
    parse_sse,
    send,
)


def test_the_model_gets_the_articles_and_the_instruction_just_before_the_question(client, app, fake_openai):
    fake_openai.will(Reply("Two years [1]."), Reply("Yes, 30 days [2]."))
    cid = conversation_id_from(send(client, "How long is the warranty on a new phone?"))
    send(client, "and can I still return it if I changed my mind?", cid)
    first, second = fake_openai.requests
    note = articles_note(first)
    assert note is not None and note.startswith(INSTRUCTION)
    assert "[1] Your phone warranty" in note and "(/help/warranty, en)" in note
    assert "3 years" in note  # the passage's own text (the shop's policy)
    messages = first.json["messages"]
    assert messages[-2]["role"] == "system" and messages[-1]["content"].startswith("How long is the warranty")
    # the next turn: the history is intact, and the note is about the new question only
    assert [m["content"] for m in history(second)[1:]] == [
        "How long is the warranty on a new phone?",
        "Two years [1].",
        "and can I still return it if I changed my mind?",
    ]
    assert "/help/returns-and-refunds" in articles_note(second)


def test_citations_become_links_to_the_articles_in_the_event_that_completes_the_reply(
    client, app, fake_openai
):
    fake_openai.will(
        Reply("New phones have a 3-year warranty [1]. Refurbished ones, 1 year [1]. See also [7].")
    )
    events = parse_sse(send(client, "How long is the warranty on a new phone?").get_data(as_text=True))
    final = events[-1]["data"]
    assert 'data-status="complete"' in final
    sources = re.search(r'<div class="message-sources">.*?</div>', final, re.S).group(0)
    # one source ([7] names no article it was given: ignored), numbered as cited, a safe link
    assert re.findall(
        r'<li value="(\d+)"><a href="([^"]+)" target="_blank" rel="noopener">([^<]+)</a>', sources
    ) == [
        ("1", "/help/warranty", "Your phone warranty - what it covers and how to claim"),
    ]
    reply = all_messages(app)[1]
    assert reply.meta["sources"] == [{"n": 1, "slug": "warranty", "title": reply.meta["sources"][0]["title"]}]
    assert reply.meta["retrieved"][0]["slug"] == "warranty" and reply.meta["retrieved"][0]["passages"]
    assert reply.meta["intent"] == "question" and reply.meta["ask_outcome"] is True
    # and the same on a page load
    page = client.get(f"/c/{all_conversations(app)[0].public_id}").get_data(as_text=True)
    assert 'href="/help/warranty"' in page


def test_a_reply_that_cites_nothing_lists_no_sources(client, app, fake_openai):
    fake_openai.will(Reply("Restart it and try again."))
    final = parse_sse(send(client, "How long is the warranty on a new phone?").get_data(as_text=True))[-1][
        "data"
    ]
    assert "message-sources" not in final
    reply = all_messages(app)[1]
    assert "sources" not in reply.meta and reply.meta["retrieved"]  # (what was given is still kept)


def test_a_question_no_article_covers_gets_the_honest_instruction(client, fake_openai):
    send(client, "zxqv wobble frobnicate")
    assert articles_note(fake_openai.requests[0]) == NO_ARTICLES


def test_small_talk_goes_to_the_model_without_articles_or_the_question(client, app, fake_openai):
    fake_openai.will(Reply("Hello! How can I help?"))
    send(client, "hi there!")
    assert articles_note(fake_openai.requests[0]) is None
    reply = all_messages(app)[1]
    assert reply.meta["intent"] == "greeting" and "ask_outcome" not in reply.meta


def test_asking_for_a_person_gives_the_model_the_contact_and_records_the_outcome(
    app_factory, openai_config, fake_openai
):
    app = app_factory(SUPPORT_PHONE="+34 900 123 456", SUPPORT_HOURS="Mon-Fri 9-20", **openai_config)
    client = app.test_client()
    fake_openai.will(Reply("Of course: call +34 900 123 456 (Mon-Fri 9-20)."))
    send(client, "I want to talk to a human please")
    note = articles_note(fake_openai.requests[0])
    assert "Phone: +34 900 123 456" in note and "Hours: Mon-Fri 9-20" in note
    (conversation,) = all_conversations(app)
    assert conversation.outcome == "escalated"
    assert all_messages(app)[1].meta["intent"] == "person"


def test_a_hostile_article_title_is_escaped_in_the_sources(
    app_factory, openai_config, fake_openai, tmp_path: Path
):
    folder = tmp_path / "instance" / "articles"
    folder.mkdir(parents=True)
    (folder / "warranty-x.md").write_text(
        '---\ntitle: "<img src=x onerror=alert(1)> Warranty"\n---\nThe warranty lasts three years.\n',
        encoding="utf-8",
    )
    app = app_factory(**openai_config)
    fake_openai.will(Reply("Three years [1]."))
    final = parse_sse(send(app.test_client(), "how long does the warranty last?").get_data(as_text=True))[-1][
        "data"
    ]
    assert "<img src=x" not in final and "&lt;img src=x onerror=alert(1)&gt; Warranty" in final
    assert 'href="/help/warranty-x"' in final
