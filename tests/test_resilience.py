"""Replies whose turn died, pages opened mid-reply, clients that vanish at once, silent models."""

from __future__ import annotations

import threading
import time

import requests
from sqlalchemy import update

from chatbot.chat.replies import sweep
from chatbot.extensions import db
from chatbot.models import Message

from .fake_openai import Reply
from .helpers import (
    HX,
    all_messages,
    busy_model_readers,
    conversation_id_from,
    message_url,
    only_conversation,
    parse_sse,
    raw_post,
    send,
    stored_sessions,
    wait_until,
)

EXPIRED = 0.0  # a lease that ran out long ago


def running() -> float:
    """A lease that still runs (the database's clock is this host's here)."""
    return time.time() + 60


def set_reply(app, message_id, **values):
    with app.app_context():
        db.session.execute(update(Message).where(Message.id == message_id).values(**values))
        db.session.commit()


def test_a_reply_whose_turn_died_is_shown_interrupted_and_can_be_retried(app, client, fake_openai):
    cid = conversation_id_from(send(client, "x"))
    set_reply(app, 2, status="streaming", content="half an ans", lease_until=EXPIRED)
    page = client.get(f"/c/{cid}").get_data(as_text=True)
    assert 'data-status="interrupted"' in page and "stopped before it finished" in page
    assert "half an ans" in page
    assert 'data-action="retry"' in page and 'data-action="stop"' not in page
    final = parse_sse(send(client, "", cid, retry=2).get_data(as_text=True))[-1]["data"]
    assert 'data-status="complete"' in final


def test_gunicorn_start_marks_only_expired_replies(app, client, fake_openai):
    conversation_id_from(send(client, "one"))
    send(client, "two", all_messages(app)[0].conversation_id and None)  # a second conversation
    stale, live = all_messages(app)[1].id, all_messages(app)[3].id
    set_reply(app, stale, status="streaming", lease_until=EXPIRED)
    set_reply(app, live, status="streaming", lease_until=running())  # another worker writes it
    with app.app_context():
        assert sweep() == 1
    statuses = {m.id: (m.status, m.meta.get("finish_reason")) for m in all_messages(app)}
    assert statuses[stale] == ("interrupted", "server_restarted")
    assert statuses[live][0] == "streaming"


def test_a_live_reply_cannot_be_retried_behind_its_turn(app, client, fake_openai):
    cid = conversation_id_from(send(client, "x"))
    set_reply(app, 2, status="streaming", lease_until=running())
    response = send(client, "", cid, retry=2)
    assert response.status_code == 409
    assert len(fake_openai.requests) == 1


def test_a_reply_asked_for_by_a_client_that_left_at_once_is_still_written(live_server, app, fake_openai):
    """A tab closed (a TCP reset) right after it posted: each reply is written and saved whole."""
    fake_openai.will(*[Reply("slow but sure", first_token_delay=1.0)] * 3)
    for _ in range(3):
        raw_post(live_server.url, "bye", reset=True).close()

    def replies():
        found = [m for m in all_messages(app) if not m.is_user]
        return found if len(found) == 3 and all(m.status != "streaming" for m in found) else None

    replies = wait_until(replies, timeout=10, what="three finished replies")
    assert [(m.status, m.content) for m in replies] == [("complete", "slow but sure")] * 3
    assert len(fake_openai.requests) == 3


def test_stop_while_the_model_is_silent_ends_the_upstream_request_at_once(live_server, app, fake_openai):
    fake_openai.will(Reply("never mind", first_token_delay=3.0))
    with requests.Session() as s:
        response = s.post(
            f"{live_server.url}/c", data={"content": "hello"}, headers=HX, stream=True, timeout=10
        )
        lines = response.iter_lines(decode_unicode=True)
        next(line for line in lines if line.startswith(": keep-alive"))
        started = time.perf_counter()
        stop = live_server.url + message_url(only_conversation(app), 2, "stop")
        assert s.post(stop, headers=HX).status_code == 204
        rest = list(lines)
        ended = time.perf_counter() - started
    assert any('data-status="interrupted"' in line for line in rest)
    assert ended < 1.5  # not the model's 3 s silence
    wait_until(lambda: fake_openai.closed_streams == 1, timeout=1.5, what="the model stream closed")
    reply = all_messages(app)[1]
    assert reply.status == "interrupted" and reply.meta["finish_reason"] == "stopped"


