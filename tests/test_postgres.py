"""The same turn on PostgreSQL (DATABASE_URL): history, metadata, a second worker, the CLI."""

from __future__ import annotations

import uuid

import pytest

from .conftest import PG_SERVER
from .fake_openai import Reply
from .helpers import all_messages, conversation_id_from, history, parse_sse, send


@pytest.fixture(scope="module")
def pg_url(pg_admin):
    name = f"chatbot_test_{uuid.uuid4().hex[:10]}"
    pg_admin.execute(f'CREATE DATABASE "{name}"')
    yield PG_SERVER.rsplit("/", 1)[0] + "/" + name
    pg_admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_turns_on_postgresql(pg_url, app_factory, openai_config, fake_openai, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", pg_url)
    app = app_factory(SQLALCHEMY_DATABASE_URI=None, **openai_config)
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql+psycopg://")
    client = app.test_client()

    fake_openai.will(Reply("Primera respuesta."), Reply(status=500), Reply("Tercera."))
    cid = conversation_id_from(send(client, "¿Por qué mi batería dura poco?"))
    failed = parse_sse(send(client, "¿Y la pantalla?", cid).get_data(as_text=True))[-1]["data"]
    assert 'data-status="error"' in failed
    reply_id = all_messages(app)[-1].id
    retried = parse_sse(send(client, "", cid, retry=reply_id).get_data(as_text=True))[-1]["data"]
    assert 'data-status="complete"' in retried

    assert [m["role"] for m in history(fake_openai.requests[-1])] == [
        "system",
        "user",
        "assistant",
        "user",
    ]
    messages = all_messages(app)
    assert [(m.is_user, m.status) for m in messages] == [
        (True, "complete"),
        (False, "complete"),
        (True, "complete"),
        (False, "complete"),
    ]
    assert messages[1].timestamp.tzinfo is not None
    assert messages[3].meta["total_tokens"] > 0

    other = app_factory(SQLALCHEMY_DATABASE_URI=None, **openai_config).test_client()
    other.set_cookie("chatbot_session", client.get_cookie("chatbot_session").value)
    assert "Tercera." in other.get(f"/c/{cid}").get_data(as_text=True)

    listing = app.test_cli_runner().invoke(args=["conversations", "list"]).output
    assert cid in listing and "¿Por qué mi batería dura poco?" in listing
    result = app.test_cli_runner().invoke(args=["conversations", "reset", "--all", "--yes"])
    assert "Removed 1 conversation(s) and 4 message(s)" in result.output
