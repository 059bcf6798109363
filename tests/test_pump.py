"""The reader threads: reused, never a queue in front of a reply, and gone when idle."""

from __future__ import annotations

import threading

from chatbot.chat.pump import Readers

from .helpers import wait_until


def test_a_reader_is_reused_for_the_next_reply():
    readers = Readers(idle_seconds=5)
    ran_on: list[threading.Thread] = []
    for _ in range(3):
        done = threading.Event()
        readers.submit(lambda done=done: (ran_on.append(threading.current_thread()), done.set()))
        assert done.wait(2)
        wait_until(lambda: ran_on[-1].name == Readers.IDLE, what="the reader to be idle again")
    assert len(set(ran_on)) == 1


def test_replies_at_once_each_get_their_own_reader_at_once():
    readers = Readers(idle_seconds=5)
    release = threading.Event()
    started = threading.Barrier(21, timeout=5)  # 20 readers and this test: none waits for another
    for _ in range(20):
        readers.submit(lambda: (started.wait(), release.wait(5)))
    started.wait()  # all 20 are running together
    release.set()


def test_an_idle_reader_ends_after_its_idle_time():
    readers = Readers(idle_seconds=0.1)
    ran_on: list[threading.Thread] = []
    done = threading.Event()
    readers.submit(lambda: (ran_on.append(threading.current_thread()), done.set()))
    assert done.wait(2)
    ran_on[0].join(2)
    assert not ran_on[0].is_alive()
    again = threading.Event()
    readers.submit(again.set)  # a new one starts when needed
    assert again.wait(2)