def test_a_second_page_follows_a_reply_being_written(live_server, app, fake_openai):
    """A reload or second tab mid-reply shows the text so far and updates until it ends."""
    words = " ".join(f"w{i}" for i in range(60))
    fake_openai.will(Reply(words, token_delay=0.05))  # about 3 s
    with requests.Session() as s:
        response = s.post(
            f"{live_server.url}/c", data={"content": "long one"}, headers=HX, stream=True, timeout=10
        )
        consumer = threading.Thread(target=lambda: [None for _ in response.iter_lines()], daemon=True)
        consumer.start()
        time.sleep(1.6)  # past the first progress save
        page = s.get(f"{live_server.url}/").text
        assert 'data-status="streaming"' in page
        follow = message_url(only_conversation(app), 2)
        assert f'hx-get="{follow}" hx-trigger="every 1s"' in page
        partial = s.get(live_server.url + follow).text
        assert "w0 w1" in partial  # the text so far was saved
        consumer.join(10)
        final = s.get(live_server.url + follow).text
    assert 'data-status="complete"' in final and "hx-trigger" not in final
    assert "w59" in final


def test_visits_that_only_read_store_no_session(app, fake_openai):
    for _ in range(5):
        client = app.test_client()
        assert client.get("/").status_code == 200
        assert client.get_cookie("chatbot_session") is None
    assert stored_sessions(app) == []
    client = app.test_client()
    send(client, "now I talk")
    assert client.get_cookie("chatbot_session") is not None


def test_stop_before_the_model_sent_its_headers_cancels_the_call_at_once(live_server, app, fake_openai):
    """A model that hasn't answered at all (no headers yet): Stop still ends the upstream request,
    and the thread that was waiting for it ends with the turn."""
    fake_openai.will(Reply("too late", header_delay=5.0))
    with requests.Session() as s:
        response = s.post(
            f"{live_server.url}/c", data={"content": "hello?"}, headers=HX, stream=True, timeout=10
        )
        lines = response.iter_lines(decode_unicode=True)
        next(line for line in lines if line.startswith(": keep-alive"))
        assert busy_model_readers(), "the model call should be waiting for headers now"
        started = time.perf_counter()
        stop = live_server.url + message_url(only_conversation(app), 2, "stop")
        assert s.post(stop, headers=HX).status_code == 204
        rest = list(lines)
        ended = time.perf_counter() - started
    assert any('data-status="interrupted"' in line for line in rest)
    assert ended < 1.0  # not the model's 5 s
    wait_until(lambda: not busy_model_readers(), timeout=1.0, what="the model thread to end")
    wait_until(
        lambda: fake_openai.abandoned_requests == 1, timeout=1.0, what="the upstream request to be closed"
    )
    assert len(fake_openai.requests) == 1  # cancelled, not retried by the SDK
    reply = all_messages(app)[1]
    assert reply.status == "interrupted" and reply.meta["finish_reason"] == "stopped"


def test_a_call_still_waiting_for_headers_outlives_its_page_and_stop_ends_it(live_server, app, fake_openai):
    """The page leaves while the model hasn't even answered: the call goes on; Stop cancels it."""
    fake_openai.will(Reply("too late", header_delay=5.0))
    with requests.Session() as s:
        response = s.post(
            f"{live_server.url}/c", data={"content": "bye"}, headers=HX, stream=True, timeout=10
        )
        next(line for line in response.iter_lines(decode_unicode=True) if line.startswith(": keep-alive"))
        response.close()
        time.sleep(0.5)
        assert busy_model_readers(), "the model call should still be waiting for headers"
        assert all_messages(app)[1].status == "streaming"
        stop = s.post(live_server.url + message_url(only_conversation(app), 2, "stop"), headers=HX)
        assert stop.status_code == 204
    wait_until(lambda: not busy_model_readers(), timeout=1.0, what="the model thread to end")
    wait_until(
        lambda: fake_openai.abandoned_requests == 1, timeout=1.0, what="the upstream request to be closed"
    )
    reply = wait_until(lambda: (r := all_messages(app)[1]).status != "streaming" and r, timeout=2)
    assert reply.status == "interrupted" and reply.meta["finish_reason"] == "stopped"
