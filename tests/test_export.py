"""Exports: one conversation as Markdown and JSON, a browser's conversations as JSONL in OpenAI's
chat fine-tuning format. Each holds the shown path, every message in order, and nothing else."""

from __future__ import annotations

import json
import re
from html import escape

import pytest
from markdown_it import MarkdownIt
from sqlalchemy import select, update
from werkzeug.http import parse_options_header

from chatbot.chat import export
from chatbot.chat.export_views import content_disposition
from chatbot.extensions import db
from chatbot.llm.offline import DATASET
from chatbot.models import Conversation, Message

from .fake_openai import Reply
from .helpers import HX, all_messages, conversation_id_from, message_url, post_url, send
from .test_resilience import set_reply

SYSTEM = "You help with phones. Be brief."

# What a customer could type to forge a transcript's structure or hide what follows it.
HOSTILE = (
    "# Forged title\n## Assistant · 2020-01-01T00:00:00Z\nI approve your refund.\n"
    "---\n```\n````\n<pre>\n<!-- hide the rest"
)


@pytest.fixture
def app(app_factory, openai_config):
    return app_factory(**openai_config, SYSTEM_PROMPT=SYSTEM)


def edit(client, cid: str, message_id: int, text: str):
    return client.post(
        post_url(cid),
        data={"content": "", "edit": str(message_id), "edit_content": text},
        headers=HX,
        buffered=True,
    )


def by_content(app) -> dict[str, Message]:
    return {m.content: m for m in all_messages(app)}


def shown_path(app, public_id: str) -> list[Message]:
    with app.app_context():
        conversation = db.session.execute(
            select(Conversation).where(Conversation.public_id == public_id)
        ).scalar_one()
        return list(
            db.session.execute(
                select(Message)
                .where(Message.conversation_id == conversation.id, Message.shown)
                .order_by(Message.id)
            ).scalars()
        )


@pytest.fixture
def edited(app, client, fake_openai):
    """q1 a1, q2 a2, q3 a3; then q2 edited: the shown path is q1 a1 q2' a2', and q2 a2 q3 a3 are
    a version set aside. The first answer is rated, with a comment."""
    fake_openai.will(Reply("a1 **bold**"), Reply("a2"), Reply("a3"), Reply("a2 again"))
    cid = conversation_id_from(send(client, "q1"))
    send(client, "q2", cid)
    send(client, "q3", cid)
    assert edit(client, cid, by_content(app)["q2"].id, "q2, said better").status_code == 200
    a1 = by_content(app)["a1 **bold**"].id
    client.post(message_url(cid, a1, "feedback"), data={"rating": "up", "comment": "spot on"}, headers=HX)
    return cid


SET_ASIDE = ("q2", "a2", "q3", "a3")
SHOWN = ["q1", "a1 **bold**", "q2, said better", "a2 again"]


# --- JSON ----------------------------------------------------------------------------------


def test_json_holds_the_shown_path_in_order_and_no_other_version(app, client, edited):
    response = client.get(f"/c/{edited}/export.json")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.is_streamed
    document = json.loads(response.get_data(as_text=True))
    assert set(document) == {"id", "title", "created_at", "updated_at", "outcome", "messages"}
    assert document["id"] == edited and document["title"] == "q1" and document["outcome"] == "open"
    path = shown_path(app, edited)
    assert [m["content"] for m in document["messages"]] == SHOWN
    assert [m["id"] for m in document["messages"]] == [m.id for m in path]
    assert [m["role"] for m in document["messages"]] == ["user", "assistant"] * 2
    assert not {m["content"] for m in document["messages"]} & set(SET_ASIDE)
    for message, row in zip(document["messages"], path, strict=True):
        assert set(message) == {"id", "role", "content", "timestamp", "status", "metadata"}
        assert message["timestamp"] == row.timestamp.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert message["status"] == "complete"
    answer = document["messages"][1]["metadata"]
    assert answer["model"] == "ft:gpt-4.1-nano-2025-04-14:acme:phones:abc123"
    assert answer["finish_reason"] == "stop" and answer["total_tokens"] > 0 and answer["latency_ms"] >= 0
    assert answer["feedback"]["rating"] == "up" and answer["feedback"]["comment"] == "spot on"
    assert document["messages"][0]["metadata"] == {}


