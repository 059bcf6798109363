"""The admin area's conversations: everybody's, filtered (each filter and together), searched
across owners, paged by a keyset cursor (every row once), a transcript with each reply's metadata
(escaped), delete (confirmed, CSRF) and export (the customer's formats), every action audited,
and a readable 400 for a filter value the page doesn't know."""

from __future__ import annotations

import html
import json
import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from chatbot.admin import conversations as admin_conversations
from chatbot.extensions import db
from chatbot.models import Conversation, Message

from .test_admin import audit_actions, create_user, form_token, login

ROW = re.compile(r'href="/admin/conversations/([A-Za-z0-9_-]+)"')
NEXT = re.compile(r'href="([^"]+)" rel="next"')
BASE = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
MODELS = ("gpt-4.1-nano", "ft:gpt-4.1-nano:shop::abc")
OUTCOMES = (None, "resolved", "unresolved", "escalated", "abandoned")


@pytest.fixture
def app(app_factory):
    return app_factory(PROVIDER="offline")


@pytest.fixture
def admin_client(app):
    assert create_user(app).exit_code == 0
    client = app.test_client()
    assert login(client).status_code == 303
    return client


@dataclass
class Spec:
    """A seeded conversation as the test knows it (the expectations are computed from these)."""

    public_id: str
    owner: str
    title: str
    created_at: datetime
    updated_at: datetime
    outcome: str | None
    replies: list[dict] = field(default_factory=list)  # shown replies' metadata
    hidden: list[dict] = field(default_factory=list)  # set-aside versions' metadata
    words: list[str] = field(default_factory=list)  # in its shown messages
    hidden_words: list[str] = field(default_factory=list)
    id: int = 0


