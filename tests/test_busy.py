"""A busy database, a model server that asks us to wait, and one that sends nonsense: the turn
stays honest and quick to stop."""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager

import pytest
import requests

from chatbot.chat import replies, turns
from chatbot.chat.live import live_replies
from chatbot.extensions import db

from .conftest import LiveServer
from .fake_openai import Reply
from .helpers import (
    HX,
    all_messages,
    busy_model_readers,
    message_url,
    only_conversation,
    parse_sse,
    send,
    wait_until,
)
from .servers import Cluster, Stream

pytestmark = pytest.mark.sqlite_only  # a SQLite write lock held by another connection


@contextmanager
def write_locked(app):
    """Hold the SQLite file's write lock from another connection, as another process would."""
    with app.app_context():
        path = db.engine.url.database
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def test_stop_is_immediate_even_while_the_database_is_locked(app_factory, openai_config, fake_openai):
    app = app_factory(**openai_config, SQLITE_BUSY_SECONDS=3)
    server = LiveServer(app)
    fake_openai.will(Reply(" ".join(f"w{i}" for i in range(200)), token_delay=0.03))
    try:
        with requests.Session() as s:
            response = s.post(
                f"{server.url}/c", data={"content": "long"}, headers=HX, stream=True, timeout=10
            )
            lines = response.iter_lines(decode_unicode=True)
            next(line for line in lines if 'hx-target="#msg-2-tail"' in line)
            stop = server.url + message_url(only_conversation(app), 2, "stop")
            with write_locked(app):
                started = time.perf_counter()
                assert s.post(stop, headers=HX, timeout=10).status_code == 204
                answered = time.perf_counter() - started
            rest = list(lines)
    finally:
        server.stop()
    assert answered < 1.0  # the turn runs here: stopping it needs no database
    final = "\n".join(line for line in rest if line.startswith("data:"))
    assert 'data-status="interrupted"' in final and "Stopped." in final
    reply = all_messages(app)[1]
    assert reply.status == "interrupted" and reply.meta["finish_reason"] == "stopped"


def test_a_message_sent_while_the_database_is_locked_gets_a_readable_503(app_factory, openai_config):
    app = app_factory(**openai_config, SQLITE_BUSY_SECONDS=0.2)
    client = app.test_client()
    with write_locked(app):
        response = send(client, "Is anyone there?")
    assert response.status_code == 503
    assert (
        response.get_data(as_text=True).strip()
        == "The service is busy right now. Please try again in a moment."
    )
    assert all_messages(app) == []
    assert send(client, "Is anyone there?").status_code == 200  # and all is well once it frees


def test_a_failed_tick_is_retried_at_once_so_the_lease_is_renewed_when_the_lock_frees(app_factory):
    app = app_factory(SQLITE_BUSY_SECONDS=0.1, STREAM_TICK_SECONDS=1.5)
    with app.app_context():
        turn = turns.begin_turn("owner", None, "hello", turns.Settings.from_config(app.config))
    lease = turn.lease
    live = live_replies(app)

    def lease_until() -> float:
        with app.app_context():
            return db.session.get(replies.Message, lease.reply_id, populate_existing=True).lease_until

    first = lease_until()
    live.hold(lease)  # the ticker's first tick comes at 1.5 s
    try:
        with write_locked(app):
            time.sleep(2.2)  # that tick fails (busy), and is tried again and again
            assert lease_until() == first
            freed = time.time()
        wait_until(lambda: lease_until() > first, timeout=0.5, what="the lease renewed")
        assert time.time() - freed < 0.5  # not at the next regular tick (3.0 s)
    finally:
        lease.cancel(replies.STOPPED)
        live.release(lease)


def test_stop_cuts_short_the_wait_a_rate_limited_model_asks_for(app_factory, openai_config, fake_openai):
    """429 with Retry-After: 5: the SDK would sleep 5 s before retrying; Stop ends that wait."""
    app = app_factory(**dict(openai_config, OPENAI_MAX_RETRIES=1))
    server = LiveServer(app)
    fake_openai.will(Reply(status=429, retry_after=5))
    try:
        with requests.Session() as s:
            response = s.post(f"{server.url}/c", data={"content": "hi"}, headers=HX, stream=True, timeout=10)
            lines = response.iter_lines(decode_unicode=True)
            next(line for line in lines if line.startswith(": keep-alive"))
            wait_until(lambda: len(fake_openai.requests) == 1, what="the first call")
            time.sleep(0.3)  # the SDK is in its 5 s wait now
            stop = server.url + message_url(only_conversation(app), 2, "stop")
            started = time.perf_counter()
            assert s.post(stop, headers=HX).status_code == 204
            rest = list(lines)
            ended = time.perf_counter() - started
    finally:
        server.stop()
    assert ended < 1.0
    assert any('data-status="interrupted"' in line for line in rest)
    wait_until(lambda: not busy_model_readers(), timeout=1.0, what="the model thread to end")
    time.sleep(0.2)
    assert len(fake_openai.requests) == 1  # the retry was never sent


def test_a_reply_the_server_garbles_is_an_error_not_a_crash(client, app, fake_openai):
    fake_openai.will(Reply("fine words", bad_content=123))
    final = parse_sse(send(client, "hello").get_data(as_text=True))[-1]["data"]
    assert 'data-status="error"' in final
    assert "sent a reply we couldn&#39;t read" in final and 'data-action="retry"' in final
    reply = all_messages(app)[1]
    assert reply.status == "error" and reply.meta["error_kind"] == "bad_chunk"
    with app.app_context():
        assert live_replies(app).cancel(reply.id, "stopped") is False  # no lease left behind


def test_a_write_waiting_for_the_lock_holds_up_nothing_else_in_a_gevent_worker(tmp_path, fake_openai):
    """A message sent while another process holds SQLite's write lock waits for it (and is
    saved once the lock frees); meanwhile the same worker (one, gevent) goes on answering
    others: the wait is the greenlet's, not a C busy loop that would stop the whole worker."""
    db_path = tmp_path / "busy.sqlite3"
    cluster = Cluster(tmp_path, f"sqlite:///{db_path}", fake_openai.url, {"WEB_CONCURRENCY": "1"})
    try:
        (server,) = cluster.start(1)
        conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN IMMEDIATE")
        try:
            sent = Stream(cluster.browser(), server.url + "/c", {"content": "Are you there?"})
            time.sleep(0.3)  # the post is waiting for the lock by now
            assert sent.status is None and not sent.events
            started = time.perf_counter()
            health = requests.get(server.url + "/healthz", timeout=5)
            answered = time.perf_counter() - started
            held_for = time.perf_counter() - sent.started
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        sent.join(10)
    finally:
        cluster.close()
    assert health.status_code == 200 and answered < 0.5, f"/healthz took {answered:.2f} s"
    assert held_for > 0.3  # (the lock was still held while /healthz answered)
    assert sent.status == 200 and 'data-status="complete"' in sent.final()