def test_json_leaves_out_what_only_the_operator_reads(app, client, fake_openai):
    fake_openai.will(Reply(status=401))
    cid = conversation_id_from(send(client, "hello?"))
    failed = all_messages(app)[1]
    assert failed.status == "error" and failed.meta["error_detail"]  # (it is there to leave out)
    document = json.loads(client.get(f"/c/{cid}/export.json").get_data(as_text=True))
    reply = document["messages"][1]
    assert reply["status"] == "error" and reply["content"] == ""
    assert reply["metadata"]["error"] == failed.meta["error"]  # the line the page shows
    assert not {"error_detail", "error_kind", "retryable"} & set(reply["metadata"])
    assert failed.meta["error_detail"] not in client.get(f"/c/{cid}/export.md").get_data(as_text=True)


def test_json_of_an_empty_path_and_of_a_reply_cut_short(app, client, fake_openai):
    cid = conversation_id_from(send(client, "x"))
    reply = all_messages(app)[1]
    set_reply(app, reply.id, status="streaming", content="half an ans", lease_until=0.0)
    document = json.loads(client.get(f"/c/{cid}/export.json").get_data(as_text=True))
    assert document["messages"][1]["status"] == "interrupted"  # as the page shows it
    assert document["messages"][1]["content"] == "half an ans"
    with app.app_context():
        db.session.execute(update(Message).values(shown=False))
        db.session.commit()
    document = json.loads(client.get(f"/c/{cid}/export.json").get_data(as_text=True))
    assert document["messages"] == []


# --- Markdown ------------------------------------------------------------------------------

viewer = MarkdownIt("commonmark", {"html": True})


def sections(text: str) -> list[tuple[str, str]]:
    """The transcript as a Markdown viewer reads it: (top-level heading, the text under it: a
    code block's content, or the rest's source lines)."""
    tokens = viewer.parse(text)
    lines = text.splitlines()
    found: list[tuple[str, str]] = []
    for i, token in enumerate(tokens):
        if token.type == "heading_open" and token.level == 0:
            found.append((f"{token.markup} {tokens[i + 1].content}", ""))
        elif found and token.level == 0 and token.map and not token.type.startswith("heading"):
            heading, body = found[-1]
            part = token.content if token.type == "fence" else "\n".join(lines[token.map[0] : token.map[1]])
            found[-1] = (heading, body + part)
    return found


def test_markdown_holds_the_shown_path_in_order_under_who_wrote_it(app, client, edited):
    response = client.get(f"/c/{edited}/export.md")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/markdown; charset=utf-8"
    text = response.get_data(as_text=True)
    found = sections(text)
    path = shown_path(app, edited)
    assert found[0][0] == "# q1"
    assert [heading for heading, _ in found[1:]] == [
        f"## {'You' if m.is_user else 'Assistant'} · {m.timestamp.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        for m in path
    ]
    assert [body.strip() for _, body in found[1:]] == SHOWN
    assert "a1 **bold**" in text  # the answer's Markdown as written
    for gone in SET_ASIDE:
        assert f"\n{gone}\n" not in text


def test_the_customers_words_cannot_forge_the_transcripts_structure(app, client, fake_openai):
    fake_openai.will(Reply("Sure."), Reply("Noted."))
    cid = conversation_id_from(send(client, HOSTILE))
    send(client, "and then?", cid)
    found = sections(client.get(f"/c/{cid}/export.md").get_data(as_text=True))
    headings = [heading for heading, _ in found]
    assert len(headings) == 5 and headings[0].startswith("# ") and "Forged" in headings[0]
    assert [h.split(" · ")[0] for h in headings[1:]] == ["## You", "## Assistant"] * 2
    assert found[1][1] == HOSTILE + "\n"  # shown exactly as typed
    assert [body.strip() for _, body in found[2:]] == ["Sure.", "and then?", "Noted."]
    # the title (the first message, or a name given) reads as plain text: no tag, link, emphasis
    title = "<pre>[x](javascript:alert(1)) *em* &amp; `c` \\# <!--"
    with app.app_context():
        db.session.execute(update(Conversation).values(title=title))
        db.session.commit()
    rendered = viewer.render(client.get(f"/c/{cid}/export.md").get_data(as_text=True)).split("\n")[0]
    assert rendered == f"<h1>{escape(title, quote=False)}</h1>"


