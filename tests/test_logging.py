"""Logging is set up by the factory, and a turn's lines say which conversation and reply."""

from __future__ import annotations

import logging

import pytest

from .fake_openai import DEFAULT_REPLY, Reply
from .helpers import all_conversations, send


def test_a_failed_turn_logs_its_conversation_and_reply(app, client, fake_openai, caplog):
    fake_openai.will(Reply(status=500))
    with caplog.at_level(logging.INFO, logger="chatbot"):
        send(client, "Why is my phone hot?")
    conversation = all_conversations(app)[0]
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("chatbot.chat")]
    assert any(
        line.startswith(f"conversation={conversation.id} reply=2 attempt=1: model call failed (server)")
        for line in lines
    ), lines


def test_level_and_format_come_from_config(app_factory, capfd):
    app_factory(LOG_LEVEL="warning", LOG_FORMAT="[%(levelname)s] %(name)s | %(message)s")
    logger = logging.getLogger("chatbot.chat.turns")
    assert not logger.isEnabledFor(logging.INFO) and logger.isEnabledFor(logging.WARNING)
    logger.warning("something to see")
    assert "[WARNING] chatbot.chat.turns | something to see" in capfd.readouterr().err


def test_an_unknown_level_is_refused_at_start(app_factory):
    with pytest.raises(RuntimeError, match="LOG_LEVEL"):
        app_factory(LOG_LEVEL="chatty")


def test_json_logs_carry_one_line_per_request_and_per_reply_and_no_secrets(
    app_factory, openai_config, fake_openai, capfd
):
    import json

    app = app_factory(**openai_config, LOG_JSON=True)
    client = app.test_client()
    capfd.readouterr()
    response = send(client, "my secret phone number is 555-0100")
    assert response.headers["X-Request-Id"]
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    request = next(line for line in lines if line["logger"] == "chatbot.requests")
    assert request["method"] == "POST" and request["path"] == "/c" and request["status"] == 200
    assert request["request_id"] == response.headers["X-Request-Id"] and request["duration_ms"] >= 0
    with app.app_context():
        from chatbot.extensions import db
        from chatbot.models import Conversation

        token = db.session.query(Conversation.owner).scalar()
    assert len(request["owner"]) == 12 and request["owner"] != token and token not in json.dumps(lines)
    reply = next(line for line in lines if line["logger"] == "chatbot.chat.turns")
    assert reply["model"] == openai_config["MODEL"] and reply["finish_reason"] == "stop"
    assert reply["completion_tokens"] > 0 and reply["ttft_ms"] >= 0 and reply["reply"] == 2
    assert "555-0100" not in json.dumps(lines) and DEFAULT_REPLY[:20] not in json.dumps(lines)


def test_a_given_request_id_is_kept_and_a_forged_one_replaced(app, client):
    assert client.get("/", headers={"X-Request-Id": "lb-1234.abc"}).headers["X-Request-Id"] == "lb-1234.abc"
    forged = client.get("/", headers={"X-Request-Id": "x; Set-Cookie: a=b" + "y" * 100})
    assert forged.headers["X-Request-Id"] != "x" and len(forged.headers["X-Request-Id"]) == 32
