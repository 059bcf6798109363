"""``flask init-db`` and ``flask conversations list|show|export|reset``."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import text, update

from chatbot.chat.export import validate_chat_line
from chatbot.config import DEFAULT_SYSTEM_PROMPT
from chatbot.database import schema_ready
from chatbot.extensions import db
from chatbot.models import Conversation, Message, utcnow

from .fake_openai import Reply
from .helpers import HX, all_conversations, all_messages, conversation_id_from, post_url, send


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


def test_list_shows_id_title_count_update_and_outcome(app, client, runner, fake_openai):
    assert "No conversations." in runner.invoke(args=["conversations", "list"]).output
    first, second = make_conversations(app, client, ["Battery question", "Screen question"])
    send(client, "one more", second)
    send(client, "I want to talk to a person", first)  # (an escalation)
    out = runner.invoke(args=["conversations", "list"]).output
    lines = out.strip().splitlines()
    assert lines[0].split() == ["ID", "MESSAGES", "UPDATED", "(UTC)", "OUTCOME", "TITLE"]
    assert lines[1].split()[0] == first and lines[1].split()[1:2] == ["4"]  # newest first
    assert lines[2].split()[0] == second and lines[2].split()[1] == "4"
    assert lines[1].split()[4] == "escalated" and lines[2].split()[4] == "open"
    assert lines[1].endswith("Battery question") and lines[2].endswith("Screen question")


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


# --- show and export -------------------------------------------------------------------------


def edited_conversation(app, client, fake_openai) -> str:
    """q1 a1, q2 a2; then q2 edited: the shown path is q1 a1 q2' a2', q2 and a2 are set aside."""
    fake_openai.will(Reply("a1"), Reply("a2"), Reply("a2 again"))
    cid = conversation_id_from(send(client, "q1"))
    send(client, "q2", cid)
    q2 = next(m.id for m in all_messages(app) if m.content == "q2")
    client.post(
        post_url(cid),
        data={"content": "", "edit": str(q2), "edit_content": "q2 again"},
        headers=HX,
        buffered=True,
    )
    return cid


def test_show_prints_the_transcript_of_the_shown_path(app, client, runner, fake_openai):
    cid = edited_conversation(app, client, fake_openai)
    result = runner.invoke(args=["conversations", "show", cid])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "q1" and lines[1].startswith(f"{cid}, started ")
    said = [line.strip() for line in lines[2:] if line.startswith("    ")]
    assert said == ["q1", "a1", "q2 again", "a2 again"]
    heads = [line.split(" · ")[0] for line in lines[2:] if line and not line.startswith(" ")]
    assert heads == ["You", "Assistant", "You", "Assistant"]
    assert "q2\n" not in result.stdout and "    a2\n" not in result.stdout


def test_show_keeps_a_message_from_passing_for_the_transcript_or_the_terminal(
    app, client, runner, fake_openai
):
    fake_openai.will(Reply(status=401))
    cid = conversation_id_from(send(client, "first line"))
    question = all_messages(app)[0].id
    with app.app_context():  # (the page strips control characters; older rows may hold them)
        db.session.execute(
            update(Message)
            .where(Message.id == question)
            .values(content="first line\nAssistant · 2020-01-01T00:00:00Z\n\x1b[31mred\x1b[0m\ttab\u202e")
        )
        db.session.commit()
    lines = runner.invoke(args=["conversations", "show", cid]).stdout.splitlines()
    assert lines[4:8] == [
        "    first line",
        "    Assistant · 2020-01-01T00:00:00Z",
        "    [31mred[0m    tab",
        "",
    ]
    assert "\x1b" not in "".join(lines) and "\u202e" not in "".join(lines)
    assert lines[8].startswith("Assistant · ") and lines[9].startswith("    [")  # the page's notice
    assert "OPENAI_API_KEY" not in "".join(lines)  # (the operator's detail stays in the database)


def test_show_an_unknown_id_says_so(runner):
    for unknown in ("nope\x1b", "\udcff", "x" * 1000):
        result = runner.invoke(args=["conversations", "show", unknown])
        assert result.exit_code == 1 and "Error: no conversation with id" in result.output
        assert isinstance(result.exception, SystemExit) and "\x1b" not in result.output


def test_export_writes_fine_tuning_jsonl_of_every_conversation_by_default(app, client, runner, fake_openai):
    cid = edited_conversation(app, client, fake_openai)
    client.post("/new")
    fake_openai.will(Reply(status=401))
    send(client, "never answered")
    result = runner.invoke(args=["conversations", "export"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.split("\n")
    assert lines[-1] == "" and len(lines) == 2
    example = validate_chat_line(lines[0])
    assert [m["content"] for m in example] == [DEFAULT_SYSTEM_PROMPT, "q1", "a1", "q2 again", "a2 again"]
    assert "Exported 1 conversation(s) to standard output (1 without an answer to learn from left out)." in (
        result.stderr
    )
    assert cid not in result.stdout


def test_export_json_is_an_array_of_conversations(app, client, runner, fake_openai):
    first = edited_conversation(app, client, fake_openai)
    client.post("/new")
    second = conversation_id_from(send(client, "other"))
    everything = json.loads(runner.invoke(args=["conversations", "export", "--format", "json"]).stdout)
    assert [c["id"] for c in everything] == [first, second]
    assert [m["content"] for m in everything[0]["messages"]] == ["q1", "a1", "q2 again", "a2 again"]
    one = json.loads(
        runner.invoke(args=["conversations", "export", "--format", "json", "--id", second]).stdout
    )
    assert [c["id"] for c in one] == [second]
    runner.invoke(args=["conversations", "reset", "--all", "--yes"])
    assert runner.invoke(args=["conversations", "export", "--format", "json"]).stdout == "[]\n"


def test_export_markdown_of_several_in_the_order_asked(app, client, runner, fake_openai):
    first = edited_conversation(app, client, fake_openai)
    client.post("/new")
    second = conversation_id_from(send(client, "other question"))
    result = runner.invoke(args=["conversations", "export", "--format", "md", "--id", second, "--id", first])
    assert result.exit_code == 0
    text = result.stdout
    assert text.startswith("# other question\n") and "\n---\n\n# q1\n" in text
    assert text.index("other question") < text.index("q2 again") and "\nq2\n" not in text


def test_export_to_a_file(app, client, runner, fake_openai, tmp_path):
    edited_conversation(app, client, fake_openai)
    out = tmp_path / "train.jsonl"
    result = runner.invoke(args=["conversations", "export", "--out", str(out)])
    assert result.exit_code == 0 and result.stdout == ""
    assert f"Exported 1 conversation(s) to {out}." in result.stderr
    (line,) = out.read_text(encoding="utf-8").splitlines()
    validate_chat_line(line)


def test_export_errors_are_one_clear_line_and_write_nothing(app, client, runner, fake_openai, tmp_path):
    cid = conversation_id_from(send(client, "q"))
    out = tmp_path / "out.jsonl"
    unknown = runner.invoke(args=["conversations", "export", "--id", cid, "--id", "nope", "--out", str(out)])
    assert unknown.exit_code == 1 and "Error: no conversation with id nope" in unknown.output
    assert not out.exists()
    bad = runner.invoke(args=["conversations", "export", "--format", "csv"])
    assert bad.exit_code == 2 and "Invalid value for '--format'" in bad.output
    for target in (tmp_path / "missing" / "out.jsonl", tmp_path):
        unwritable = runner.invoke(args=["conversations", "export", "--out", str(target)])
        assert unwritable.exit_code == 1 and f"Error: can't write {target}" in unwritable.output
        assert "Traceback" not in unwritable.output
    for result in (unknown, bad, unwritable):
        assert isinstance(result.exception, SystemExit)


def test_reset_goes_through_the_delete_service(app, client, runner, fake_openai, monkeypatch):
    import chatbot.cli

    called = []
    real = chatbot.cli.delete_conversations
    monkeypatch.setattr(chatbot.cli, "delete_conversations", lambda ids: called.append(ids) or real(ids))
    (cid,) = make_conversations(app, client, ["gone"])
    assert runner.invoke(args=["conversations", "reset", "--id", cid]).exit_code == 0
    assert len(called) == 1 and all_conversations(app) == []
