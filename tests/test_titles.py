"""CHATBOT_AUTO_TITLE=model: a short title asked of the model after the first reply, off the
reply's path; a failure, or a rename meanwhile, keeps the title there is."""

from __future__ import annotations

import time

import pytest

from .fake_openai import Reply
from .helpers import HX, all_conversations, conversation_id_from, send, wait_until


@pytest.fixture
def titled(app_factory, openai_config):
    return app_factory(**openai_config, AUTO_TITLE="model")


def title(app) -> str:
    return all_conversations(app)[0].title


def test_the_model_titles_a_conversation_after_its_first_reply(titled, fake_openai):
    client = titled.test_client()
    fake_openai.will(Reply("Try another cable."), Reply('"Phone won\'t charge."'), Reply("Anything else?"))
    response = send(client, "hi my fone wont charge at all since yesterday what do i do")
    assert "Try another cable." in response.get_data(as_text=True)  # the reply, untouched
    wait_until(lambda: title(titled) == "Phone won't charge", timeout=5, what="the model's title")
    asked = fake_openai.requests[1].json["messages"]
    assert asked[0]["role"] == "system" and "title" in asked[0]["content"]
    assert asked[1]["content"].startswith("hi my fone") and asked[2]["content"] == "Try another cable."
    send(client, "thanks", all_conversations(titled)[0].public_id)  # only after the first reply
    time.sleep(0.3)
    assert len(fake_openai.requests) == 3 and title(titled) == "Phone won't charge"


def test_a_failed_title_call_keeps_the_first_message(titled, fake_openai):
    client = titled.test_client()
    fake_openai.will(Reply("Try another cable."), Reply(status=500))
    send(client, "my phone won't charge")
    wait_until(lambda: len(fake_openai.requests) == 2, timeout=5, what="the title call")
    time.sleep(0.3)
    assert title(titled) == "my phone won't charge"


def test_a_rename_meanwhile_wins(titled, fake_openai):
    client = titled.test_client()
    fake_openai.will(Reply("Try another cable."), Reply("Charging trouble", first_token_delay=1.0))
    cid = conversation_id_from(send(client, "my phone won't charge"))
    assert client.post(f"/c/{cid}/rename", data={"title": "Mine"}, headers=HX).status_code == 200
    wait_until(lambda: len(fake_openai.requests) == 2, timeout=5, what="the title call")
    time.sleep(1.5)
    assert title(titled) == "Mine"


def test_off_by_default(app, client, fake_openai):
    send(client, "my phone won't charge")
    time.sleep(0.3)
    assert len(fake_openai.requests) == 1 and title(app) == "my phone won't charge"