def seed(app, n: int = 60, rng_seed: int = 20) -> list[Spec]:
    rng = random.Random(rng_seed)
    specs: list[Spec] = []
    with app.app_context():
        for i in range(n):
            created = BASE + timedelta(days=i % 20, minutes=i)
            # ties on updated_at (every 3 share one): the cursor's id breaks them
            updated = BASE + timedelta(days=30, minutes=i // 3)
            spec = Spec(
                public_id=f"conv{i:03d}",
                owner=f"owner-{i % 3}",
                title=f"Question {i}" + (" zebrafish" if i == 7 else ""),
                created_at=created,
                updated_at=updated,
                outcome=OUTCOMES[i % 5],
            )
            conversation = Conversation(
                public_id=spec.public_id,
                owner=spec.owner,
                title=spec.title,
                created_at=created,
                updated_at=updated,
                outcome=spec.outcome,
            )
            db.session.add(conversation)
            db.session.flush()
            spec.id = conversation.id
            parent = None
            for turn in range(rng.randint(1, 3)):
                word = "zebrafish" if (i % 11 == 0 and turn == 0) else f"word{i}x{turn}"
                question = Message(
                    conversation_id=conversation.id, content=f"my phone {word}", is_user=True,
                    timestamp=created, parent_id=parent,
                )  # fmt: skip
                db.session.add(question)
                db.session.flush()
                spec.words.append(word)
                meta: dict = {
                    "provider": "openai",
                    "model": rng.choice(MODELS),
                    "lang": rng.choice(("en", "es")),
                }
                meta.update(
                    prompt_tokens=10, completion_tokens=5, total_tokens=15, latency_ms=120.5, ttft_ms=40.0
                )
                roll = rng.random()
                if roll < 0.25:
                    meta["feedback"] = {"rating": "up"}
                elif roll < 0.45:
                    meta["feedback"] = {"rating": "down", "comment": "not helpful"}
                status = "complete"
                if rng.random() < 0.15:
                    status = "error"
                    meta.update(
                        error="The assistant could not answer.",
                        error_kind="timeout",
                        error_detail="read timeout",
                    )
                reply = Message(
                    conversation_id=conversation.id, content="Try **restarting**.", is_user=False,
                    status=status, timestamp=created, parent_id=question.id, meta=meta,
                )  # fmt: skip
                db.session.add(reply)
                db.session.flush()
                spec.replies.append(meta)
                if i % 4 == 1:  # a version set aside by a regenerate: never counted nor searched
                    aside = {
                        "model": "hidden-model",
                        "lang": "es",
                        "feedback": {"rating": "down"},
                        "error": "x",
                    }
                    db.session.add(
                        Message(
                            conversation_id=conversation.id,
                            content="quokka aside",
                            is_user=False,
                            status="error",
                            timestamp=created,
                            parent_id=question.id,
                            meta=aside,
                            shown=False,
                        )
                    )
                    spec.hidden.append(aside)
                    spec.hidden_words.append("quokka")
                parent = reply.id
            specs.append(spec)
        db.session.commit()
    return specs


def newest_first(specs: list[Spec]) -> list[str]:
    return [s.public_id for s in sorted(specs, key=lambda s: (s.updated_at, s.id), reverse=True)]


def walk(client, url: str) -> list[str]:
    """Every row of the list, following its "next" links to the end."""
    seen: list[str] = []
    pages = 0
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_data(as_text=True)
        seen += ROW.findall(body)
        nxt = NEXT.search(body)
        url = html.unescape(nxt.group(1)) if nxt else ""
        pages += 1
        assert pages < 100
    return seen


# --- the list -----------------------------------------------------------------------------------


def test_the_cursor_walks_every_conversation_once_newest_first(app, admin_client, monkeypatch):
    specs = seed(app)
    monkeypatch.setattr(admin_conversations, "PAGE", 7)
    seen = walk(admin_client, "/admin/conversations")
    assert seen == newest_first(specs)
    assert len(seen) == len(set(seen)) == 60
    first = admin_client.get("/admin/conversations").get_data(as_text=True)
    assert "OFFSET" not in str(admin_conversations.list_query(admin_conversations.Filters(), None, 8))
    assert "First page" not in first
    second = admin_client.get(html.unescape(NEXT.search(first).group(1))).get_data(as_text=True)
    assert "First page" in second


def has(spec: Spec, predicate) -> bool:
    return any(predicate(meta) for meta in spec.replies)


FILTERS = {
    "outcome=open": lambda s: s.outcome is None,
    "outcome=escalated": lambda s: s.outcome == "escalated",
    "rating=up": lambda s: has(s, lambda m: m.get("feedback", {}).get("rating") == "up"),
    "rating=down": lambda s: has(s, lambda m: m.get("feedback", {}).get("rating") == "down"),
    f"model={MODELS[1]}": lambda s: has(s, lambda m: m["model"] == MODELS[1]),
    "model=hidden-model": lambda s: False,  # (only on versions set aside)
    "error=1": lambda s: has(s, lambda m: "error" in m),
    "lang=es": lambda s: has(s, lambda m: m["lang"] == "es"),
    "since=2026-03-05&until=2026-03-09": lambda s: (
        datetime(2026, 3, 5, tzinfo=UTC) <= s.created_at < datetime(2026, 3, 10, tzinfo=UTC)
    ),
    "q=zebrafish": lambda s: "zebrafish" in s.words or "zebrafish" in s.title,
    "q=zebra": lambda s: "zebrafish" in s.words or "zebrafish" in s.title,  # (a prefix)
    "q=quokka": lambda s: False,  # (only in versions set aside)
    "q=ZEBRAFISH+phone": lambda s: "zebrafish" in s.words,  # (all words in one message; any case)
}


def test_each_filter_and_the_search_across_owners(app, admin_client):
    specs = seed(app)
    for query, predicate in FILTERS.items():
        expected = newest_first([s for s in specs if predicate(s)])
        assert walk(admin_client, f"/admin/conversations?{query}") == expected, query
    zebra = walk(admin_client, "/admin/conversations?q=zebrafish")
    assert len({s.owner for s in specs if s.public_id in zebra}) > 1  # (everybody's conversations)


def predicate(part: str):
    """The test's own reading of one filter (key=value)."""
    if part in FILTERS:
        return FILTERS[part]
    key, value = part.split("=")
    if key in ("since", "until"):
        day = datetime.fromisoformat(value).replace(tzinfo=UTC)
        if key == "since":
            return lambda s: s.created_at >= day
        return lambda s: s.created_at < day + timedelta(days=1)
    if key == "outcome":
        return lambda s: s.outcome == value
    if key == "model":
        return lambda s: has(s, lambda m: m["model"] == value)
    if key == "q" and value == "phone":
        return lambda s: True  # (every conversation says "phone")
    raise AssertionError(part)


def test_filters_compose(app, admin_client):
    specs = seed(app)
    combos = [
        ("rating=down", "lang=es"),
        ("outcome=resolved", "error=1"),
        (f"model={MODELS[0]}", "rating=up", "since=2026-03-03"),
        ("q=phone", "outcome=abandoned", "until=2026-03-12"),
        ("q=zebrafish", "lang=es", "since=2026-03-01", "until=2026-03-20"),
    ]
    for combo in combos:
        predicates = [predicate(part) for part in combo]
        expected = newest_first([s for s in specs if all(p(s) for p in predicates)])
        assert expected, combo
        assert walk(admin_client, "/admin/conversations?" + "&".join(combo)) == expected, combo


def test_each_row_counts_its_shown_messages_ratings_and_models(app, admin_client):
    specs = seed(app, n=5)
    body = admin_client.get("/admin/conversations").get_data(as_text=True)
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)[1:]
    by_id = {ROW.search(row).group(1): row for row in rows}
    for spec in specs:
        row = by_id[spec.public_id]
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        assert html.escape(spec.title) in cells[0]
        assert spec.created_at.strftime("%Y-%m-%d %H:%M") in cells[1]
        assert cells[3].strip() == str(2 * len(spec.replies))
        ups = sum(m.get("feedback", {}).get("rating") == "up" for m in spec.replies)
        downs = sum(m.get("feedback", {}).get("rating") == "down" for m in spec.replies)
        assert ("👍" in cells[5]) == bool(ups) and ("👎" in cells[5]) == bool(downs)
        for model in {m["model"] for m in spec.replies}:
            assert html.escape(model) in cells[6]
        assert "hidden-model" not in cells[6]


