"""Hostile input never 500s, on SQLite and PostgreSQL: odd ids, odd characters, huge bodies,
limits. What is saved is what was sent (cleaned as documented), or it is refused with a message."""

from __future__ import annotations

import logging
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from chatbot.chat.begin import clean_content
from chatbot.extensions import db

from .conftest import PG_SERVER
from .fake_openai import Reply
from .helpers import HX, all_messages, conversation_id_from, send, wait_until


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_app(request, app_factory, openai_config, fake_openai):
    """The app on SQLite, then on PostgreSQL (a fresh database)."""
    if request.param == "sqlite":
        yield app_factory(**openai_config)
        return
    admin = request.getfixturevalue("pg_admin")
    name = f"chatbot_hostile_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    app = app_factory(**openai_config, SQLALCHEMY_DATABASE_URI=PG_SERVER.rsplit("/", 1)[0] + "/" + name)
    yield app
    with app.app_context():
        db.engine.dispose()
    admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


BAD_IDS = ["9223372036854775808", "2147483648", "-1", "0", "²", "١", "0x10", "1e3", " 2", "2\x00", "9" * 400]


def test_odd_ids_anywhere_are_404_or_a_readable_refusal(any_db_app):
    app = any_db_app
    client = app.test_client()
    cid = conversation_id_from(send(client, "hello"))
    for bad in BAD_IDS:
        for response in (
            client.get(f"/c/{cid}/messages/{bad}"),
            client.post(f"/c/{cid}/messages/{bad}/stop", headers=HX),
            client.get(f"/c/{cid}", query_string={"before": bad}),
            client.get(f"/c/{cid}/earlier", query_string={"before": bad}, headers=HX),
            client.post(f"/c/{cid}/messages", data={"retry": bad}, headers=HX),
            client.get(f"/c/{bad}"),
            client.post(f"/c/{bad}/messages", data={"content": "x"}, headers=HX),
        ):
            assert response.status_code in (200, 400, 404, 409), (bad, response.status_code)
    assert all_messages(app)[0].content == "hello"


def test_a_conversation_id_with_nul_or_a_megabyte_is_simply_not_found(any_db_app):
    client = any_db_app.test_client()
    send(client, "hello")
    for public_id in ("abc\x00def", "x" * 100_000, "../../etc/passwd", "%00"):
        assert client.get(f"/c/{public_id}").status_code == 404
        assert client.post(f"/c/{public_id}/messages", data={"content": "x"}, headers=HX).status_code == 404


def test_nul_and_control_characters_are_stripped_on_both_paths(any_db_app):
    app = any_db_app
    client = app.test_client()
    cid = conversation_id_from(send(client, "start\x00ing \x1b[31mred\x1b[0m\x07"))
    response = client.post(f"/c/{cid}/messages", data={"content": "no\x00js\x08 path"})  # no-JS
    assert response.status_code == 303
    assert [m.content for m in all_messages(app) if m.is_user] == ["starting [31mred[0m", "nojs path"]


def test_line_endings_count_as_the_browser_counts_them(client, app, fake_openai):
    text = "\r\n".join(["x" * 79] * 100)  # 100 lines: 7,999 characters in the textarea
    assert send(client, text, htmx=False).status_code == 303
    assert all_messages(app)[0].content == "\n".join(["x" * 79] * 100)


@pytest.mark.parametrize("content", ["\u200b\u200b\u200b", "\u200d\ufeff \u2060", "\u0301\u0301", "\x00\x00"])
def test_a_message_with_nothing_visible_is_refused(client, app, fake_openai, content):
    response = send(client, content)
    assert response.status_code == 422 and "Please type a message first." in response.get_data(as_text=True)
    assert all_messages(app) == []


def test_a_huge_body_is_refused_and_never_echoed(client, app, fake_openai):
    huge = "A" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    for htmx in (True, False):
        response = client.post("/c", data={"content": huge}, headers=HX if htmx else {})
        assert response.status_code == 413
        body = response.get_data(as_text=True)
        assert "too much to send at once" in body and "AAAAAAAAAA" not in body
        assert "Set-Cookie" not in response.headers
    assert all_messages(app) == []


