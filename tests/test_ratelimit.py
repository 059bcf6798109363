"""Rate limits: messages per owner and per address, Stop per address, new sessions per address.

Each test turns on only the limits it is about, small (2 or 3 a minute), and checks that the
refused request is answered readably on both paths (one line for htmx's composer, a page without
JavaScript) with ``Retry-After``, and that it saved nothing and issued no session. The rest of
the suite runs with limits off (``conftest.make_app``).
"""

from __future__ import annotations

import html
import os
import re
import secrets
import socket

import pytest

from chatbot.ratelimit import EXTENSION

from .conftest import IN_CI
from .helpers import (
    HX,
    all_conversations,
    all_messages,
    conversation_id_from,
    message_url,
    send,
    stored_sessions,
)

REDIS_SERVER = os.environ.get("CHATBOT_TEST_REDIS", "redis://127.0.0.1:6379/0")
TOO_FAST = re.compile(
    r"You're (?:sending messages|clicking) very fast\. Please wait (\d+) (seconds?|minutes) and try again\."
)
NO_LIMITS = {
    "RATELIMIT_MESSAGES_PER_OWNER": "",
    "RATELIMIT_MESSAGES_PER_IP": "",
    "RATELIMIT_STOPS_PER_IP": "",
    "RATELIMIT_NEW_SESSIONS_PER_IP": "",
}


@pytest.fixture
def limited(app_factory):
    """An app (offline assistant) with rate limiting on and only the given limits set."""

    def make(**config):
        return app_factory(PROVIDER="offline", RATELIMIT_ENABLED=True, **{**NO_LIMITS, **config})

    return make


