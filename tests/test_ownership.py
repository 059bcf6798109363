"""Every conversation route, one table: a conversation is its browser's alone.

A second browser ("the stranger", with a conversation of its own) tries every route of the chat
blueprint against the owner's conversation, with and without htmx, and with the owner's message
ids under its own conversation's address. Each answer is a 404 (or, for the pages that list, only
the stranger's own rows); nothing the owner saved changes, and the model is never asked. The table
must name every route that takes a conversation, so a new one can't be added without its check.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from chatbot.models import utcnow

from .fake_openai import Reply
from .helpers import HX, all_conversations, all_messages, conversation_id_from, send

OWNER_WORDS = "Zanzibar"  # in the owner's title and messages, nowhere else
MISSING = 999_999  # a message id nobody has


@dataclass
class Ids:
    cid: str  # the owner's conversation
    question: int  # the owner's first message
    answer: int  # the reply to it
    mine: str  # the stranger's own conversation


@dataclass
class Attempt:
    method: str
    url: str
    form: dict | None = None
    # on the stranger's own conversation, naming the owner's message: answered exactly as the same
    # request naming a message that doesn't exist (a refusal that can't tell the two apart)
    as_if_missing: Attempt | None = None


def attempts(ids: Ids) -> dict[str, list[Attempt]]:
    """Per endpoint, the stranger's tries at the owner's conversation."""
    c, q, a, mine = ids.cid, ids.question, ids.answer, ids.mine

    def on_messages(action: str, form: dict | None = None, method: str = "POST") -> list[Attempt]:
        suffix = f"/{action}" if action else ""
        return [
            Attempt(method, f"/c/{c}/messages/{a}{suffix}", form),
            Attempt(method, f"/c/{c}/messages/{q}{suffix}", form),
            # the owner's message under the stranger's own conversation
            Attempt(method, f"/c/{mine}/messages/{a}{suffix}", form),
        ]

    def from_mine(form: dict, missing: dict) -> Attempt:
        url = f"/c/{mine}/messages"
        return Attempt("POST", url, form, as_if_missing=Attempt("POST", url, missing))

    return {
        "chat.show": [
            Attempt("GET", f"/c/{c}"),
            Attempt("GET", f"/c/{c}?edit={q}"),
            Attempt("GET", f"/c/{c}?before={a}"),
        ],
        "chat.earlier": [Attempt("GET", f"/c/{c}/earlier?before={a + 1}")],
        "chat.send": [
            Attempt("POST", f"/c/{c}/messages", {"content": "Let me in"}),
            Attempt("POST", f"/c/{c}/messages", {"retry": str(a)}),
            Attempt("POST", f"/c/{c}/messages", {"regenerate": str(a)}),
            Attempt("POST", f"/c/{c}/messages", {"edit": str(q), "edit_content": "rewritten"}),
            # the owner's messages named from the stranger's own conversation
            from_mine({"retry": str(a)}, {"retry": str(MISSING)}),
            from_mine({"regenerate": str(a)}, {"regenerate": str(MISSING)}),
            from_mine(
                {"edit": str(q), "edit_content": "rewritten"},
                {"edit": str(MISSING), "edit_content": "rewritten"},
            ),
        ],
        "chat.message": on_messages("", method="GET"),
        "chat.stop": on_messages("stop"),
        "chat.feedback": on_messages("feedback", {"rating": "down", "comment": "not mine"}),
        "chat.outcome": on_messages("outcome", {"answer": "yes"}),
        "chat.version": on_messages("version", {"to": str(a), "from": str(q)}),
        "chat.rename": [Attempt("POST", f"/c/{c}/rename", {"title": "Taken over"})],
        "chat.rename_page": [Attempt("GET", f"/c/{c}/rename")],
        "chat.delete": [Attempt("POST", f"/c/{c}/delete")],
        "chat.confirm_delete": [Attempt("GET", f"/c/{c}/delete")],
        "chat.export_markdown": [Attempt("GET", f"/c/{c}/export.md")],
        "chat.export_json": [Attempt("GET", f"/c/{c}/export.json")],
    }


def snapshot(app) -> tuple:
    """All the owner could lose or have changed: every conversation and message as stored."""
    return (
        [(c.public_id, c.title, c.owner, c.updated_at, c.outcome) for c in all_conversations(app)],
        [(m.id, m.content, m.status, m.shown, m.parent_id, m.meta) for m in all_messages(app)],
    )


@pytest.fixture
def ids(app, client, fake_openai) -> Ids:
    fake_openai.will(Reply(f"{OWNER_WORDS} phones ship with a charger."))
    cid = conversation_id_from(send(client, f"Does my {OWNER_WORDS} phone come with a charger?"))
    question, answer = (m.id for m in all_messages(app))
    return Ids(cid, question, answer, mine="")


def test_every_conversation_route_is_in_the_table(app):
    # (the admin area opens anybody's conversation by design: test_admin checks that each of its
    # routes needs a signed-in admin, test_admin_conversations what they do)
    taking_a_conversation = {
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if "public_id" in rule.arguments and not rule.endpoint.startswith("admin.")
    }
    table = set(attempts(Ids("x", 1, 2, "y")))
    assert taking_a_conversation == table, "a route that takes a conversation needs its row in attempts()"


@pytest.mark.parametrize("htmx", [True, False], ids=["htmx", "plain"])
def test_another_browser_gets_404_on_every_route_and_changes_nothing(app, client, fake_openai, ids, htmx):
    stranger = app.test_client()
    fake_openai.will(Reply("The stranger's own answer."))
    ids.mine = conversation_id_from(send(stranger, "My own question"))
    asked = len(fake_openai.requests)
    before = snapshot(app)

    def answer(attempt: Attempt) -> tuple[int, str]:
        response = stranger.open(
            attempt.url, method=attempt.method, data=attempt.form, headers=HX if htmx else {}, buffered=True
        )
        return response.status_code, response.get_data(as_text=True)

    for endpoint, tries in attempts(ids).items():
        for attempt in tries:
            status, body = answer(attempt)
            where = f"{endpoint}: {attempt.method} {attempt.url} {attempt.form or ''}"
            if attempt.as_if_missing:
                assert 400 <= status < 500 and (status, body) == answer(attempt.as_if_missing), where
            else:
                assert status == 404, (where, status, body[:300])
            assert OWNER_WORDS not in body, where
            if not htmx:  # a page that says so, not a bare error
                assert "<!doctype html>" in body.lower() and "<h1" in body, where

    assert snapshot(app) == before
    assert len(fake_openai.requests) == asked  # the model was never asked on the owner's behalf
    # the owner's conversation is as it was, and still theirs
    page = client.get(f"/c/{ids.cid}")
    assert page.status_code == 200 and OWNER_WORDS in page.get_data(as_text=True)


@pytest.mark.parametrize("htmx", [True, False], ids=["htmx", "plain"])
def test_the_lists_search_and_export_all_show_a_stranger_only_its_own(app, client, ids, fake_openai, htmx):
    stranger = app.test_client()
    fake_openai.will(Reply("Yours only."))
    ids.mine = conversation_id_from(send(stranger, f"Not about {OWNER_WORDS[:3]}, my own question"))
    headers = HX if htmx else {}
    far_future = utcnow().replace(year=utcnow().year + 1).isoformat()
    pages = [
        ("/", {}),
        ("/conversations", {}),
        ("/conversations", {"after": far_future, "id": "999999"}),  # a cursor before every row
        ("/conversations/search", {"q": OWNER_WORDS}),
        ("/conversations/search", {"q": "charger"}),
        ("/conversations/search", {"q": "phone", "offset": "0"}),
        ("/conversations/export.jsonl", {}),
    ]
    for url, args in pages:
        response = stranger.get(url, query_string=args, headers=headers)
        body = response.get_data(as_text=True)
        assert response.status_code in (200, 303), (url, args, response.status_code)
        assert ids.cid not in body and "with a charger" not in body, (url, args)
        if "search" in url:  # (the words searched for are repeated in "No conversations match …")
            assert "search-hit" not in body and "No conversations match" in body, (url, args)
        else:
            assert OWNER_WORDS not in body, (url, args)

    # and the same pages show the owner its own (so the checks above could have failed)
    assert OWNER_WORDS in client.get(f"/conversations/search?q={OWNER_WORDS}", headers=headers).get_data(
        as_text=True
    )
    assert OWNER_WORDS in client.get("/conversations/export.jsonl").get_data(as_text=True)
    assert ids.cid in client.get("/", headers=headers).get_data(as_text=True)
