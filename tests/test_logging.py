"""Logging is set up by the factory, and a turn's lines say which conversation and reply."""

from __future__ import annotations

import logging

import pytest

from .fake_openai import Reply
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
