"""Safe in front of the public: headers on every response, requests from other sites refused
before they touch the session, sessions issued only by an accepted message, strict production."""

from __future__ import annotations

import io
import socket

import pytest

from .helpers import (
    HX,
    all_conversations,
    all_messages,
    conversation_id_from,
    message_url,
    plant_session,
    send,
    stored_sessions,
)

STRONG_KEY = "k" * 20 + "0123456789abcdefghij"


def session_rows(app) -> int:
    return len(stored_sessions(app))


# --- headers ---------------------------------------------------------------------------------


def _responses(app, client):
    cid = conversation_id_from(send(client, "hello"))
    yield "page", client.get(f"/c/{cid}")
    yield "partial", client.get(message_url(cid, 2), headers=HX)
    yield "stream", client.post(f"/c/{cid}/messages", data={"content": "more"}, headers=HX, buffered=True)
    yield "error page", client.get("/c/nope")
    yield "htmx error", client.post("/c", data={"content": ""}, headers=HX)
    yield "static", client.get("/static/js/chat.js")


def test_every_kind_of_response_carries_the_security_headers(app, client, fake_openai):
    for kind, response in _responses(app, client):
        csp = response.headers.get("Content-Security-Policy", "")
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, kind
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, kind
        assert "script-src 'self'" in csp and "object-src 'none'" in csp, kind
        assert response.headers.get("X-Content-Type-Options") == "nosniff", kind
        assert response.headers.get("Referrer-Policy") == "same-origin", kind
        assert "camera=()" in response.headers.get("Permissions-Policy", ""), kind
        assert "Strict-Transport-Security" not in response.headers, kind  # not over plain HTTP in dev


def test_production_adds_hsts_and_a_host_only_secure_cookie(app_factory, openai_config, fake_openai):
    app = app_factory(**openai_config, PRODUCTION=True, SECRET_KEY=STRONG_KEY, CSRF_ENABLED=True)
    client = app.test_client()
    token = page_token(client)
    response = client.post("/c", data={"content": "hello", "csrf_token": token}, headers=HX, buffered=True)
    assert response.status_code == 200
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-chatbot_session=")
    assert "Secure" in cookie and "Path=/" in cookie and "Domain" not in cookie and "HttpOnly" in cookie


# --- other sites -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # a sibling subdomain or another port
        {"Origin": "https://evil.example"},  # a browser without fetch metadata
    ],
    ids=["cross-site", "same-site", "foreign-origin"],
)
def test_state_changing_requests_from_other_sites_are_refused_untouched(app, client, fake_openai, headers):
    cid = conversation_id_from(send(client, "mine"))
    cookie = client.get_cookie("chatbot_session").value
    before = [(m.id, m.status, m.content) for m in all_messages(app)]
    stranger = app.test_client()  # a visitor with no session, posting from the other site
    attempts = [
        (client, "/c", {"content": "planted"}),
        (client, f"/c/{cid}/messages", {"content": "planted"}),
        (client, f"/c/{cid}/messages", {"retry": "2"}),
        (client, message_url(cid, 2, "stop"), {}),
        (client, "/new", {}),
        (stranger, "/c", {"content": "planted"}),
    ]
    for who, path, form in attempts:
        for extra in ({}, HX):
            response = who.post(path, data=form, headers={**headers, **extra})
            assert response.status_code == 403, path
            assert "came from another website" in response.get_data(as_text=True)
            assert "Set-Cookie" not in response.headers, path
    assert [(m.id, m.status, m.content) for m in all_messages(app)] == before
    assert client.get_cookie("chatbot_session").value == cookie
    assert stranger.get_cookie("chatbot_session") is None
    assert session_rows(app) == 1
    # the same requests from the page itself still work
    same = {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}
    assert (
        client.post(f"/c/{cid}/messages", data={"content": "ok"}, headers={**same, **HX}).status_code == 200
    )


def test_a_refused_message_creates_no_session_and_sets_no_cookie(app, fake_openai):
    for content in ("", "   ", "x" * 9000):
        client = app.test_client()
        response = send(client, content)
        assert response.status_code == 422
        assert "Set-Cookie" not in response.headers
        assert client.get_cookie("chatbot_session") is None
    assert session_rows(app) == 0 and all_conversations(app) == []


def test_the_session_id_is_rotated_when_the_owner_is_issued(app, fake_openai):
    """A session id planted in the visitor's browser (with no owner yet) is not the one that ends
    up holding their conversations."""
    planter = app.test_client()
    planter.post("/new")  # a session with nothing in it stores nothing...
    assert session_rows(app) == 0
    planted_sid = "planted-session-id-0123456789abcdef"  # ...so plant one as an attacker would
    plant_session(app, planted_sid, {"current": "nothing"})
    prefix = app.session_interface.key_prefix
    victim = app.test_client()
    victim.set_cookie("chatbot_session", planted_sid)
    assert victim.get("/").status_code == 200  # the planted session is read: it is valid
    send(victim, "my private question")
    assert victim.get_cookie("chatbot_session").value != planted_sid
    stored = stored_sessions(app)
    assert prefix + planted_sid not in stored and len(stored) == 1  # the new one only