def browser(app, address: str = "10.0.0.1"):
    """A browser of its own (its own cookies) at this client address."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def storage(app) -> str:
    return type(app.extensions[EXTENSION].storage).__name__


def session_rows(app) -> int:
    return len(stored_sessions(app))


def saved(app) -> tuple[int, int, int]:
    """(conversations, messages, sessions) in the database."""
    return len(all_conversations(app)), len(all_messages(app)), session_rows(app)


def assert_too_fast(response, *, htmx: bool = True, unit: str = "seconds", at_most: int = 60) -> int:
    """A readable 429 with Retry-After, its wait in the text; no cookie. Returns the wait."""
    assert response.status_code == 429, response.get_data(as_text=True)[:300]
    assert "Set-Cookie" not in response.headers
    wait = int(response.headers["Retry-After"])
    assert at_most >= wait >= 1
    text = html.unescape(response.get_data(as_text=True))
    found = TOO_FAST.search(text)
    assert found, text[:500]
    shown = int(found[1]) * (60 if found[2] == "minutes" else 1)
    assert found[2].startswith(unit.rstrip("s")) and shown - 60 < wait <= shown
    if htmx:  # the composer's one line, nothing else
        assert text.strip() == found[0]
    else:  # a page of its own
        assert "<html" in text and "Too many requests" in text and 'href="/"' in text
    return wait


# --- per owner, both paths -----------------------------------------------------------------


def test_messages_per_owner_refused_with_a_line_for_the_composer(limited):
    app = limited(RATELIMIT_MESSAGES_PER_OWNER="3/minute")
    alice = browser(app)
    cid = conversation_id_from(send(alice, "first"))  # no owner yet: counted under her address
    for i in range(3):
        assert send(alice, f"message {i}", cid).status_code == 200
    before = saved(app)

    assert_too_fast(send(alice, "one too many", cid))
    assert saved(app) == before
    assert "one too many" not in [m.content for m in all_messages(app)]

    # another visitor (same address) has a count of its own
    bob = browser(app)
    bob_cid = conversation_id_from(send(bob, "hello"))
    for i in range(3):
        assert send(bob, f"bob {i}", bob_cid).status_code == 200
    assert_too_fast(send(bob, "bob again", bob_cid))


def test_messages_per_owner_refused_with_a_page_without_javascript(limited):
    app = limited(RATELIMIT_MESSAGES_PER_OWNER="2/minute")
    alice = browser(app)
    assert send(alice, "first", htmx=False).status_code == 303
    (conversation,) = all_conversations(app)
    cid = conversation.public_id
    for i in range(2):
        assert send(alice, f"message {i}", cid, htmx=False).status_code == 303
    before = saved(app)

    assert_too_fast(send(alice, "one too many", cid, htmx=False), htmx=False)
    assert saved(app) == before
    assert alice.get(f"/c/{cid}").status_code == 200  # reading is not limited


def test_retries_count_as_messages(limited):
    app = limited(RATELIMIT_MESSAGES_PER_OWNER="3/minute")
    alice = browser(app)
    cid = conversation_id_from(send(alice, "first"))
    reply = all_messages(app)[-1].id
    assert send(alice, retry=reply, conversation=cid).status_code == 409  # complete: refused, counted
    assert send(alice, "second", cid).status_code == 200
    reply = all_messages(app)[-1].id
    assert send(alice, retry=reply, conversation=cid).status_code == 409
    assert_too_fast(send(alice, retry=reply, conversation=cid))
    assert_too_fast(send(alice, "third", cid))


# --- per address ---------------------------------------------------------------------------


def test_messages_per_address_count_across_owners(limited):
    app = limited(RATELIMIT_MESSAGES_PER_IP="3/minute")
    first = browser(app, "10.0.0.7")
    cid = conversation_id_from(send(first, "one"))
    for i in range(2):
        assert send(browser(app, "10.0.0.7"), f"visitor {i}").status_code == 200
    before = saved(app)

    newcomer = browser(app, "10.0.0.7")
    assert_too_fast(send(newcomer, "from the same address"))
    assert_too_fast(send(first, "me again", cid))
    assert saved(app) == before  # no conversation, message or session for the refused ones

    assert send(browser(app, "10.0.0.8"), "another address").status_code == 200


def test_ipv6_addresses_count_per_64(limited):
    app = limited(RATELIMIT_MESSAGES_PER_IP="2/minute")
    assert send(browser(app, "2001:db8:1:1::1"), "a").status_code == 200
    assert send(browser(app, "2001:db8:1:1::2"), "b").status_code == 200
    assert_too_fast(send(browser(app, "2001:db8:1:1:ffff::9"), "c"))  # the same /64
    assert send(browser(app, "2001:db8:1:2::1"), "d").status_code == 200  # the next /64


def test_behind_a_proxy_the_forwarded_address_counts(limited):
    app = limited(RATELIMIT_MESSAGES_PER_IP="1/minute", PROXY_HOPS=1)
    proxy = "10.0.0.1"

    def post(client_address):
        headers = {**HX, "X-Forwarded-For": client_address}
        return browser(app, proxy).post("/c", data={"content": "hi"}, headers=headers, buffered=True)

    assert post("203.0.113.5").status_code == 200
    assert post("203.0.113.6").status_code == 200
    assert_too_fast(post("203.0.113.5"))


def test_new_sessions_per_address(limited):
    app = limited(RATELIMIT_NEW_SESSIONS_PER_IP="2/hour")
    alice, bob = browser(app), browser(app)
    alice_cid = conversation_id_from(send(alice, "alice"))
    send(bob, "bob")
    before = saved(app)

    carol = browser(app)
    assert_too_fast(send(carol, "carol", htmx=False), htmx=False, unit="minutes", at_most=3600)
    assert_too_fast(send(carol, "carol"), unit="minutes", at_most=3600)
    assert saved(app) == before

    for i in range(3):  # browsers that have their session go on
        assert send(alice, f"alice {i}", alice_cid).status_code == 200
        assert send(alice, f"a new chat {i}").status_code == 200
    assert send(browser(app, "10.0.0.2"), "elsewhere").status_code == 200


def test_stops_per_address(limited):
    app = limited(RATELIMIT_STOPS_PER_IP="2/minute")
    alice = browser(app)
    cid = conversation_id_from(send(alice, "hello"))
    reply = all_messages(app)[-1].id
    for _ in range(2):
        assert alice.post(message_url(cid, reply, "stop"), headers=HX).status_code == 204
    too_fast = alice.post(message_url(cid, reply, "stop"), headers=HX)
    assert_too_fast(too_fast)
    assert "clicking very fast" in too_fast.get_data(as_text=True)  # (not "sending messages")
    assert_too_fast(alice.post(message_url(cid, reply, "stop")), htmx=False)
    assert send(alice, "messages are counted apart", cid).status_code == 200


def test_the_defaults_leave_a_normal_chat_alone(app_factory):
    app = app_factory(PROVIDER="offline", RATELIMIT_ENABLED=True)
    assert app.config["RATELIMIT_MESSAGES_PER_OWNER"] == "20/minute;500/day"
    alice = browser(app)
    cid = conversation_id_from(send(alice, "hello"))
    for i in range(15):
        assert send(alice, f"question {i}", cid).status_code == 200


# --- settings from the environment ---------------------------------------------------------


@pytest.mark.parametrize("value", ["false", "0", "off"])
def test_the_environment_switches_every_limit_off(app_factory, monkeypatch, value):
    monkeypatch.setenv("CHATBOT_RATELIMIT_ENABLED", value)
    monkeypatch.setenv("CHATBOT_RATELIMIT_MESSAGES_PER_OWNER", "1/minute")
    monkeypatch.setenv("CHATBOT_RATELIMIT_MESSAGES_PER_IP", "1/minute")
    app = app_factory(PROVIDER="offline", RATELIMIT_ENABLED=None)  # None: left to the environment
    alice = browser(app)
    cid = conversation_id_from(send(alice, "hello"))
    for i in range(4):
        assert send(alice, f"question {i}", cid).status_code == 200


def test_limits_are_read_from_the_environment(app_factory, monkeypatch):
    monkeypatch.setenv("CHATBOT_RATELIMIT_ENABLED", "true")
    monkeypatch.setenv("CHATBOT_RATELIMIT_MESSAGES_PER_IP", "1/minute")
    app = app_factory(PROVIDER="offline", RATELIMIT_ENABLED=None)
    assert send(browser(app), "hello").status_code == 200
    assert_too_fast(send(browser(app), "hello"))


@pytest.mark.parametrize(
    ("name", "value"),
    [("CHATBOT_RATELIMIT_ENABLED", "maybe"), ("CHATBOT_RATELIMIT_STOPS_PER_IP", "lots")],
)
def test_a_mistyped_setting_stops_the_start(app_factory, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(RuntimeError, match=name.removeprefix("CHATBOT_")):
        app_factory(RATELIMIT_ENABLED=None)


# --- storage -------------------------------------------------------------------------------


@pytest.fixture
def redis_url():
    """The Redis server's URL; its keys are prefixed per test and removed after. Skipped with a
    reason when there is none, but mandatory in CI."""
    import redis

    client = redis.Redis.from_url(REDIS_SERVER, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except Exception as exc:
        client.close()
        if IN_CI:
            pytest.fail(f"Redis is required in CI ({REDIS_SERVER}): {exc}")
        pytest.skip(
            f"Redis not reachable at {REDIS_SERVER} ({exc.__class__.__name__}); set CHATBOT_TEST_REDIS"
        )
    yield REDIS_SERVER, client
    client.close()


def test_with_redis_the_count_holds_across_app_instances(limited, redis_url, monkeypatch):
    url, client = redis_url
    prefix = f"test-{secrets.token_hex(8)}"
    try:
        monkeypatch.setenv("REDIS_URL", url)  # one through the environment, one through config
        one = limited(RATELIMIT_MESSAGES_PER_IP="3/minute", RATELIMIT_KEY_PREFIX=prefix)
        monkeypatch.delenv("REDIS_URL")
        two = limited(RATELIMIT_MESSAGES_PER_IP="3/minute", RATELIMIT_KEY_PREFIX=prefix, REDIS_URL=url)
        assert storage(one) == storage(two) == "RedisStorage"

        assert send(browser(one), "one").status_code == 200
        assert send(browser(two), "two").status_code == 200
        assert send(browser(one), "three").status_code == 200
        assert_too_fast(send(browser(two), "four"))
        assert_too_fast(send(browser(one), "five"))
        assert client.keys(f"*{prefix}*")  # counted in Redis
    finally:
        for key in client.scan_iter(f"*{prefix}*"):
            client.delete(key)


def test_without_redis_each_app_counts_on_its_own(limited):
    """The control for the test above: in memory, two apps (two workers) don't share counts."""
    one = limited(RATELIMIT_MESSAGES_PER_IP="1/minute", REDIS_URL="")
    two = limited(RATELIMIT_MESSAGES_PER_IP="1/minute", REDIS_URL="")
    assert storage(one) == storage(two) == "MemoryStorage"
    assert send(browser(one), "one").status_code == 200
    assert send(browser(two), "two").status_code == 200
    assert_too_fast(send(browser(one), "three"))
    assert_too_fast(send(browser(two), "four"))


def test_an_unreachable_redis_falls_back_to_counting_in_memory(limited):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # (the counts' own storage: on the postgres stack, REDIS_URL also holds the sessions)
    app = limited(RATELIMIT_MESSAGES_PER_IP="2/minute", RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{port}/0")
    assert storage(app) == "RedisStorage"
    assert send(browser(app), "one").status_code == 200
    assert send(browser(app), "two").status_code == 200
    assert_too_fast(send(browser(app), "three"))
