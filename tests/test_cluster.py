"""Several machines: two real gunicorn servers (the shipped configuration) share PostgreSQL and
Redis, and one browser moves between them as a load balancer would send it, with one cookie.

- a conversation started through one server continues through the other;
- a reply streaming from one server is followed live, and stopped, through the other;
- rate limits are counted once, whichever server is asked.

These run in the PostgreSQL + Redis run of the suite (``CHATBOT_TEST_STACK=postgres``, the second
half of ``make test``), on that run's database, emptied before each test.
"""

from __future__ import annotations

import re
import time

import pytest
import requests

from .fake_openai import Reply, tokens
from .helpers import HX, history, message_url, post_url, wait_until
from .servers import RoundRobin, Stream, assert_no_traceback, first_events, post

pytestmark = pytest.mark.postgres_only

LONG = " ".join(f"word{i}" for i in range(100)) + " and **done**."


BODY = re.compile(r'<div class="message-body[^"]*" id="msg-\d+-body"[^>]*>(.*?)</div>', re.S)


def texts_on_page(html: str) -> list[str]:
    """The messages' texts as the page shows them, in order."""
    return [re.sub(r"<[^>]+>|\s+", " ", body).strip() for body in BODY.findall(html)]


def test_a_conversation_started_on_one_server_continues_on_the_other(cluster, fake_openai):
    a, b = cluster.start(2)
    fake_openai.will(Reply("Charge it overnight."), Reply("Then try another cable."))
    browser = cluster.browser()

    first = Stream(browser, a.url + post_url(), {"content": "My phone won't charge"}).join(10)
    assert first.status == 200 and 'data-status="complete"' in first.final()
    conversation = first.conversation()

    page = browser.get(b.url + f"/c/{conversation}", timeout=5)  # same cookie, other server
    assert page.status_code == 200
    assert "My phone won&#39;t charge" in page.text and "Charge it overnight." in page.text

    second = Stream(browser, b.url + post_url(conversation), {"content": "Still nothing after a night"}).join(
        10
    )
    assert second.status == 200 and 'data-status="complete"' in second.final()
    # server B sent the model the whole conversation, including what went through server A
    assert [m["content"] for m in history(fake_openai.requests[-1])[1:]] == [
        "My phone won't charge",
        "Charge it overnight.",
        "Still nothing after a night",
    ]
    home = browser.get(a.url + "/", timeout=5)  # server A opens the conversation B last served
    assert "Then try another cable." in home.text and "Still nothing after a night" in home.text

    stranger = requests.get(b.url + f"/c/{conversation}", timeout=5)  # no cookie: not theirs
    assert stranger.status_code == 404
    assert_no_traceback(a, b)


def test_behind_one_address_a_customer_moves_between_servers_without_noticing(cluster, fake_openai):
    """A load balancer with no stickiness: every request a new connection, to the next server."""
    a, b = cluster.start(2)
    balancer = RoundRobin(a.port, b.port)
    fake_openai.will(*(Reply(f"Answer {i}.") for i in range(4)))
    browser = cluster.browser()
    browser.headers["Connection"] = "close"  # (a new connection, so the next server, each time)
    try:
        first = Stream(browser, balancer.url + post_url(), {"content": "Question 0"}).join(10)
        conversation = first.conversation()
        for i in range(1, 4):
            later = Stream(browser, balancer.url + post_url(conversation), {"content": f"Question {i}"})
            assert 'data-status="complete"' in later.join(10).final()
        page = browser.get(balancer.url + f"/c/{conversation}", timeout=5).text
    finally:
        balancer.close()
    assert texts_on_page(page) == [t for i in range(4) for t in (f"Question {i}", f"Answer {i}.")]
    assert set(balancer.sent_to) == {a.port, b.port}  # both servers served this customer
    assert_no_traceback(a, b)


def test_a_reply_streaming_on_one_server_is_followed_live_and_stopped_from_the_other(cluster, fake_openai):
    a, b = cluster.start(2)
    fake_openai.will(Reply(LONG, token_delay=0.05))  # ~5 s on its own
    browser = cluster.browser()
    stream = first_events(Stream(browser, a.url + post_url(), {"content": "Tell me everything"}), 2)
    reply_id, conversation = stream.reply_id(), stream.conversation()
    wait_until(lambda: stream.text_events(reply_id) >= 3, timeout=5, what="some text on server A")

    other_tab = cluster.tab(browser)

    def followed() -> str | None:  # what server B shows of the reply, once it shows some text
        html = other_tab.get(b.url + message_url(conversation, reply_id), timeout=5).text
        return html if "word3" in html else None

    live = wait_until(followed, timeout=5, what="server B to show the reply's text so far")
    assert 'data-status="streaming"' in live and "hx-trigger" in live  # and it keeps polling
    assert stream.ended is None, "the reply must still be streaming when Stop is sent"

    stop = other_tab.post(b.url + message_url(conversation, reply_id, "stop"), headers=HX, timeout=5)
    stopped_at = time.perf_counter()
    assert stop.status_code == 204, stop.text
    stream.join(5)
    assert stream.ended - stopped_at < 1.5, f"the stream ended {stream.ended - stopped_at:.2f} s after Stop"
    final = stream.final()
    assert 'data-status="interrupted"' in final and "Stopped." in final, final
    wait_until(lambda: fake_openai.closed_streams == 1, timeout=2, what="the model stream closed")

    shown = other_tab.get(b.url + message_url(conversation, reply_id), timeout=5).text
    assert 'data-status="interrupted"' in shown and "hx-trigger" not in shown
    saved = texts_on_page(browser.get(a.url + f"/c/{conversation}", timeout=5).text)[-1]
    assert saved.startswith("word0 word1") and len(tokens(saved)) < len(tokens(LONG))
    assert_no_traceback(a, b)


def test_rate_limits_are_counted_once_across_servers(cluster, fake_openai):
    a, b = cluster.start(2, CHATBOT_RATELIMIT_MESSAGES_PER_OWNER="3/minute")
    browser = cluster.browser()
    first = Stream(browser, a.url + post_url(), {"content": "one"}).join(10)
    conversation = first.conversation()
    statuses = []
    # (the first message counted against the address: the browser had no owner yet)
    for server, text in ((b, "two"), (a, "three"), (b, "four"), (a, "five")):
        response = post(browser, server.url + post_url(conversation), text)
        statuses.append(response.status_code)
    assert statuses == [200, 200, 200, 429], statuses
    assert "sending messages very fast" in response.text and int(response.headers["Retry-After"]) > 0
    page = browser.get(b.url + f"/c/{conversation}", timeout=5).text
    assert "four" in page and "five" not in page
    assert_no_traceback(a, b)