def test_files_and_floods_of_fields_are_refused(client, app, fake_openai):
    import io

    response = client.post(
        "/c",
        data={"content": "hi", "f": (io.BytesIO(b"x" * 1000), "a.txt")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400 and "Files can" in response.get_data(as_text=True)
    many = {f"f{i}": "1" for i in range(app.config["MAX_FORM_PARTS"] + 5)}
    response = client.post("/c", data={"content": "hi", **many}, content_type="multipart/form-data")
    assert response.status_code == 413
    assert all_messages(app) == []


def test_limits_on_conversations_and_messages(app_factory, openai_config, fake_openai):
    app = app_factory(**openai_config, MAX_CONVERSATIONS_PER_OWNER=2, MAX_MESSAGES_PER_CONVERSATION=4)
    client = app.test_client()
    cid = conversation_id_from(send(client, "one"))
    assert send(client, "two", cid).status_code == 200  # 4 messages now
    full = send(client, "three", cid)
    assert full.status_code == 422 and "limit of 4 messages" in full.get_data(as_text=True)
    conversation_id_from(send(client, "another"))
    third = send(client, "a third")
    assert third.status_code == 422 and "limit of 2 conversations" in third.get_data(as_text=True)
    assert len(all_messages(app)) == 6


def test_database_errors_never_log_what_was_written(app, client, fake_openai, caplog):
    with app.app_context():
        assert db.engine.hide_parameters
        with caplog.at_level(logging.ERROR), pytest.raises(Exception) as failed:
            db.session.execute(
                text("SELECT * FROM messages WHERE content = :c AND nope = 1"), {"c": "secret words"}
            )
        db.session.rollback()
    assert "secret words" not in str(failed.value) and "secret words" not in caplog.text


# --- anything at all ---------------------------------------------------------------------------

TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"])
    | st.sampled_from("\x00\r\n\t\u200b\x1b"),
    max_size=300,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=TEXT, htmx=st.booleans())
def test_any_text_is_saved_as_cleaned_or_refused_never_a_500(any_db_app, content, htmx):
    app = any_db_app
    client = app.test_client()
    before = len(all_messages(app))
    response = send(client, content, htmx=htmx)
    assert response.status_code in (200, 303, 422), response.status_code
    messages = all_messages(app)
    if response.status_code == 422:
        assert len(messages) == before
    else:
        assert messages[before].content == clean_content(content, app.config["MAX_MESSAGE_CHARS"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=400))
def test_any_bytes_as_a_form_body_never_500(any_db_app, raw):
    client = any_db_app.test_client()
    for path in ("/c", "/c/abc/messages", "/c/abc/messages/1/stop"):
        response = client.post(path, data=raw, content_type="application/x-www-form-urlencoded", headers=HX)
        assert response.status_code < 500, (path, raw)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    segment=st.text(max_size=40) | st.integers(min_value=-(2**80), max_value=2**80).map(str),
    retry=st.text(max_size=30) | st.integers(min_value=-(2**70), max_value=2**70).map(str),
)
def test_any_id_in_a_path_or_a_retry_never_500(any_db_app, segment, retry):
    from urllib.parse import quote

    client = any_db_app.test_client()
    cid = conversation_id_from(send(client, "hello"))
    part = quote(segment, safe="") or "x"
    for response in (
        client.get(f"/c/{cid}/messages/{part}"),
        client.post(f"/c/{cid}/messages/{part}/stop", headers=HX),
        client.get(f"/c/{part}"),
        client.get(f"/c/{cid}", query_string={"before": segment}),
        client.post(f"/c/{cid}/messages", data={"retry": retry}, headers=HX),
    ):
        assert response.status_code < 500, (segment, retry, response.status_code)


def test_per_owner_limits_hold_against_requests_at_the_same_instant(any_db_app, fake_openai):
    """Twelve first messages from one browser at once, over real HTTP: the live-reply cap (3)
    holds exactly, on PostgreSQL too (where counting then inserting is not atomic without the
    per-owner lock)."""
    import threading

    import requests

    from .conftest import LiveServer

    app = any_db_app
    server = LiveServer(app)
    owner = requests.Session()
    sessions, responses = [], []
    try:
        assert owner.post(f"{server.url}/c", data={"content": "first"}, headers=HX).status_code == 200
        fake_openai.default = Reply("slow", first_token_delay=3.0)  # the replies stay live
        together = threading.Barrier(12, timeout=10)
        lock = threading.Lock()

        def post() -> None:
            tab = requests.Session()
            tab.cookies.update(owner.cookies)
            together.wait()
            response = tab.post(f"{server.url}/c", data={"content": "at once"}, headers=HX, stream=True)
            with lock:  # streams left open: their replies stay live
                sessions.append(tab)
                responses.append(response)

        threads = [threading.Thread(target=post) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * 3 + [429] * 9, statuses
        assert sum(1 for m in all_messages(app) if m.status == "streaming") == 3
    finally:
        for response in responses:
            response.close()
        for tab in [owner, *sessions]:
            tab.close()
        # the replies of the closed streams go on to their end (3 s) before the database goes
        wait_until(
            lambda: all(m.status != "streaming" for m in all_messages(app)),
            timeout=10,
            what="the turns to end",
        )
        server.stop()
