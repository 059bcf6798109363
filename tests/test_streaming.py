"""Streamed replies over real HTTP: batching, stop, a departed client, a cut upstream, load."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from chatbot.rendering import render_markdown

from .conftest import REDIS_TEST_URL, _stack
from .fake_openai import Reply, tokens
from .helpers import (
    HX,
    all_conversations,
    all_messages,
    message_url,
    only_conversation,
    parse_sse,
    post_url,
    send,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent
LONG = " ".join(f"word{i}" for i in range(40)) + " and **done**."


def stream_turn(base_url: str, session: requests.Session, content: str, conversation: str = ""):
    """Post like the page does and yield (arrival time, event) as events arrive."""
    response = session.post(
        base_url + post_url(conversation), data={"content": content}, headers=HX, stream=True, timeout=30
    )
    return response


def read_events(response, lines=None) -> list[tuple[float, dict]]:
    """(arrival time, event) for each event; ``lines`` continues an iterator already started."""
    events, block = [], []
    for raw in lines or response.iter_lines(decode_unicode=True):
        if raw == "":
            if block:
                for event in parse_sse("\n".join(block)):
                    events.append((time.perf_counter(), event))
            block = []
        else:
            block.append(raw)
    return events


def text_events(events, reply_id: int) -> list[str]:
    marker = f'hx-target="#msg-{reply_id}-tail"'
    return [e["data"] for _, e in events if marker in e["data"]]


_PARTIAL = re.compile(
    r'<hx-partial hx-target="#msg-\d+-tail" hx-swap="(beforebegin|innerHTML)">(.*?)</hx-partial>', re.S
)


def streamed_body(chunks: list[str]) -> str:
    """The reply's body as the page holds it after these text events: the finished blocks each
    event put before the open tail, then the tail as the last event left it."""
    done, tail = [], ""
    for data in chunks:
        for swap, html in _PARTIAL.findall(data):
            if swap == "beforebegin":
                done.append(html)
            else:
                tail = html
    return "".join(done) + tail


def test_tokens_arrive_in_several_batches_and_the_saved_reply_equals_them(live_server, app, fake_openai):
    fake_openai.will(Reply(LONG, token_delay=0.03))
    with requests.Session() as s:
        response = stream_turn(live_server.url, s, "Tell me a long story")
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["X-Accel-Buffering"] == "no"
        events = read_events(response)

    reply = all_messages(app)[1]
    chunks = text_events(events, reply.id)
    # One event per token would be ~43; one per reply would be 1. Batches of ~100 ms sit between.
    assert 5 <= len(chunks) < len(tokens(LONG))
    times = [t for t, e in events if f"#msg-{reply.id}-tail" in e["data"]]
    assert times[-1] - times[0] > 0.5  # they really arrived over time, not all at the end
    assert 'data-status="complete"' in events[-1][1]["data"]
    assert "<strong>done</strong>" in events[-1][1]["data"]

    assert reply.content == LONG
    # the streamed text, rendered as it came, is the finished reply's Markdown rendered whole
    assert streamed_body(chunks) == str(render_markdown(LONG)).strip()
    assert reply.status == "complete"
    assert reply.meta["completion_tokens"] == len(tokens(LONG))
    assert reply.meta["total_tokens"] > reply.meta["completion_tokens"]
    assert reply.meta["ttft_ms"] < reply.meta["latency_ms"]


def test_text_is_escaped_in_the_stream(client, app, fake_openai):
    fake_openai.will(Reply("<script>alert(1)</script> & more"))
    body = client.post("/c", data={"content": "x"}, headers=HX, buffered=True).get_data(as_text=True)
    assert "<script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in body


MARKDOWN = (
    "## Steps\n\nFirst **restart** the phone.\n\n- Open Settings\n- Tap Battery\n\n"
    "| Setting | Effect |\n| --- | --- |\n| Brightness | a lot |\n\n```\nadb shell dumpsys battery\n\n```\n"
    "Then check again.\n\n" + LONG
)


def test_markdown_is_rendered_in_the_stream_and_ends_as_the_whole_render(client, app, fake_openai):
    fake_openai.will(Reply(MARKDOWN, token_delay=0.01))
    events = parse_sse(send(client, "How do I check the battery?").get_data(as_text=True))
    chunks = [e["data"] for e in events if 'hx-target="#msg-2-tail"' in e["data"]]
    assert len(chunks) >= 3
    # finished blocks arrive once each, as HTML, while the reply is still being written
    added = "".join(streamed_body([c.split('hx-swap="innerHTML"')[0]]) for c in chunks)
    for html in ("<h4>Steps</h4>", "<strong>restart</strong>", "<li>Tap Battery</li>", "<td>a lot</td>"):
        assert added.count(html) == 1, html
    assert '<pre tabindex="0"><code>adb shell dumpsys battery\n\n</code></pre>' in added
    # the body streamed is, HTML for HTML, the finished reply's body
    final = events[-1]["data"]
    assert 'data-status="complete"' in final
    whole = str(render_markdown(MARKDOWN))
    assert whole in final
    assert re.sub(r"\s+", "", streamed_body(chunks)) == re.sub(r"\s+", "", whole)


def test_model_written_markup_in_the_stream_stays_text(client, app, fake_openai):
    attacks = [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(2)>",
        "[tap](javascript:alert(3))",
        '</hx-partial><hx-partial hx-target="#composer-error" hx-swap="innerHTML">pwned</hx-partial>',
    ]
    fake_openai.will(Reply("- " + "\n- ".join(attacks) + "\n\n" + " and ".join(attacks), token_delay=0.005))
    events = parse_sse(send(client, "x").get_data(as_text=True))
    chunks = [e["data"] for e in events if 'hx-target="#msg-2-tail"' in e["data"]]
    assert len(chunks) >= 3
    for html in chunks:
        assert "<script" not in html and "<img" not in html and 'href="javascript:' not in html
        ours = html.count("<hx-partial ") + html.count("</hx-partial>")  # (the stream's own)
        assert ours == 2 * len(re.findall(r'<hx-partial hx-target="#[\w-]+" hx-swap="\w+">', html))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in streamed_body(chunks)


def test_a_page_opened_mid_reply_shows_it_as_markdown(live_server, app, fake_openai):
    fake_openai.will(Reply(MARKDOWN, token_delay=0.03))
    with requests.Session() as s:
        response = stream_turn(live_server.url, s, "How do I check the battery?")
        lines = response.iter_lines(decode_unicode=True)
        next(line for line in lines if "word3" in line)  # the reply is well under way
        address = live_server.url + message_url(only_conversation(app), 2)

        def saved() -> str | None:  # (the text so far is saved every STREAM_TICK_SECONDS)
            html = s.get(address, timeout=5).text
            return html if "word3" in html else None

        page = wait_until(saved, what="the text so far, saved")
        assert 'data-status="streaming"' in page and 'hx-trigger="every 1s"' in page  # followed
        body = page.split('id="msg-2-body"', 1)[1].split('<div class="message-actions">', 1)[0]
        assert body.startswith(" hx-ignore>")  # model-written HTML: htmx leaves it alone
        for html in (
            "<h4>Steps</h4>",
            "<strong>restart</strong>",
            "<li>Tap Battery</li>",
            "<table>",
            "word3",
        ):
            assert html in body, html
        assert '<div class="md-tail" id="msg-2-tail">' in body  # where this page's own stream would go
        assert "**" not in body and "##" not in body
        read_events(response, lines)


def test_silent_model_gets_keepalives_so_departures_are_seen(live_server, fake_openai):
    fake_openai.will(Reply("late", first_token_delay=1.0))
    with requests.Session() as s:
        response = stream_turn(live_server.url, s, "hello")
        raw = response.text
    before_text = raw.split('hx-target="#msg-2-tail"', 1)[0]
    assert before_text.count(": keep-alive") >= 2


def test_stop_saves_the_partial_reply_as_stopped(live_server, app, fake_openai):
    fake_openai.will(Reply(LONG, token_delay=0.05))
    with requests.Session() as s:
        response = stream_turn(live_server.url, s, "Go on and on")
        events = []
        lines = response.iter_lines(decode_unicode=True)
        for raw in lines:
            events.append(raw)
            if raw.startswith('data: <hx-partial hx-target="#msg-2-tail"') and len(events) > 30:
                stop = s.post(
                    live_server.url + message_url(only_conversation(app), 2, "stop"), headers=HX, timeout=5
                )
                assert stop.status_code == 204
                break
        rest = read_events(response, lines)
    assert 'data-status="interrupted"' in rest[-1][1]["data"]
    assert "Stopped." in rest[-1][1]["data"]
    reply = all_messages(app)[1]
    assert reply.status == "interrupted" and reply.meta["finish_reason"] == "stopped"
    assert 0 < len(reply.content) < len(LONG) and LONG.startswith(reply.content)
    # the model's stream was closed too, long before it would have finished on its own
    wait_until(lambda: fake_openai.closed_streams == 1, timeout=3, what="the model stream closed")


def leave_after(response, text_events: int) -> None:
    """Read the stream until ``text_events`` batches of the reply arrived, then close the tab."""
    seen = 0
    for line in response.iter_lines(decode_unicode=True):
        seen += line.startswith('data: <hx-partial hx-target="#msg-2-tail"')
        if seen >= text_events:
            break
    response.close()


def test_a_reply_outlives_the_page_that_asked_for_it(live_server, app, fake_openai, capfd):
    fake_openai.will(Reply(LONG, token_delay=0.05))  # about 2 s
    with requests.Session() as s:
        leave_after(stream_turn(live_server.url, s, "leaving soon"), 3)
        # the tab is gone; the reply isn't: a reload meanwhile shows it being written, text so far
        follow = live_server.url + message_url(only_conversation(app), 2)
        partial = wait_until(lambda: html if "word0" in (html := s.get(follow).text) else None)
        assert 'data-status="streaming"' in partial and "hx-trigger" in partial
        reply = wait_until(
            lambda: (r := all_messages(app)[1]).status != "streaming" and r,
            timeout=10,
            what="the reply to end",
        )
        final = s.get(follow).text
    # saved whole, from the one model call, and shown so to whoever follows it
    assert reply.status == "complete" and reply.meta["finish_reason"] == "stop"
    assert reply.content == "".join(tokens(LONG))
    assert 'data-status="complete"' in final and "<strong>done</strong>" in final
    assert len(fake_openai.requests) == 1 and fake_openai.closed_streams == 0
    assert "Traceback" not in capfd.readouterr().err


def test_stop_ends_a_reply_whose_page_went_away(live_server, app, fake_openai):
    """Stop (from a reload, another tab) is the one way to end such a reply early."""
    fake_openai.will(Reply(LONG * 5, token_delay=0.05))  # about 10 s
    with requests.Session() as s:
        leave_after(stream_turn(live_server.url, s, "leaving soon"), 3)
        stop = s.post(live_server.url + message_url(only_conversation(app), 2, "stop"), headers=HX, timeout=5)
        assert stop.status_code == 204
        reply = wait_until(
            lambda: (r := all_messages(app)[1]).status != "streaming" and r,
            timeout=3,
            what="the reply to end",
        )
    assert reply.status == "interrupted" and reply.meta["finish_reason"] == "stopped"
    assert 0 < len(reply.content) < len(LONG * 5)
    wait_until(lambda: fake_openai.closed_streams == 1, timeout=3, what="the model stream closed")


def test_upstream_cut_keeps_the_partial_text_marked_incomplete_with_retry(client, app, fake_openai):
    fake_openai.will(Reply(LONG, cut_after=5))
    body = client.post("/c", data={"content": "cut me"}, headers=HX, buffered=True).get_data(as_text=True)
    final = parse_sse(body)[-1]["data"]
    assert 'data-status="interrupted"' in final
    assert "Incomplete" in final and 'data-action="retry"' in final
    reply = all_messages(app)[1]
    assert reply.content == "".join(tokens(LONG)[:5])
    assert reply.meta["finish_reason"] == "incomplete"
    assert len(fake_openai.requests) == 1  # nothing retried behind the user's back

    retried = send(client, "", all_conversations(app)[0].public_id, retry=reply.id)
    assert 'data-status="complete"' in parse_sse(retried.get_data(as_text=True))[-1]["data"]
    assert len(fake_openai.requests) == 2
    assert len(all_messages(app)) == 2


def test_upstream_cut_before_any_text_is_an_error_with_retry(client, app, fake_openai):
    fake_openai.will(Reply(LONG, cut_after=0))
    body = client.post("/c", data={"content": "cut early"}, headers=HX, buffered=True).get_data(as_text=True)
    final = parse_sse(body)[-1]["data"]
    assert 'data-status="error"' in final and 'data-action="retry"' in final
    assert all_messages(app)[1].status == "error"
    assert len(fake_openai.requests) == 1


def test_a_stopped_reply_cannot_be_stopped_twice_and_others_cannot_stop_it(client, app, fake_openai):
    client.post("/c", data={"content": "x"}, headers=HX, buffered=True)
    stop = message_url(only_conversation(app), 2, "stop")
    assert client.post(stop, headers=HX).status_code == 204  # already complete: no-op
    assert all_messages(app)[1].status == "complete"
    assert app.test_client().post(stop, headers=HX).status_code == 404


# --- many at once, on the shipped gunicorn configuration ------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stack_env() -> dict[str, str]:
    if not _stack:
        return {}
    return {
        "REDIS_URL": REDIS_TEST_URL,
        "CHATBOT_SESSION_KEY_PREFIX": _stack["prefix"] + ":session:",
        "CHATBOT_RATELIMIT_KEY_PREFIX": _stack["prefix"],
    }


@pytest.fixture
def gunicorn_server(tmp_path, fake_openai):
    port = _free_port()
    env = dict(
        os.environ,
        CHATBOT_INSTANCE_PATH=str(tmp_path / "instance"),
        # the run's stack: a SQLite file, or (postgres) this test's database with Redis
        DATABASE_URL=_stack.get("database") or f"sqlite:///{tmp_path / 'gunicorn.sqlite3'}",
        OPENAI_API_KEY="sk-test-not-a-real-key",
        OPENAI_BASE_URL=fake_openai.url,
        CHATBOT_OPENAI_MAX_RETRIES="0",
        CHATBOT_CSRF_ENABLED="false",  # posts like a script; CSRF has its own tests
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_ACCESS_LOG="/dev/null",
        # every customer here comes from 127.0.0.1: the per-address limits are raised out of the way
        # (they have their own tests), and counted in one place whichever worker takes a request
        CHATBOT_RATELIMIT_NEW_SESSIONS_PER_IP="1000/hour",
        CHATBOT_RATELIMIT_MESSAGES_PER_IP="1000/minute",
        CHATBOT_RATELIMIT_MESSAGES_PER_OWNER="1000/minute",  # (a first message counts per address)
        **_stack_env(),
    )  # workers and worker class as shipped
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            pytest.fail("gunicorn did not start:\n" + proc.stdout.read().decode())
        try:
            return requests.get(url + "/", timeout=1).status_code == 200
        except (requests.ConnectionError, requests.Timeout):  # a worker still booting
            return False

    try:
        wait_until(up, timeout=20, interval=0.1, what="gunicorn to start")
    except AssertionError:
        proc.kill()
        raise
    yield url
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert b"Traceback" not in out, out.decode()


def test_ten_simultaneous_streams_complete_and_pages_still_load(gunicorn_server, fake_openai):
    fake_openai.default = Reply(LONG, token_delay=0.04)  # ~1.7 s per reply

    def one(i: int):
        with requests.Session() as s:
            events = read_events(stream_turn(gunicorn_server, s, f"question {i}"))
            return i, events, time.perf_counter()

    with ThreadPoolExecutor(10) as pool:
        futures = [pool.submit(one, i) for i in range(10)]
        time.sleep(0.5)  # all ten are streaming now
        page = requests.get(gunicorn_server + "/", timeout=10)
        page_done = time.perf_counter()
        results = [f.result() for f in futures]

    assert page.status_code == 200 and 'id="composer"' in page.text
    assert page_done < min(done for _, _, done in results)  # it did not wait for any stream
    for i, events, _ in results:
        final = events[-1][1]["data"]
        assert 'data-status="complete"' in final, (i, final)
        assert "<strong>done</strong>" in final
    sent = sorted(r.json["messages"][-1]["content"] for r in fake_openai.requests)
    assert sent == sorted(f"question {i}" for i in range(10))


def test_thirty_two_customers_at_once_all_get_their_whole_reply(gunicorn_server, fake_openai):
    """The concurrency bench's 32-client round as a test: every reply completes, each with its
    own question's answer saved (how fast is bench/concurrency.py's business)."""
    fake_openai.default = Reply(LONG, first_token_delay=0.3, token_delay=0.03)  # ~1.6 s per reply
    together = threading.Barrier(32, timeout=20)

    def one(i: int):
        with requests.Session() as s:
            together.wait()
            response = stream_turn(gunicorn_server, s, f"customer {i}")
            assert response.status_code == 200, (i, response.status_code, response.text[:300])
            return i, read_events(response)

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(one, range(32)))
    for i, events in results:
        final = events[-1][1]["data"]
        assert 'data-status="complete"' in final and "<strong>done</strong>" in final, (i, final)
    asked = sorted(r.json["messages"][-1]["content"] for r in fake_openai.requests)
    assert asked == sorted(f"customer {i}" for i in range(32))