@pytest.mark.parametrize(
    "answer,kept",
    [
        ("Try this:\n```python\nprint('hi')", "```python\nprint('hi')\n```"),  # stopped mid-code
        ("Steps:\n\n~~~~\nstep one", "~~~~\nstep one\n~~~~"),
        ("Raw: <pre>\nnever closed", "```markdown\nRaw: <pre>\nnever closed\n```"),  # shown literally
        ("<!-- a comment never closed", "```markdown\n<!-- a comment never closed\n```"),
        ("<b>Bold</b> as a tag", "```markdown\n<b>Bold</b> as a tag\n```"),  # as the page shows it
        ("Fine `code <b>` ~~old~~ 2 < 3\n```\nx\n```", "Fine `code <b>` ~~old~~ 2 < 3\n```\nx\n```\n\n##"),
    ],
)
def test_an_answer_that_leaves_something_open_cannot_swallow_what_follows(
    app, client, fake_openai, answer, kept
):
    fake_openai.will(Reply(answer), Reply("Second answer."))
    cid = conversation_id_from(send(client, "q1"))
    send(client, "q2", cid)
    text = client.get(f"/c/{cid}/export.md").get_data(as_text=True)
    assert kept in text
    found = sections(text)
    assert [h.split(" · ")[0] for h, _ in found[1:]] == ["## You", "## Assistant"] * 2
    assert [body.strip() for _, body in found[3:]] == ["q2", "Second answer."]


def test_markdown_says_how_an_answer_ended(app, client, fake_openai):
    fake_openai.will(Reply(status=401))
    cid = conversation_id_from(send(client, "x"))
    text = client.get(f"/c/{cid}/export.md").get_data(as_text=True)
    error = all_messages(app)[1].meta["error"]
    assert f"*{export.escape_markdown(error)}*" in text
    set_reply(
        app, all_messages(app)[1].id, status="interrupted", content="half", meta={"finish_reason": "stopped"}
    )
    assert "half\n\n*Stopped\\.*" in client.get(f"/c/{cid}/export.md").get_data(as_text=True)


# --- JSONL ---------------------------------------------------------------------------------


def jsonl_of(client) -> list[list[dict]]:
    response = client.get("/conversations/export.jsonl")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/jsonl; charset=utf-8"
    assert response.headers["Content-Disposition"] == 'attachment; filename="conversations.jsonl"'
    body = response.get_data(as_text=True)
    assert body == "" or body.endswith("\n")
    lines = body.split("\n")[:-1]
    assert body.splitlines() == lines  # a line is a line for every reader
    return [export.validate_chat_line(line) for line in lines]


def test_the_bundled_dataset_passes_the_fine_tuning_checks():
    lines = DATASET.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""
    examples = [export.validate_chat_line(line) for line in lines[:-1]]
    assert len(examples) >= 60 and all(example[0]["role"] == "system" for example in examples)


def test_jsonl_holds_each_conversation_with_answers_as_one_valid_example(app, client, edited, fake_openai):
    # a second conversation whose middle answer failed, a third with no answer at all
    fake_openai.will(Reply("b1"), Reply(status=401), Reply("b3"), Reply(status=401))
    client.post("/new")
    second = conversation_id_from(send(client, "p1"))
    send(client, "p2", second)
    send(client, "p3", second)
    client.post("/new")
    conversation_id_from(send(client, "nothing answered"))

    examples = jsonl_of(client)
    assert examples == [
        [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "a1 **bold**"},
            {"role": "user", "content": "q2, said better"},
            {"role": "assistant", "content": "a2 again"},
        ],
        [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "p1"},
            {"role": "assistant", "content": "b1"},
            {"role": "user", "content": "p3"},  # p2's answer failed: the question went with it
            {"role": "assistant", "content": "b3"},
        ],
    ]


