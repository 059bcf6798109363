"""Every conversation ends with an honest outcome: "Did this solve it?" after an answer (never after
small talk), Yes / No / Talk to a person recorded on the conversation, abandoned when nobody
answers for a while (an injected clock here), and only a confirmed "yes" counted as resolved."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from chatbot.chat import outcomes
from chatbot.extensions import db
from chatbot.models import Conversation, Message, utcnow

from .helpers import HX, all_conversations, all_messages, conversation_id_from, message_url, parse_sse, send

QUESTION = "How long is the warranty on a new phone?"


@pytest.fixture
def shop(app_factory):
    """The offline assistant, with a way to reach a person configured."""
    return app_factory(PROVIDER="offline", SUPPORT_PHONE="+34 900 123 456", SUPPORT_EMAIL="help@shop.example")


def ask(client, text: str, cid: str | None = None) -> tuple[str, str]:
    response = send(client, text, cid)
    final = parse_sse(response.get_data(as_text=True))[-1]["data"]
    return (cid or conversation_id_from(response)), final


def answer(client, cid: str, reply_id: int, choice: str, htmx: bool = True):
    return client.post(
        message_url(cid, reply_id, "outcome"), data={"answer": choice}, headers=HX if htmx else {}
    )


def outcome(app) -> str | None:
    (conversation,) = all_conversations(app)
    return conversation.outcome


def test_an_answer_asks_whether_it_solved_it_and_small_talk_does_not(shop):
    client = shop.test_client()
    cid, final = ask(client, "hola")
    assert 'data-action="outcome-yes"' not in final
    cid, final = ask(client, QUESTION, cid)
    assert "Did this solve your problem?" in final
    for action in ("outcome-yes", "outcome-no", "outcome-person"):
        assert f'data-action="{action}"' in final
    cid, final = ask(client, "thanks!", cid)
    assert 'data-action="outcome-yes"' not in final
    # the page asks only under the latest answer, and only while it is the latest message
    page = client.get(f"/c/{cid}").get_data(as_text=True)
    assert 'data-action="outcome-yes"' not in page
    assert outcome(shop) is None  # (open: nobody said anything yet)


@pytest.mark.parametrize("htmx", [True, False], ids=["htmx", "plain"])
def test_yes_is_the_only_resolved(shop, htmx):
    client = shop.test_client()
    cid, _ = ask(client, QUESTION)
    reply = all_messages(shop)[1]
    response = answer(client, cid, reply.id, "yes", htmx)
    if htmx:
        assert response.status_code == 200 and "Glad that solved it" in response.get_data(as_text=True)
    else:
        assert response.status_code == 303
        page = client.get(response.headers["Location"]).get_data(as_text=True)
        assert "Glad that solved it" in page and 'data-action="outcome-yes"' not in page
    assert outcome(shop) == "resolved" and all_messages(shop)[1].meta["resolution"] == "yes"
    exported = client.get(f"/c/{cid}/export.json").get_json()
    assert exported["outcome"] == "resolved" and exported["messages"][1]["metadata"]["resolution"] == "yes"
    with shop.app_context():
        report = outcomes.summary()
    assert report.by_outcome["resolved"] == 1 and report.resolution_rate == 1.0


def test_no_asks_what_happened_and_offers_a_person(shop):
    client = shop.test_client()
    cid, _ = ask(client, QUESTION)
    body = answer(client, cid, all_messages(shop)[1].id, "no").get_data(as_text=True)
    assert "What happened when you tried it?" in body and 'href="tel:+34900123456"' in body
    assert outcome(shop) == "unresolved"
    # the customer says more, gets another answer, and this time it helped
    cid, final = ask(client, "I tried another cable and it still doesn't charge", cid)
    assert 'data-action="outcome-yes"' in final
    answer(client, cid, all_messages(shop)[-1].id, "yes")
    assert outcome(shop) == "resolved"


def test_talk_to_a_person_gives_the_contact(shop):
    client = shop.test_client()
    cid, _ = ask(client, QUESTION)
    body = answer(client, cid, all_messages(shop)[1].id, "person").get_data(as_text=True)
    assert "+34 900 123 456" in body and 'href="mailto:help@shop.example"' in body
    assert outcome(shop) == "escalated"


def test_asking_for_a_person_in_words_is_an_escalation_in_both_languages(shop):
    for words in ("I want to talk to a human", "quiero hablar con una persona"):
        client = shop.test_client()
        _cid, final = ask(client, words)
        assert "+34 900 123 456" in final and 'data-action="outcome-yes"' not in final
    assert {c.outcome for c in all_conversations(shop)} == {"escalated"}


def test_an_answer_the_conversation_moved_past_can_no_longer_be_answered(shop):
    client = shop.test_client()
    cid, _ = ask(client, QUESTION)
    first = all_messages(shop)[1].id
    ask(client, "and for a refurbished one?", cid)
    response = answer(client, cid, first, "yes")
    assert response.status_code == 409 and "moved on" in response.get_data(as_text=True)
    bad = answer(client, cid, all_messages(shop)[-1].id, "maybe")
    assert bad.status_code == 400 and outcome(shop) is None


def backdate(app, minutes: float) -> None:
    with app.app_context():
        db.session.execute(update(Conversation).values(updated_at=utcnow() - timedelta(minutes=minutes)))
        db.session.commit()


def test_silence_is_abandoned_never_resolved_and_a_return_reopens_it(shop):
    client = shop.test_client()
    cid, _ = ask(client, QUESTION)
    other, _ = ask(shop.test_client(), QUESTION)
    now = utcnow()
    with shop.app_context():
        assert outcomes.settle(now, timedelta(minutes=30)) == 0  # not idle yet
        assert outcomes.settle(now + timedelta(minutes=31), timedelta(minutes=30)) == 2
        report = outcomes.summary()
    assert report.by_outcome["abandoned"] == 2 and report.by_outcome["resolved"] == 0
    assert report.resolution_rate == 0.0
    ask(client, "and for a refurbished one?", cid)  # the customer came back
    states = {c.public_id: c.outcome for c in all_conversations(shop)}
    assert states == {cid: None, other: "abandoned"}


def test_a_conversation_with_a_reply_still_being_written_is_not_abandoned(shop):
    _cid, _ = ask(shop.test_client(), QUESTION)
    with shop.app_context():
        db.session.execute(update(Message).where(Message.is_user.is_(False)).values(status="streaming"))
        db.session.commit()
        assert outcomes.settle(utcnow() + timedelta(hours=2), timedelta(minutes=30)) == 0


def test_the_sweep_runs_after_requests_and_the_cli_reports_confirmed_resolution(app_factory):
    app = app_factory(PROVIDER="offline", ABANDONED_AFTER_MINUTES=1, ABANDONED_SWEEP_SECONDS=0)
    client = app.test_client()
    ask(client, QUESTION)
    backdate(app, 5)
    client.get("/").close()  # the sweep runs once the response is done
    assert outcome(app) == "abandoned"
    result = app.test_cli_runner().invoke(args=["conversations", "outcomes"])
    assert result.exit_code == 0, result.output
    assert "abandoned" in result.output and "confirmed resolved: 0 of 1 (0%)" in result.output
