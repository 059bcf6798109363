"""Deploys: a gunicorn reload (HUP) or a stop (TERM, as a rolling restart sends) lets the replies
being written finish, within the graceful timeout, while new requests go to the new workers (or
the other servers). Each test runs the shipped configuration on this run's stack.
"""

from __future__ import annotations

import os
import signal

import requests

from .fake_openai import Reply
from .helpers import HX, message_url, post_url, wait_until
from .servers import Stream, assert_no_traceback, first_events

ANSWER = " ".join(f"step{i}" for i in range(60)) + " and **done**."


def workers_of(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(child) for child in f.read().split()}


def test_a_reload_lets_a_running_reply_finish_while_new_workers_serve(cluster, fake_openai):
    (server,) = cluster.start(1)
    old_workers = workers_of(server.proc.pid)
    fake_openai.will(Reply(ANSWER, token_delay=0.05))  # ~3 s
    browser = cluster.browser()
    stream = first_events(Stream(browser, server.url + post_url(), {"content": "Walk me through it"}), 2)
    reply_id = stream.reply_id()
    wait_until(lambda: stream.text_events(reply_id) >= 2, timeout=5, what="the reply to start")

    os.kill(server.proc.pid, signal.SIGHUP)
    # a new worker takes new requests while the old one finishes the reply
    wait_until(lambda: workers_of(server.proc.pid) - old_workers, timeout=10, what="a new worker to start")
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
    assert stream.ended is None, "the reply must still be streaming after the reload"

    stream.join(15)
    final = stream.final()
    assert 'data-status="complete"' in final and "<strong>done</strong>" in final, final
    wait_until(lambda: not workers_of(server.proc.pid) & old_workers, timeout=10, what="the old worker to go")
    page = browser.get(server.url + f"/c/{stream.conversation()}", timeout=5).text
    assert "step59 and <strong>done</strong>" in page  # saved whole, and served by the new worker
    assert_no_traceback(server)


def test_a_stopped_server_finishes_its_replies_and_another_carries_on(cluster, fake_openai):
    """A rolling restart: TERM to the old server (which stops taking new connections), a new
    server on the same database; the reply in flight on the old one completes and is saved."""
    (old,) = cluster.start(1)
    fake_openai.will(Reply(ANSWER, token_delay=0.05), Reply("Anything else?"))
    browser = cluster.browser()
    stream = first_events(Stream(browser, old.url + post_url(), {"content": "Walk me through it"}), 2)
    reply_id = stream.reply_id()
    wait_until(lambda: stream.text_events(reply_id) >= 2, timeout=5, what="the reply to start")

    old.proc.send_signal(signal.SIGTERM)
    (new,) = cluster.start(1)
    stream.join(15)
    assert 'data-status="complete"' in stream.final()
    assert old.proc.wait(timeout=10) == 0  # it left once its reply was done, not at the timeout

    conversation = stream.conversation()
    follow_up = Stream(browser, new.url + post_url(conversation), {"content": "Thanks"}).join(10)
    assert 'data-status="complete"' in follow_up.final()
    page = browser.get(new.url + f"/c/{conversation}", timeout=5).text
    assert "step59 and <strong>done</strong>" in page and "Anything else?" in page
    assert_no_traceback(old, new)


def leave_once_it_streams(browser: requests.Session, url: str) -> None:
    """Post a message like the page does, read until the reply's text flows, close the tab."""
    with browser.post(url, data={"content": "Walk me through it"}, headers=HX, stream=True, timeout=10) as r:
        next(line for line in r.iter_lines(decode_unicode=True) if "-tail" in line and "step" in line)


def test_a_stopped_server_first_finishes_the_replies_whose_pages_left(cluster, fake_openai):
    (server,) = cluster.start(1)
    fake_openai.will(Reply(ANSWER, token_delay=0.05))  # ~3 s
    browser = cluster.browser()
    leave_once_it_streams(browser, server.url + post_url())
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=20) == 0
    assert "waiting up to 20 s for 1 replies whose pages left" in server.output()
    (new,) = cluster.start(1)
    page = browser.get(new.url + "/", timeout=5).text
    assert 'data-status="complete"' in page and "step59 and <strong>done</strong>" in page
    assert len(fake_openai.requests) == 1
    assert_no_traceback(server, new)


def test_a_shutdown_saves_a_departed_reply_that_runs_too_long_as_interrupted(cluster, fake_openai):
    (server,) = cluster.start(1, GUNICORN_DEPARTED_REPLY_SECONDS="0.5")
    fake_openai.will(Reply(ANSWER * 4, token_delay=0.05))  # ~12 s
    browser = cluster.browser()
    leave_once_it_streams(browser, server.url + post_url())
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=10) == 0
    assert "1 replies were cut short by the shutdown" in server.output()
    (new,) = cluster.start(1)
    page = browser.get(new.url + "/", timeout=5).text
    assert 'data-status="interrupted"' in page and "step0" in page and 'data-action="retry"' in page
    assert_no_traceback(server, new)


def test_a_reply_cut_by_a_hard_kill_reads_interrupted_and_retries_on_the_next_server(cluster, fake_openai):
    (old,) = cluster.start(1)  # (the lease: 30 s)
    fake_openai.will(Reply(ANSWER, token_delay=0.05), Reply("Here it is again, whole."))
    browser = cluster.browser()
    stream = first_events(Stream(browser, old.url + post_url(), {"content": "Walk me through it"}), 2)
    reply_id, conversation = stream.reply_id(), stream.conversation()
    # a second of text: its ticks (every 0.5 s) have saved some of it
    wait_until(lambda: stream.text_events(reply_id) >= 20, timeout=5, what="a second of the reply")

    old.kill()  # SIGKILL, master and worker: nothing gets to save anything
    (new,) = cluster.start(1)
    # at once: its writer on this machine is gone (the lease would take 30 s to tell)
    html = browser.get(new.url + message_url(conversation, reply_id), timeout=5).text
    assert 'data-status="interrupted"' in html, html
    assert "step0" in html and "Retry" in html and "hx-trigger" not in html
    again = Stream(browser, new.url + post_url(conversation), {"content": "", "retry": str(reply_id)})
    again.join(10)
    assert 'data-status="complete"' in again.final() and "Here it is again, whole." in again.final()
    assert_no_traceback(new)