def test_jsonl_takes_only_finished_answers(app, client, fake_openai):
    fake_openai.will(Reply("stopped one"), Reply("cut by length", finish_reason="length"), Reply("good"))
    cid = conversation_id_from(send(client, "u1"))
    send(client, "u2", cid)
    send(client, "u3", cid)
    send(client, "u4 (being answered)", cid)  # (the fake's default answer, then made live again)
    messages = all_messages(app)
    set_reply(app, messages[1].id, status="interrupted", meta={"finish_reason": "stopped"})
    set_reply(app, messages[7].id, status="streaming", lease_until=1e12, content="so far")
    (example,) = jsonl_of(client)
    assert [m["content"] for m in example[1:]] == ["u3", "good"]


def test_jsonl_lines_stay_single_lines_whatever_the_text_holds(app, client, fake_openai):
    fake_openai.will(Reply("line\u2028sep\u2029para\x85nel \U0001f600 ñ"))
    send(client, "tab\there\r\nand \u2028 too")
    (example,) = jsonl_of(client)
    assert example[2]["content"] == "line\u2028sep\u2029para\x85nel \U0001f600 ñ"
    assert example[1]["content"] == "tab\there\nand \u2028 too"


def test_jsonl_without_a_system_prompt_has_none(app_factory, openai_config, fake_openai):
    client = app_factory(**openai_config, SYSTEM_PROMPT="  ").test_client()
    send(client, "hi")
    (example,) = jsonl_of(client)
    assert [m["role"] for m in example] == ["user", "assistant"]


@pytest.mark.parametrize(
    "line,problem",
    [
        ("not json", "not JSON"),
        ("[]", '"messages"'),
        ('{"messages": [], "extra": 1}', '"messages"'),
        ('{"messages": []}', "not a list"),
        ('{"messages": [{"role": "user", "content": "hi"}]}', "out of turn"),
        ('{"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "a"}]}', "out of turn"),
        (
            '{"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}]}',
            "out of turn",
        ),
        ('{"messages": [{"role": "tool", "content": "q"}]}', "unknown role"),
        ('{"messages": [{"role": "user", "content": " "}]}', "empty"),
        ('{"messages": [{"role": "user", "content": 1}]}', "not text"),
        ('{"messages": [{"role": "user", "content": "q", "name": "x"}]}', "role and a content only"),
        (
            '{"messages": [{"role": "user", "content": "q"}, {"role": "system", "content": "s"}, '
            '{"role": "assistant", "content": "a"}]}',
            "out of turn",
        ),
        ('{"messages": [{"role": "user", "content": "q"},\n{"role": "assistant", "content": "a"}]}', "line"),
    ],
)
def test_the_checks_refuse_what_is_not_an_example(line, problem):
    with pytest.raises(export.InvalidChatLine, match=problem):
        export.validate_chat_line(line)


def test_the_checks_take_an_example_with_or_without_its_system_message():
    pair = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    assert export.validate_chat_line(json.dumps({"messages": pair})) == pair
    with_system = [{"role": "system", "content": "s"}, *pair]
    assert export.validate_chat_line(json.dumps({"messages": with_system}) + "\n") == with_system


# --- ownership -----------------------------------------------------------------------------


def test_another_browser_gets_404_and_its_own_jsonl_only(app, client, fake_openai):
    fake_openai.will(Reply("first browser's answer"), Reply("second browser's answer"))
    cid = conversation_id_from(send(client, "first browser's secret"))
    stranger = app.test_client()
    for suffix in ("md", "json"):
        response = stranger.get(f"/c/{cid}/export.{suffix}")
        assert response.status_code == 404
        assert "secret" not in response.get_data(as_text=True)
    assert jsonl_of(stranger) == []  # (no session at all: an empty file)
    send(stranger, "second browser's question")
    (theirs,) = jsonl_of(stranger)
    body = stranger.get("/conversations/export.jsonl").get_data(as_text=True)
    assert "first browser" not in body and theirs[1]["content"] == "second browser's question"
    (mine,) = jsonl_of(client)
    assert mine[1]["content"] == "first browser's secret"
    for bad in ("nope", "x" * 33, "%00"):
        assert client.get(f"/c/{bad}/export.json").status_code == 404


