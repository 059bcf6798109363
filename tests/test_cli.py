"""``flask init-db`` and ``flask conversations list|reset``."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text, update

from chatbot.database import schema_ready
from chatbot.extensions import db
from chatbot.models import Conversation, utcnow

from .helpers import all_conversations, all_messages, conversation_id_from, send


def make_conversations(app, client, titles):
    ids = []
    for title in titles:
        client.post("/new")
        ids.append(conversation_id_from(send(client, title)))
    return ids


def age(app, public_id, days):
    with app.app_context():
        db.session.execute(
            update(Conversation)
            .where(Conversation.public_id == public_id)
            .values(updated_at=utcnow() - timedelta(days=days))
        )
        db.session.commit()


def test_init_db_creates_the_tables(app, runner):
    with app.app_context():
        db.drop_all()
        with db.engine.begin() as conn:
            conn.execute(text("DROP TABLE alembic_version"))
        assert not schema_ready()
    result = runner.invoke(args=["init-db"])
    assert result.exit_code == 0 and "Database created" in result.output
    with app.app_context():
        assert schema_ready()
    assert app.test_client().get("/").status_code == 200


def test_list_shows_id_title_count_and_update(app, client, runner, fake_openai):
    assert "No conversations." in runner.invoke(args=["conversations", "list"]).output
    first, second = make_conversations(app, client, ["Battery question", "Screen question"])
    send(client, "one more", second)
    out = runner.invoke(args=["conversations", "list"]).output
    lines = out.strip().splitlines()
    assert lines[0].split() == ["ID", "MESSAGES", "UPDATED", "(UTC)", "TITLE"]
    assert lines[1].split()[0] == second and lines[1].split()[1] == "4"  # newest first
    assert lines[2].split()[0] == first and lines[2].split()[1] == "2"
    assert lines[1].endswith("Screen question") and lines[2].endswith("Battery question")


def test_reset_by_id(app, client, runner, fake_openai):
    keep, gone = make_conversations(app, client, ["keep me", "remove me"])
    result = runner.invoke(args=["conversations", "reset", "--id", gone])
    assert result.exit_code == 0
    assert f"Removed 1 conversation(s) and 2 message(s): conversation {gone}." in result.output
    assert [c.public_id for c in all_conversations(app)] == [keep]
    assert len(all_messages(app)) == 2
    missing = runner.invoke(args=["conversations", "reset", "--id", "nope"])
    assert missing.exit_code != 0 and "no conversation with id nope" in missing.output


def test_reset_older_than(app, client, runner, fake_openai):
    old, recent = make_conversations(app, client, ["old one", "recent one"])
    age(app, old, 45)
    result = runner.invoke(args=["conversations", "reset", "--older-than", "30d"])
    assert result.exit_code == 0
    assert "Removed 1 conversation(s) and 2 message(s): conversations not updated for 30d." in result.output
    assert [c.public_id for c in all_conversations(app)] == [recent]
    bad = runner.invoke(args=["conversations", "reset", "--older-than", "soon"])
    assert bad.exit_code == 2 and "like 30d" in bad.output


def test_reset_all_asks_first(app, client, runner, fake_openai):
    make_conversations(app, client, ["a", "b"])
    declined = runner.invoke(args=["conversations", "reset", "--all"], input="n\n")
    assert declined.exit_code == 1 and "Aborted" in declined.output
    assert len(all_conversations(app)) == 2
    accepted = runner.invoke(args=["conversations", "reset", "--all"], input="y\n")
    assert "Removed 2 conversation(s) and 4 message(s): every conversation." in accepted.output
    assert all_conversations(app) == [] and all_messages(app) == []


def test_reset_all_with_yes_does_not_ask(app, client, runner, fake_openai):
    make_conversations(app, client, ["a"])
    result = runner.invoke(args=["conversations", "reset", "--all", "--yes"])
    assert result.exit_code == 0 and "Removed 1 conversation(s)" in result.output
    assert "?" not in result.output


def test_reset_needs_exactly_one_choice(runner):
    result = runner.invoke(args=["conversations", "reset"])
    assert result.exit_code == 2 and "choose exactly one" in result.output
    both = runner.invoke(args=["conversations", "reset", "--all", "--older-than", "1d"])
    assert both.exit_code == 2


def test_the_session_of_a_removed_conversation_starts_afresh(app, client, runner, fake_openai):
    (cid,) = make_conversations(app, client, ["soon gone"])
    runner.invoke(args=["conversations", "reset", "--all", "--yes"])
    page = client.get("/")
    assert page.status_code == 200 and "soon gone" not in page.get_data(as_text=True)
    assert client.get(f"/c/{cid}").status_code == 404