@pytest.mark.parametrize(
    "query",
    [
        "outcome=maybe",
        "rating=sideways",
        "lang=fr",
        "since=yesterday",
        "until=2026-13-01",
        "since=2026-03-09&until=2026-03-01",
        "error=yes",
        "model=%3Cscript%3E",
        "after=garbage",
        "after=99999999999999999999-1",
    ],
)
def test_a_filter_value_the_page_does_not_know_is_a_readable_400(app, admin_client, query):
    response = admin_client.get(f"/admin/conversations?{query}")
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert 'class="form-error" role="alert"' in body
    assert "<script>" not in body


# --- one conversation ---------------------------------------------------------------------------

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def hostile_conversation(app) -> str:
    with app.app_context():
        conversation = Conversation(public_id="hostile1", owner="someone", title=f"Title {HOSTILE}")
        db.session.add(conversation)
        db.session.flush()
        question = Message(conversation_id=conversation.id, content=f"Question {HOSTILE}", is_user=True)
        db.session.add(question)
        db.session.flush()
        meta = {
            "provider": "openai",
            "model": "gpt-4.1-nano",
            "prompt_tokens": 111,
            "completion_tokens": 22,
            "total_tokens": 133,
            "ttft_ms": 45.5,
            "latency_ms": 987.5,
            "lang": "en",
            "intent": "question",
            "retrieved": [{"slug": "battery", "title": f"Battery {HOSTILE}", "score": 3.21, "passages": [1]}],
            "sources": [{"n": 1, "slug": "battery", "title": "Battery care"}],
            "feedback": {"rating": "down", "comment": f"Comment {HOSTILE}"},
            "resolution": "no",
            "error": "The assistant could not answer.",
            "error_kind": "timeout",
            "error_detail": f"Detail {HOSTILE}",
        }
        reply = Message(
            conversation_id=conversation.id, content=f"**Bold** answer {HOSTILE}", is_user=False,
            parent_id=question.id, meta=meta, status="interrupted",
        )  # fmt: skip
        db.session.add(reply)
        db.session.add(
            Message(
                conversation_id=conversation.id,
                content="set aside",
                is_user=False,
                parent_id=question.id,
                shown=False,
            )
        )
        db.session.commit()
    return "hostile1"


def test_the_transcript_shows_each_replys_metadata_escaped(app, admin_client):
    public_id = hostile_conversation(app)
    response = admin_client.get(f"/admin/conversations/{public_id}")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "<script>alert" not in body and "<img src=x" not in body
    assert body.count("&lt;script&gt;") >= 5  # title, question, comment, retrieved title, error detail
    shown = ("gpt-4.1-nano", "111", "22", "133", "45.5 ms", "987.5 ms", "Battery care", "Comment ")
    shown += ("Thumbs down", "question", "The assistant could not answer.", "timeout", "Detail ")
    for text in shown:
        assert text in body, text
    assert "<strong>Bold</strong>" in body  # the reply through the Markdown filter
    assert "set aside" not in body  # (the shown path only)
    assert admin_client.get("/admin/conversations/nope").status_code == 404