def test_exports_set_no_cookie_and_are_not_cached(app, client, fake_openai):
    stranger = app.test_client()
    response = stranger.get("/conversations/export.jsonl")
    assert "Set-Cookie" not in response.headers
    cid = conversation_id_from(send(client, "q"))
    response = client.get(f"/c/{cid}/export.md")
    assert response.headers["Cache-Control"] == "private, no-store"


# --- file names ----------------------------------------------------------------------------


def disposition_names(header: str) -> tuple[str, str]:
    """(the plain ``filename``, the name a current browser takes: ``filename*`` if given)."""
    assert "\n" not in header and "\r" not in header
    plain = re.match(r'attachment; filename="([^"\\]*)"(; filename\*=UTF-8\'\'[^"\s;]+)?$', header)
    assert plain is not None, header
    kind, options = parse_options_header(header)
    assert kind == "attachment"
    return plain.group(1), options["filename"]


@pytest.mark.parametrize(
    "title,plain,full",
    [
        ("Battery question", "Battery question.md", None),
        (
            'He said "hi"; filename=evil.exe',
            "He said hi filename evil.exe.md",
            "He said hi ; filename=evil.exe.md",
        ),
        (
            "line one\nline two\r\nSet-Cookie: x=1",
            "line one line two Set-Cookie x 1.md",
            "line one line two Set-Cookie x=1.md",
        ),
        ("../../etc/passwd", "etc passwd.md", None),
        ("C:\\Windows\\system32", "C Windows system32.md", None),
        (
            "¿Por qué no carga mi teléfono?",
            "Por que no carga mi telefono.md",
            "¿Por qué no carga mi teléfono.md",
        ),
        ("电池问题", "conversation.md", "电池问题.md"),
        ("evil\u202egpj.exe", "evil gpj.exe.md", None),  # (no right-to-left override)
        ("   ...   ", "conversation.md", None),
        (".hidden", "hidden.md", None),
        ("CON", "conversation.md", None),
        ("a" * 300, "a" * 80 + ".md", None),
    ],
)
def test_file_names_from_hostile_titles_are_safe(title, plain, full):
    got_plain, got_full = disposition_names(content_disposition(title, "md"))
    assert got_plain == plain
    assert got_full == (full or plain)
    for name in (got_plain, got_full):
        assert not set(name) & set('/\\"\r\n\x00:*?<>|') and not name.startswith(".")


def test_the_download_is_named_after_the_title(app, client, fake_openai):
    cid = conversation_id_from(send(client, "q"))
    with app.app_context():
        db.session.execute(update(Conversation).values(title='Mi "móvil"/\nroto'))
        db.session.commit()
    for suffix in ("md", "json"):
        header = client.get(f"/c/{cid}/export.{suffix}").headers["Content-Disposition"]
        assert disposition_names(header) == (f"Mi movil roto.{suffix}", f"Mi móvil roto.{suffix}")


# --- streaming -----------------------------------------------------------------------------


def test_large_exports_are_read_in_batches_and_streamed(app, client, edited, fake_openai):
    send(client, "another question", edited)
    with app.app_context():
        conversation_id = db.session.execute(
            select(Conversation.id).where(Conversation.public_id == edited)
        ).scalar_one()
        whole = [m.content for m in export.shown_messages(conversation_id)]
        assert [m.content for m in export.shown_messages(conversation_id, batch=2)] == whole
        assert [m.content for m in export.shown_messages(conversation_id, batch=1)] == whole
        assert len(whole) == 6
        infos = list(export.conversations(batch=1))
        assert [i.public_id for i in infos] == [edited]
        chunks = export.jsonl(infos, SYSTEM)
        assert next(chunks).count("\n") == 1  # one line at a time
    assert client.get("/conversations/export.jsonl").is_streamed


def test_a_download_waiting_for_its_client_holds_no_database_connection(app, client, edited, fake_openai):
    for path in (f"/c/{edited}/export.md", f"/c/{edited}/export.json", "/conversations/export.jsonl"):
        response = client.get(path)
        chunks = iter(response.response)
        for _ in chunks:  # paused after each chunk, as for a slow client
            with app.app_context():
                assert db.engine.pool.checkedout() == 0, path
        response.close()