# --- production settings -----------------------------------------------------------------------


@pytest.mark.parametrize(("text", "on"), [("no", False), ("off", False), ("0", False), ("YES", True)])
def test_production_flag_is_parsed_strictly(app_factory, monkeypatch, text, on):
    monkeypatch.setenv("CHATBOT_PRODUCTION", text)
    monkeypatch.setenv("SECRET_KEY", STRONG_KEY)
    assert app_factory(CSRF_ENABLED=None).config["PRODUCTION"] is on


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CHATBOT_PRODUCTION": "maybe"}, "PRODUCTION must be true or false"),
        ({"CHATBOT_PRODUCTION": "true"}, "SECRET_KEY must be set"),
        ({"CHATBOT_PRODUCTION": "true", "SECRET_KEY": "short"}, "at least 32 characters"),
    ],
)
def test_production_refuses_to_start_unsafe(app_factory, monkeypatch, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(RuntimeError, match=message):
        app_factory(CSRF_ENABLED=None)


def test_production_refuses_the_development_key(app_factory, monkeypatch):
    dev_key = app_factory().config["SECRET_KEY"]  # made once into instance/secret_key
    monkeypatch.setenv("CHATBOT_PRODUCTION", "true")
    monkeypatch.setenv("SECRET_KEY", dev_key)
    with pytest.raises(RuntimeError, match="not the development key"):
        app_factory(CSRF_ENABLED=None)


# --- CSRF tokens -------------------------------------------------------------------------------


def page_token(client, path: str = "/") -> str:
    html = client.get(path).get_data(as_text=True)
    return html.split('name="csrf-token" id="csrf-token" content="', 1)[1].split('"', 1)[0]


@pytest.fixture
def csrf_app(app_factory, openai_config, fake_openai):
    return app_factory(**openai_config, CSRF_ENABLED=True)


def test_every_state_changing_request_needs_the_pages_token(csrf_app):
    app = csrf_app
    client = app.test_client()
    token = page_token(client)
    assert client.get_cookie("chatbot_session") is None  # reading the page made no session
    first = client.post("/c", data={"content": "mine", "csrf_token": token}, headers=HX, buffered=True)
    assert first.status_code == 200
    cid = conversation_id_from(first)
    # the stream hands the page a token bound to the owner it just issued
    fresh = first.get_data(as_text=True).split('<meta name="csrf-token" id="csrf-token" content="', 1)[1]
    fresh = fresh.split('"', 1)[0]
    assert fresh != token
    before = [(m.id, m.status) for m in all_messages(app)]
    stranger_token = page_token(app.test_client())
    for path, form in [
        ("/c", {"content": "planted"}),
        (f"/c/{cid}/messages", {"content": "planted"}),
        (message_url(cid, 2, "stop"), {}),
        ("/new", {}),
    ]:
        for bad in (None, "forged", token, stranger_token):  # none, garbage, stale, someone else's
            sent = dict(form) if bad is None else {**form, "csrf_token": bad}
            response = client.post(path, data=sent, headers=HX)
            assert response.status_code == 403, (path, bad)
            assert "out of date" in response.get_data(as_text=True)
    assert [(m.id, m.status) for m in all_messages(app)] == before
    # the fresh token works as a header (htmx) and as a form field (no JavaScript)
    ok = client.post(
        f"/c/{cid}/messages", data={"content": "next"}, headers={**HX, "X-CSRF-Token": fresh}, buffered=True
    )
    assert ok.status_code == 200
    assert (
        client.post(f"/c/{cid}/messages", data={"content": "plain", "csrf_token": fresh}).status_code == 303
    )
    assert page_token(client, f"/c/{cid}") != token


def test_a_refused_token_sets_no_cookie(csrf_app):
    client = csrf_app.test_client()
    response = client.post("/c", data={"content": "hello", "csrf_token": "nope"})
    assert response.status_code == 403 and "Set-Cookie" not in response.headers
    assert session_rows(csrf_app) == 0


def test_an_old_token_expires(app_factory, openai_config, fake_openai):
    app = app_factory(**openai_config, CSRF_ENABLED=True, CSRF_TOKEN_SECONDS=1)
    client = app.test_client()
    token = page_token(client)
    import time

    time.sleep(2.1)  # itsdangerous counts whole seconds
    assert client.post("/c", data={"content": "late", "csrf_token": token}).status_code == 403
    assert all_messages(app) == []


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SECRET_KEY": " " * 40}, "random value"),
        ({"SECRET_KEY": "ab" * 20}, "random value"),
        ({"SECRET_KEY": "k" * 20 + "0123456789abcdefghij", "CHATBOT_CSRF_ENABLED": "off"}, "CSRF"),
    ],
)
def test_production_refuses_weak_keys_and_switched_off_protection(app_factory, monkeypatch, env, message):
    monkeypatch.setenv("CHATBOT_PRODUCTION", "true")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(RuntimeError, match=message):
        app_factory(CSRF_ENABLED=None)  # (None: leave it to the environment)


