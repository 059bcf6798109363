"""Races between writers, tabs and processes, against real gunicorn servers (``servers.py``) on
one SQLite file.

- a retry that takes over a reply whose lease ran out while its turn is still alive: the old turn
  is fenced out (it never writes again) and is told so;
- two tabs of one browser posting into one conversation: the second is refused while a reply is
  live, and of two posts released at the same instant exactly one wins;
- Stop sent to another process than the one streaming the reply.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import requests

from .fake_openai import Reply, tokens
from .helpers import HX, message_url, parse_sse, post_url, wait_until
from .servers import Cluster, Server, Stream, assert_no_traceback, first_events, post

BUSY_TEXT = "The assistant is still answering in this conversation"
pytestmark = pytest.mark.sqlite_only  # servers sharing one SQLite file


# --- servers ---------------------------------------------------------------------------------


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "races.sqlite3"


@pytest.fixture
def cluster(tmp_path, db_path, fake_openai):
    cluster = Cluster(tmp_path, f"sqlite:///{db_path}", fake_openai.url)
    yield cluster
    cluster.close()


# --- the database, read directly ---------------------------------------------------------------


def messages(db_path: Path) -> list[dict]:
    con = sqlite3.connect(db_path, timeout=5)
    try:
        rows = con.execute(
            "SELECT id, conversation_id, is_user, content, status, attempt, metadata "
            "FROM messages ORDER BY id"
        ).fetchall()
    finally:
        con.close()
    return [
        {
            "id": r[0],
            "conversation_id": r[1],
            "is_user": bool(r[2]),
            "content": r[3],
            "status": r[4],
            "attempt": r[5],
            "meta": json.loads(r[6] or "{}"),
        }
        for r in rows
    ]


def assert_alternating(rows: list[dict]) -> None:
    """user, assistant, user, assistant...: every reply right after its own user message."""
    assert [r["is_user"] for r in rows] == [i % 2 == 0 for i in range(len(rows))], [
        (r["id"], r["is_user"], r["content"][:30]) for r in rows
    ]


def complete_exchange(server: Server, browser: requests.Session, content: str) -> str:
    """A first, complete exchange in a new conversation; returns its public id."""
    stream = Stream(browser, server.url + post_url(), {"content": content}).join(10)
    assert stream.status == 200 and 'data-status="complete"' in stream.final()
    # the stream ran in this session, so its cookie is here now
    return stream.conversation()


# --- 1. two writers, one reply -----------------------------------------------------------------

OLD_TOKENS = 70
OLD_TOKEN_DELAY = 0.08  # the old reply would take ~5.6 s on its own
FRESH = "Fresh answer from the retry."


@pytest.mark.parametrize("where", ["same-process", "other-process"])
def test_a_retry_takes_over_a_reply_whose_lease_ran_out_and_the_old_turn_never_writes(
    cluster, db_path, fake_openai, where
):
    """The lease (1 s) runs out long before the first tick (3 s) of a turn that is still alive:
    a retry may claim the reply. The old turn is fenced out: the reply ends up as the retry wrote
    it, and stays so. The old turn learns that it lost (at once when the retry runs in its own
    process, at its next tick from another), stops calling the model, says so in the log, and
    ends its stream with the reply as it now is.

    same-process: both turns in one worker; other-process: the retry goes to a second server."""
    env = {"CHATBOT_STREAM_LEASE_SECONDS": "1", "CHATBOT_STREAM_TICK_SECONDS": "3", "WEB_CONCURRENCY": "1"}
    if where == "same-process":
        (first,) = cluster.start(1, **env)
        second = first
    else:
        first, second = cluster.start(2, **env)
    fake_openai.will(Reply("old " * OLD_TOKENS, token_delay=OLD_TOKEN_DELAY), Reply(FRESH))

    browser = cluster.browser()
    old = first_events(Stream(browser, first.url + post_url(), {"content": "Tell me everything"}), 2)
    reply_id, conversation = old.reply_id(), old.conversation()
    natural_end = old.started + OLD_TOKENS * OLD_TOKEN_DELAY

    time.sleep(max(0.0, old.started + 1.5 - time.perf_counter()))  # the lease has run out
    assert old.ended is None, "the first turn must still be alive when the retry comes"
    retry = Stream(
        cluster.tab(browser), second.url + post_url(conversation), {"content": "", "retry": str(reply_id)}
    ).join(10)
    assert retry.status == 200, retry.events
    assert f'hx-target="#msg-{reply_id}"' in retry.data()[0]  # the same reply, reset
    assert 'data-status="complete"' in retry.final() and FRESH in retry.final()

    old.join(10)
    # The old turn learnt that it lost (at once in the same process, at its next tick ~3 s after
    # it started in another), not at its own end (~5.6 s): it stopped calling the model.
    assert old.ended < natural_end - 1.0, (
        f"the old turn ran {old.ended - old.started:.1f} s, to its natural end; "
        f"it should have been told it lost the reply at the retry or at its next tick"
    )
    wait_until(lambda: fake_openai.closed_streams == 1, timeout=2, what="the old model stream closed")
    # Its tab ends on the reply as the retry writes it: finished, or a placeholder that polls it.
    last = old.final()
    assert "old old" not in last and f'id="msg-{reply_id}"' in last, last
    if FRESH not in last:
        poll = message_url(conversation, reply_id)
        assert 'data-status="streaming"' in last and f'hx-get="{poll}"' in last, last
        shown = cluster.tab(browser).get(first.url + poll, timeout=5).text
        assert FRESH in shown and 'data-status="complete"' in shown, shown

    def saved() -> dict:
        (_, reply) = messages(db_path)
        return reply

    reply = saved()
    assert (reply["content"], reply["status"], reply["attempt"]) == (FRESH, "complete", 2)
    wait_until(
        lambda: "took this reply over" in first.output(),
        timeout=2,
        what="the old turn's 'took this reply over' warning",
    )

    # after the old turn would have finished on its own, nothing of it was written
    time.sleep(max(0.0, natural_end + 0.5 - time.perf_counter()))
    reply = saved()
    assert (reply["content"], reply["status"], reply["attempt"]) == (FRESH, "complete", 2)
    assert reply["meta"]["finish_reason"] == "stop"
    assert len(fake_openai.requests) == 2
    assert_no_traceback(first, second)


# --- 2. two tabs of one browser ----------------------------------------------------------------


def test_a_second_tab_is_refused_while_a_reply_is_live_and_nothing_of_it_is_saved(
    cluster, db_path, fake_openai
):
    (server,) = cluster.start(1)  # workers and threads as shipped
    browser = cluster.browser()
    conversation = complete_exchange(server, browser, "Hello")
    url = server.url + post_url(conversation)

    fake_openai.will(Reply("slow " * 30, token_delay=0.05))  # ~1.5 s
    tab_a, tab_b = cluster.tab(browser), cluster.tab(browser)
    slow = first_events(Stream(tab_a, url, {"content": "tab A asks"}))

    refused = post(tab_b, url, "tab B asks")
    assert refused.status_code == 409, refused.text
    assert BUSY_TEXT in refused.text
    assert not refused.headers["Content-Type"].startswith("text/event-stream")
    assert slow.ended is None, "tab A's reply must still have been live when B posted"
    rows = messages(db_path)
    assert len(rows) == 4 and not any("tab B" in r["content"] for r in rows), rows
    assert rows[-1]["status"] in ("streaming", "stopping")

    slow.join(10)
    assert 'data-status="complete"' in slow.final()
    accepted = post(tab_b, url, "tab B asks")
    assert accepted.status_code == 200 and accepted.headers["Content-Type"].startswith("text/event-stream")
    assert 'data-status="complete"' in parse_sse(accepted.text)[-1]["data"]

    rows = messages(db_path)
    assert [r["content"] for r in rows if r["is_user"]] == ["Hello", "tab A asks", "tab B asks"]
    assert_alternating(rows)
    assert all(r["status"] == "complete" for r in rows)
    assert rows[3]["content"] == "slow " * 30
    assert_no_traceback(server)


ROUNDS = 6


def at_once(tabs: list[requests.Session], url: str, contents: list[str]) -> list[requests.Response]:
    """Each tab posts its message, all released at the same instant by a barrier."""
    barrier = threading.Barrier(len(tabs))
    results: list[requests.Response | BaseException | None] = [None] * len(tabs)

    def one(i: int) -> None:
        try:
            barrier.wait(timeout=5)
            results[i] = post(tabs[i], url, contents[i])
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(tabs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert all(isinstance(r, requests.Response) for r in results), results
    return [r for r in results if isinstance(r, requests.Response)]


def test_two_tabs_posting_at_the_same_instant_one_wins_one_is_refused(cluster, db_path, fake_openai):
    (server,) = cluster.start(1)  # two workers: the posts may land in different processes
    browser = cluster.browser()
    conversation = complete_exchange(server, browser, "Hello")
    url = server.url + post_url(conversation)
    fake_openai.default = Reply("Short answer.", first_token_delay=0.3)  # both posts overlap it
    tabs = [cluster.tab(browser), cluster.tab(browser)]
    for tab in tabs:  # warm the connections, so neither pays a connect at the barrier
        assert tab.get(server.url + f"/c/{conversation}", timeout=5).status_code == 200

    for round_ in range(ROUNDS):
        contents = [f"round {round_} from tab A", f"round {round_} from tab B"]
        responses = at_once(tabs, url, contents)
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200, 409], (round_, [(r.status_code, r.text[:200]) for r in responses])
        sent = list(zip(contents, responses, strict=True))
        winner = next(pair for pair in sent if pair[1].status_code == 200)
        loser = next(pair for pair in sent if pair[1].status_code == 409)
        assert 'data-status="complete"' in parse_sse(winner[1].text)[-1]["data"]
        assert BUSY_TEXT in loser[1].text

        rows = messages(db_path)
        assert_alternating(rows)
        assert len(rows) == 2 + 2 * (round_ + 1)
        assert rows[-2]["content"] == winner[0]
        assert not any(r["content"] == loser[0] for r in rows)
        assert all(r["status"] == "complete" for r in rows)
    assert len(fake_openai.requests) == 1 + ROUNDS  # the refused posts never reached the model
    assert_no_traceback(server)


# --- 3. stop across processes ------------------------------------------------------------------

LONG = " ".join(f"word{i}" for i in range(100)) + " and **done**."
TICK = 1.0


def test_stop_sent_to_another_process_ends_the_stream_within_a_tick(cluster, db_path, fake_openai):
    """Server B only marks the row "stopping"; server A's next tick reads it and ends the turn."""
    a, b = cluster.start(2, WEB_CONCURRENCY="1", CHATBOT_STREAM_TICK_SECONDS=str(TICK))
    fake_openai.will(Reply(LONG, token_delay=0.05))  # ~5 s on its own
    browser = cluster.browser()
    stream = first_events(Stream(browser, a.url + post_url(), {"content": "Go on and on"}), 2)
    reply_id, conversation = stream.reply_id(), stream.conversation()
    wait_until(lambda: stream.text_events(reply_id) >= 5, timeout=5, what="some text on server A")
    assert stream.ended is None, "the reply must still be streaming when Stop is sent"

    stop = cluster.tab(browser).post(
        b.url + message_url(conversation, reply_id, "stop"), headers=HX, timeout=5
    )
    stopped_at = time.perf_counter()
    assert stop.status_code == 204, stop.text

    stream.join(TICK + 3)
    assert stream.ended - stopped_at < TICK + 1.0, (
        f"the stream ended {stream.ended - stopped_at:.2f} s after the stop"
    )
    final = stream.final()
    assert 'data-status="interrupted"' in final and "Stopped." in final, final
    wait_until(lambda: fake_openai.closed_streams == 1, timeout=2, what="the model stream closed")

    (_, reply) = messages(db_path)
    assert reply["status"] == "interrupted" and reply["meta"]["finish_reason"] == "stopped", reply
    assert 0 < len(reply["content"]) < len(LONG) and LONG.startswith(reply["content"])
    assert len(tokens(reply["content"])) < len(tokens(LONG))
    assert_no_traceback(a, b)