def test_export_in_the_customers_formats_audited(app, admin_client):
    public_id = hostile_conversation(app)
    md = admin_client.get(f"/admin/conversations/{public_id}/export.md")
    assert md.status_code == 200 and md.mimetype == "text/markdown"
    assert "attachment" in md.headers["Content-Disposition"] and "Bold" in md.get_data(as_text=True)
    document = json.loads(
        admin_client.get(f"/admin/conversations/{public_id}/export.json").get_data(as_text=True)
    )
    assert document["title"].startswith("Title") and len(document["messages"]) == 2
    assert "error_detail" not in json.dumps(document)  # (the customer's format: operator fields stay out)
    jsonl = admin_client.get(f"/admin/conversations/{public_id}/export.jsonl")
    assert jsonl.status_code == 200 and jsonl.mimetype == "application/jsonl"
    assert admin_client.get(f"/admin/conversations/{public_id}/export.exe").status_code == 404
    exported = [
        (who, detail) for who, action, detail in audit_actions(app) if action == "conversation_exported"
    ]
    assert exported == [("ana", {"public_id": public_id, "format": f}) for f in ("md", "json", "jsonl")]


def test_delete_asks_first_needs_csrf_and_is_audited(app_factory):
    app = app_factory(PROVIDER="offline", CSRF_ENABLED=True)
    assert create_user(app).exit_code == 0
    admin_client = app.test_client()
    token = form_token(admin_client.get("/admin/login").get_data(as_text=True))
    assert login(admin_client, csrf_token=token).status_code == 303
    public_id = hostile_conversation(app)
    confirm = admin_client.get(f"/admin/conversations/{public_id}/delete")
    assert confirm.status_code == 200
    body = confirm.get_data(as_text=True)
    assert "Delete this conversation?" in body and "<script>alert" not in body
    assert admin_client.post(f"/admin/conversations/{public_id}/delete").status_code == 403
    assert (
        admin_client.post(f"/admin/conversations/{public_id}/delete", data={"csrf_token": "x"}).status_code
        == 403
    )
    with app.app_context():
        assert db.session.execute(select(func.count(Conversation.id))).scalar_one() == 1
    done = admin_client.post(
        f"/admin/conversations/{public_id}/delete", data={"csrf_token": form_token(body)}
    )
    assert done.status_code == 303 and done.headers["Location"].startswith("/admin/conversations")
    assert "was deleted" in admin_client.get(done.headers["Location"]).get_data(as_text=True)
    with app.app_context():
        assert db.session.execute(select(func.count(Conversation.id))).scalar_one() == 0
        assert db.session.execute(select(func.count(Message.id))).scalar_one() == 0
    deleted = [
        (who, detail) for who, action, detail in audit_actions(app) if action == "conversation_deleted"
    ]
    assert deleted == [
        ("ana", {"public_id": public_id, "title": f"Title {HOSTILE}", "owner": "someone", "messages": 3})
    ]
    assert admin_client.get(f"/admin/conversations/{public_id}").status_code == 404
    audit_page = admin_client.get("/admin/audit").get_data(as_text=True)
    assert "Conversation deleted" in audit_page and "<script>alert" not in audit_page


def test_the_new_pages_need_a_signed_in_admin(app, admin_client):
    hostile_conversation(app)
    anonymous = app.test_client()
    for url in (
        "/admin/conversations",
        "/admin/conversations/hostile1",
        "/admin/conversations/hostile1/export.md",
    ):
        response = anonymous.get(url)
        assert response.status_code == 303 and response.headers["Location"].startswith("/admin/login"), url
    assert anonymous.post("/admin/conversations/hostile1/delete").status_code == 303
    with app.app_context():
        assert db.session.execute(select(func.count(Conversation.id))).scalar_one() == 1


def test_the_home_page_links_to_the_conversations(app, admin_client):
    body = admin_client.get("/admin").get_data(as_text=True)
    assert 'href="/admin/conversations"' in body