def test_debug_off_is_read_strictly_too(app_factory, monkeypatch):
    monkeypatch.setenv("CHATBOT_PRODUCTION", "true")
    monkeypatch.setenv("CHATBOT_DEBUG", "no")
    monkeypatch.setenv("SECRET_KEY", "k" * 20 + "0123456789abcdefghij")
    app = app_factory(CSRF_ENABLED=None)
    assert app.config["PRODUCTION"] and not app.config["DEBUG"]


def test_check_never_prints_a_password(app_factory, openai_config, fake_openai):
    app = app_factory(
        **dict(openai_config, OPENAI_BASE_URL=fake_openai.url.replace("http://", "http://me:hunter2@")),
        REDIS_URL="redis://:redispass@127.0.0.1:1/0?password=hunter3",
    )
    out = app.test_cli_runner().invoke(args=["check"]).output
    assert "hunter2" not in out and "hunter3" not in out and "redispass" not in out
    assert "me:***@127.0.0.1" in out


def test_a_chunked_body_of_unknown_length_is_refused(app, client, fake_openai):
    response = client.post(
        "/c",
        input_stream=io.BytesIO(b"content=hello"),
        headers={"Transfer-Encoding": "chunked", "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 411
    assert all_messages(app) == []


@pytest.mark.parametrize("encoding", ["multipart/form-data", "application/x-www-form-urlencoded"])
def test_a_flood_of_form_fields_is_refused_however_encoded(app, client, fake_openai, encoding):
    from werkzeug.datastructures import MultiDict

    fields = MultiDict([("content", "hi")] + [("x", "1")] * (app.config["MAX_FORM_PARTS"] + 5))
    response = client.post("/c", data=fields, content_type=encoding)
    assert response.status_code == 413
    assert all_messages(app) == []


def test_trusted_hosts_refuse_other_host_names(app_factory, monkeypatch, fake_openai):
    monkeypatch.setenv("CHATBOT_TRUSTED_HOSTS", '["chat.example.com"]')
    app = app_factory()
    app.testing = False  # as served: the refusal is answered, not raised into the test
    client = app.test_client()
    assert client.get("/", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/", headers={"Host": "chat.example.com"}).status_code == 200


# --- sessions in Redis: a Redis that doesn't answer ----------------------------------------------


def _dead_redis() -> str:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{s.getsockname()[1]}/0"


def test_with_the_session_store_down_every_page_says_so_readably_and_health_answers(
    app_factory, openai_config, fake_openai
):
    app = app_factory(**openai_config, REDIS_URL=_dead_redis())
    client = app.test_client()
    client.set_cookie("chatbot_session", "a-session-id-the-store-cannot-read")
    page = client.get("/")
    assert page.status_code == 503 and "busy right now" in page.text and "<html" in page.text.lower()
    sent = send(client, "Is anyone there?")  # from the page (htmx): a line for the composer
    assert sent.status_code == 503 and "busy right now" in sent.text and "Traceback" not in sent.text
    first = send(app.test_client(), "A first message")  # no cookie: the session can't be saved
    assert first.status_code == 503 and "busy right now" in first.text
    assert first.headers["Content-Type"].startswith("text/html")
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["redis"].startswith("unavailable")
    assert not any(m.is_user and m.content == "Is anyone there?" for m in all_messages(app))


def test_sessions_saved_in_the_database_still_open_once_redis_holds_them(
    app_factory, openai_config, fake_openai
):
    """Setting REDIS_URL on a running site logs nobody out: a session saved in the database
    before is still read (and moves to Redis when it next changes)."""
    import redis as redis_client

    from .conftest import REDIS_TEST_URL

    try:
        redis_client.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=1).ping()
    except redis_client.exceptions.RedisError:
        from .conftest import IN_CI

        if IN_CI:
            pytest.fail(f"Redis is required in CI ({REDIS_TEST_URL})")
        pytest.skip(f"Redis not reachable at {REDIS_TEST_URL}")
    before = app_factory(**openai_config, REDIS_URL="")
    browser = before.test_client()
    cid = conversation_id_from(send(browser, "Saved before Redis"))
    after = app_factory(**openai_config, REDIS_URL=REDIS_TEST_URL, SESSION_KEY_PREFIX=f"t-{cid}:session:")
    moved = after.test_client()
    moved.set_cookie("chatbot_session", browser.get_cookie("chatbot_session").value)
    page = moved.get(f"/c/{cid}")
    assert page.status_code == 200 and "Saved before Redis" in page.text
    assert moved.get("/").status_code == 200 and "Saved before Redis" in moved.get("/").text