def test_rate_limits_hold_across_processes_with_redis(cluster, db_path, fake_openai):
    """Two servers counting in one Redis: a browser past its limit is refused, whichever server
    it reaches."""
    import uuid

    from .conftest import IN_CI

    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            pass
    except OSError:
        if IN_CI:
            pytest.fail("Redis is required in CI (127.0.0.1:6379)")
        pytest.skip("Redis not reachable at 127.0.0.1:6379; rate limits across processes not tested")
    a, b = cluster.start(
        2,
        WEB_CONCURRENCY="1",
        REDIS_URL="redis://127.0.0.1:6379/0",
        CHATBOT_RATELIMIT_KEY_PREFIX=f"test-{uuid.uuid4().hex[:8]}",
        CHATBOT_RATELIMIT_MESSAGES_PER_OWNER="3/minute",
    )
    browser = cluster.browser()
    first = browser.post(a.url + post_url(), data={"content": "one"}, headers=HX, timeout=10)
    assert first.status_code == 200
    conversation = next(
        e["data"].rsplit("/", 1)[1] for e in parse_sse(first.text) if e["event"] == "chatbot:navigate"
    )
    statuses = []
    # (the first message counted against the address: the browser had no owner yet)
    for server, text in ((b, "two"), (a, "three"), (b, "four"), (a, "five")):
        response = browser.post(
            server.url + post_url(conversation), data={"content": text}, headers=HX, timeout=10
        )
        statuses.append(response.status_code)
        last = response
    assert statuses == [200, 200, 200, 429], statuses
    assert "sending messages very fast" in last.text and int(last.headers["Retry-After"]) > 0
    assert [row["content"] for row in messages(db_path) if row["is_user"]] == ["one", "two", "three", "four"]
    assert_no_traceback(a, b)
