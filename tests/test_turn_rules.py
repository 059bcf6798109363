"""The turn's rules, tested directly on ``turns``, ``replies``, ``live`` and ``pump``.

No HTTP and no model server: a scripted provider plays the model (text, silences that last until
the test says so, failures), the Batcher runs on a fake clock, and the database is the test's
temporary SQLite file. Most apps here tick only when a test calls ``LiveReplies.tick`` itself
(``STREAM_TICK_SECONDS`` is a minute), so every tick and every cancellation is the test's own.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select, text

from chatbot.chat import replies, turns
from chatbot.chat.live import LiveReplies, live_replies
from chatbot.chat.pump import HEARTBEAT, Batcher, Heartbeat, batch_interval
from chatbot.chat.turns import Delta, Finished, Settings, TurnRefused
from chatbot.config import DEFAULT_SYSTEM_PROMPT
from chatbot.extensions import db
from chatbot.llm import Finish, ProviderError, Text, Usage
from chatbot.models import Conversation, Message

from .helpers import all_messages, wait_until

OWNER = "owner-token-of-the-tests"
QUESTION = "My phone won't charge"
NO_BACKGROUND_TICKS = {"STREAM_TICK_SECONDS": 60.0}
UNSAVED = "This reply could not be saved. Please try again."


# --- a scripted provider -------------------------------------------------------------------


@dataclass(frozen=True)
class Wait:
    """Script step: stay silent until ``event`` is set (or the reply is closed)."""

    event: threading.Event


@dataclass(frozen=True)
class Raise:
    """Script step: raise this exception from the reply's iterator."""

    exc: BaseException


@dataclass(frozen=True)
class Pause:
    """Script step: real-time silence (ended at once by ``close()``)."""

    seconds: float


@dataclass(frozen=True)
class Call:
    """Script step: run ``fn`` in the reading thread (e.g. move the fake clock)."""

    fn: Callable[[], None]


class ScriptedReply:
    """One streamed reply: yields the script's events; ``close()`` ends it at once, from any
    thread, like a real provider's."""

    def __init__(self, script: list[Any]):
        self.script = script
        self.paces: list[float] = []  # each pace the turn asked for
        self._closed = threading.Event()

    def pace(self, seconds: float) -> None:
        self.paces.append(seconds)

    def at_once(self) -> None:
        self.paces.append(0.0)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        self._closed.set()  # releases any Wait or Pause

    def __iter__(self) -> Iterator[Any]:
        for step in self.script:
            if self.closed:
                return
            if isinstance(step, Wait):
                while not step.event.wait(0.002):
                    if self.closed:
                        return
            elif isinstance(step, Pause):
                if self._closed.wait(step.seconds):
                    return
            elif isinstance(step, Raise):
                raise step.exc
            elif isinstance(step, Call):
                step.fn()
            else:
                yield step


class ScriptedProvider:
    name = "scripted"
    model = "scripted-model-7"
    label = "Scripted model"

    def __init__(self, *script: Any, stream_fails: BaseException | None = None):
        self.script = list(script)
        self.stream_fails = stream_fails
        self.received: list[list[dict[str, str]]] = []  # the messages of each stream() call
        self.replies: list[ScriptedReply] = []

    def stream(self, messages: list[dict[str, str]], briefing: Any = None) -> ScriptedReply:
        self.received.append([dict(m) for m in messages])
        if self.stream_fails is not None:
            raise self.stream_fails
        reply = ScriptedReply(self.script)
        self.replies.append(reply)
        return reply

    @property
    def closed(self) -> bool:
        return bool(self.replies) and self.replies[-1].closed


class FakeClock:
    def __init__(self, now: float = 100.0):
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> Callable[[], None]:
        def step() -> None:
            with self._lock:
                self.now += seconds

        return step


# --- helpers -------------------------------------------------------------------------------


class Env:
    """An app's turn machinery, used inside its app context."""

    def __init__(self, app):
        self.app = app
        self.settings = Settings.from_config(app.config)
        self.live = live_replies(app)

    def begin(self, content: str = QUESTION, conversation: Conversation | None = None) -> turns.Turn:
        return turns.begin_turn(OWNER, conversation, content, self.settings)

    def conversation(self, turn: turns.Turn) -> Conversation:
        found = db.session.get(Conversation, turn.conversation.id)
        assert found is not None
        return found

    def run(self, turn: turns.Turn, provider: ScriptedProvider, clock=time.perf_counter):
        return turns.run(turn, provider, self.settings, self.live, clock=clock)

    @contextmanager
    def running(self, turn: turns.Turn, provider: ScriptedProvider, clock=time.perf_counter):
        """A turn's generator, closed (in this app context) whatever happens in the test."""
        gen = self.run(turn, provider, clock)
        try:
            yield gen
        finally:
            gen.close()


@pytest.fixture
def make_app(app_factory):
    """An app on this test's SQLite file (offline provider; the turns get a scripted one)."""
    built = []

    def build(**config):
        app = app_factory(**{"PROVIDER": "offline", **NO_BACKGROUND_TICKS, **config})
        built.append(app)
        return app

    yield build
    for app in built:
        live_replies(app).close()


def row(app, message_id: int) -> Message:
    """The message as the database has it now (a fresh session, nothing cached)."""
    (found,) = [m for m in all_messages(app) if m.id == message_id]
    return found


def expire_lease(message_id: int) -> None:
    """The turn writing this reply died long ago (as far as the database can tell)."""
    db.session.execute(text("UPDATE messages SET lease_until = 0 WHERE id = :id"), {"id": message_id})
    db.session.commit()


def read_until(gen, want: str, deltas: list[str], timeout: float = 5.0) -> None:
    """Pull Deltas (heartbeats are skipped) until their text is ``want``."""
    deadline = time.monotonic() + timeout
    while "".join(deltas) != want:
        assert time.monotonic() < deadline, f"only {''.join(deltas)!r} arrived, wanted {want!r}"
        item = next(gen)
        assert not isinstance(item, Finished), f"the turn ended before {want!r}: {item}"
        if isinstance(item, Delta):
            deltas.append(item.text)
            assert want.startswith("".join(deltas)), f"unexpected text {''.join(deltas)!r}"


def drain(gen) -> tuple[list[str], Finished]:
    """Everything left: the Deltas' texts and the final ``Finished`` (which must be last)."""
    items = list(gen)
    assert items and isinstance(items[-1], Finished), items
    assert not any(isinstance(i, Finished) for i in items[:-1])
    return [i.text for i in items if isinstance(i, Delta)], items[-1]


class WriteLock:
    """SQLite's write lock, held by another connection (another process, a backup, a migration)."""

    def __init__(self, app):
        with app.app_context():
            path = db.engine.url.database
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=5, check_same_thread=False)
        self.held = False
        self._mutex = threading.Lock()

    def acquire(self) -> WriteLock:
        self.conn.execute("BEGIN IMMEDIATE")
        self.held = True
        return self

    def release(self) -> None:
        with self._mutex:
            if self.held:
                self.conn.execute("ROLLBACK")
                self.held = False

    def close(self) -> None:
        self.release()
        self.conn.close()

    def __enter__(self) -> WriteLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- Batcher, on a fake clock --------------------------------------------------------------


def test_batcher_sends_the_first_text_at_once_then_at_most_every_flush_interval():
    b = Batcher(flush_every=1.0, keepalive=5.0)
    assert b.wait(100.0) == 5.0  # nothing held: wait a keepalive for text
    assert b.add("Hel", 100.0) == "Hel"  # the first piece goes out at once
    assert b.add("lo", 100.2) is None  # held: only 0.2 s since the last flush
    assert b.wait(100.2) == pytest.approx(0.8)  # ... until a full second has passed
    assert b.add(", ", 100.7) is None
    assert b.wait(100.7) == pytest.approx(0.3)
    assert b.wait(103.0) == 0.0  # overdue: don't wait at all
    assert b.idle(101.0) == "lo, "  # the held text, in order, once
    assert b.wait(101.0) == 5.0
    assert b.idle(106.0) is HEARTBEAT  # nothing held: a heartbeat
    assert isinstance(b.idle(106.0), Heartbeat)
    assert b.add("wor", 101.5) is None  # a heartbeat is not a flush: 0.5 s since 101.0
    assert b.add("ld", 102.0) == "world"  # exactly flush_every later: due
    assert b.rest() is None  # nothing left
    assert b.add("!", 102.1) is None
    assert b.rest() == "!"
    assert b.rest() is None  # taken once


def test_batcher_loses_and_duplicates_nothing_over_a_long_random_sequence():
    rng = random.Random(1234)
    flush, keepalive = 0.05, 0.25
    b = Batcher(flush, keepalive)
    pieces = ["".join(rng.choice("ab cd\néü✓") for _ in range(rng.randint(1, 6))) for _ in range(3000)]
    batches: list[str] = []
    flushed_at: list[float] = []
    heartbeats = 0
    now = 0.0

    def sent(batch: str, at: float) -> None:
        assert batch, "an empty batch was sent"
        if flushed_at:
            assert at - flushed_at[-1] >= flush - 1e-9, "text went out before flush_every passed"
        batches.append(batch)
        flushed_at.append(at)

    for i, piece in enumerate(pieces):
        arrives = now + rng.choice([0.0, 0.0, 0.001, 0.01, 0.02, 0.049, 0.05, 0.07, 0.3, 0.6])
        while True:  # the turn's loop: wait for the next piece, or go idle when the wait is over
            deadline = now + b.wait(now)
            if arrives <= deadline:
                break
            now = deadline
            out = b.idle(now)
            if isinstance(out, Heartbeat):
                heartbeats += 1
                assert "".join(batches) == "".join(pieces[:i]), "a heartbeat while text was held"
            else:
                sent(out, now)
        now = arrives
        out = b.add(piece, now)
        if i == 0:
            assert out == piece  # the first text at once
        if out is not None:
            sent(out, now)
    if (rest := b.rest()) is not None:
        batches.append(rest)

    assert "".join(batches) == "".join(pieces)
    assert b.rest() is None
    assert heartbeats > 0 and len(batches) < len(pieces)  # both paths were taken


def test_batches_come_every_flush_interval_while_few_stream_and_grow_with_many():
    least, most, per_second = 0.05, 0.5, 2000
    assert batch_interval(1, least, most, per_second) == least
    assert batch_interval(100, least, most, per_second) == least  # 100 x 20 a second: within
    assert batch_interval(500, least, most, per_second) == pytest.approx(0.25)  # 500 x 4 = 2000
    assert batch_interval(5000, least, most, per_second) == most  # never slower than this
    assert batch_interval(500, least, most, 0) == least  # no budget set: the fixed interval


# --- a turn, start to end ------------------------------------------------------------------


def test_with_many_replies_streaming_in_the_process_a_reply_comes_in_bigger_batches(make_app):
    """400 other live replies here: this one's text is sent (and its model read) every 0.2 s, not
    every 0.05 s, so the process does the same work for every reply however many there are."""
    app = make_app(STREAM_FLUSH_SECONDS=0.05, STREAM_FLUSH_MAX_SECONDS=0.5, STREAM_BATCHES_PER_SECOND=2000)
    clock = FakeClock(100.0)
    provider = ScriptedProvider(
        Text("a"),
        Call(clock.advance(0.1)),
        Text("b"),  # 0.1 s after "a": held (it would go out with 0.05 s batches)
        Call(clock.advance(0.1)),
        Text("c"),  # 0.2 s after "a": due
        Finish("stop"),
    )
    with app.app_context():
        env = Env(app)
        others = [replies.Lease(10_000 + i, 1, 0) for i in range(399)]
        for lease in others:
            env.live.hold(lease)
        try:
            turn = env.begin()
            with env.running(turn, provider, clock) as gen:
                deltas, finished = drain(gen)
        finally:
            for lease in others:
                env.live.release(lease)
    assert deltas == ["a", "bc"]
    assert provider.replies[0].paces[0] == pytest.approx(0.2)  # 400 / 2000 a second
    assert finished.reply.content == "abc"


def test_run_streams_the_text_and_saves_the_reply_with_its_metadata(make_app):
    app = make_app()
    clock = FakeClock(100.0)
    go_on = threading.Event()
    provider = ScriptedProvider(
        Call(clock.advance(1.5)),
        Text("Hello"),
        Wait(go_on),
        Call(clock.advance(0.5)),
        Text(", world"),
        Text("!"),
        Usage(12, 3, 15),
        Finish("stop"),
    )
    with app.app_context():
        env = Env(app)
        turn = env.begin()
        with env.running(turn, provider, clock) as gen:
            deltas: list[str] = []
            read_until(gen, "Hello", deltas)  # the first text goes out at once
            go_on.set()
            more, finished = drain(gen)
    deltas += more

    (received,) = provider.received
    # the system prompt, the shop's articles for the question (knowledge/), the question
    assert [m["role"] for m in received] == ["system", "system", "user"]
    assert received[0] == {"role": "system", "content": DEFAULT_SYSTEM_PROMPT}
    assert "/help/phone-wont-charge" in received[1]["content"]
    assert received[2] == {"role": "user", "content": QUESTION}
    assert "".join(deltas) == "Hello, world!"
    assert deltas[0] == "Hello"
    reply = finished.reply
    assert finished.lost is False
    assert (reply.id, reply.content, reply.status, reply.is_user) == (
        turn.reply.id,
        "Hello, world!",
        "complete",
        False,
    )
    retrieved = reply.meta.pop("retrieved")  # what the shop's articles gave (test_grounding.py)
    assert retrieved[0]["slug"] == "phone-wont-charge" and retrieved[0]["passages"]
    assert reply.meta == {
        "provider": "scripted",
        "model": "scripted-model-7",
        "finish_reason": "stop",
        "lang": "en",  # (told from the text: the page marks the reply's language)
        "latency_ms": 2000.0,
        "ttft_ms": 1500.0,
        "prompt_tokens": 12,
        "completion_tokens": 3,
        "total_tokens": 15,
        "intent": "question",
        "ask_outcome": True,  # (an answer to a question: "Did this solve it?")
    }
    reply.meta["retrieved"] = retrieved
    saved = row(app, turn.reply.id)
    assert (saved.content, saved.status, saved.meta) == (reply.content, "complete", reply.meta)
    assert saved.lease_until is None and saved.attempt == 1
    assert replies.notice(saved) is None


def test_a_turn_ends_live_only_once_saved_and_its_lease_is_released(make_app):
    app = make_app()
    with app.app_context():
        env = Env(app)
        turn = env.begin()
        assert row(app, turn.reply.id).status == "streaming"
        assert not row(app, turn.reply.id).lease_expired
        deltas, finished = drain(env.run(turn, ScriptedProvider(Text("Fine."), Finish("length"))))
    assert deltas == ["Fine."]
    assert finished.reply.meta["finish_reason"] == "length"
    assert replies.notice(finished.reply) == "The reply reached its length limit and was cut short."
    assert env.live.cancel(turn.reply.id, replies.STOPPED) is False  # released: nothing to stop


# --- stop ----------------------------------------------------------------------------------


def test_stop_in_this_process_cancels_the_model_and_keeps_the_text(make_app):
    app = make_app()
    never = threading.Event()
    provider = ScriptedProvider(
        Text("Partial "), Text("answer"), Wait(never), Text(" never sent"), Finish("stop")
    )
    with app.app_context():
        env = Env(app)
        turn = env.begin()
        with env.running(turn, provider) as gen:
            deltas: list[str] = []
            read_until(gen, "Partial answer", deltas)
            assert not provider.closed
            assert env.live.cancel(turn.reply.id, replies.STOPPED) is True
            assert provider.closed  # the model call ends at once
            more, finished = drain(gen)

    assert "".join(deltas + more) == "Partial answer"
    assert (finished.reply.status, finished.reply.content) == ("interrupted", "Partial answer")
    assert finished.reply.meta["finish_reason"] == "stopped"
    assert "error" not in finished.reply.meta
    saved = row(app, turn.reply.id)
    assert (saved.status, saved.content, saved.meta["finish_reason"]) == (
        "interrupted",
        "Partial answer",
        "stopped",
    )
    assert saved.lease_until is None
    assert replies.notice(saved) == "Stopped."


def test_stop_asked_elsewhere_is_read_by_the_tick_which_cancels_the_turn(make_app):
    app = make_app()
    never = threading.Event()
    provider = ScriptedProvider(Text("Try a "), Text("new cable"), Wait(never), Finish("stop"))
    with app.app_context():
        env = Env(app)
        turn = env.begin()
        with env.running(turn, provider) as gen:
            deltas: list[str] = []
            read_until(gen, "Try a new cable", deltas)
            assert replies.request_stop(turn.conversation.id, turn.reply.id) is True
            assert row(app, turn.reply.id).status == "stopping"
            assert turn.lease.ended is None and not provider.closed  # nobody has told the turn yet

            env.live.tick([turn.lease])  # what the background ticker does

            assert turn.lease.ended == "stopped"
            assert provider.closed
            ticked = row(app, turn.reply.id)  # the tick saved the text so far, still live
            assert (ticked.status, ticked.content) == ("stopping", "Try a new cable")
            more, finished = drain(gen)
        assert replies.request_stop(turn.conversation.id, turn.reply.id) is False  # no longer live

    assert "".join(deltas + more) == "Try a new cable"
    assert (finished.reply.status, finished.reply.meta["finish_reason"]) == ("interrupted", "stopped")
    saved = row(app, turn.reply.id)
    assert (saved.status, saved.content, saved.meta["finish_reason"]) == (
        "interrupted",
        "Try a new cable",
        "stopped",
    )


def test_a_departed_client_leaves_the_reply_interrupted_with_its_text(make_app):
    app = make_app()
    never = threading.Event()
    provider = ScriptedProvider(Text("First step: "), Wait(never), Text("second step"), Finish("stop"))
    with app.app_context():
        env = Env(app)
        turn = env.begin()
        gen = env.run(turn, provider)
        deltas: list[str] = []
        read_until(gen, "First step: ", deltas)
        gen.close()  # what the server does when the client's connection is gone

        assert provider.closed
        assert turn.lease.ended == "client_disconnected"
        saved = row(app, turn.reply.id)
    assert (saved.status, saved.content) == ("interrupted", "First step: ")
    assert saved.meta["finish_reason"] == "client_disconnected"
    assert saved.meta["provider"] == "scripted" and saved.lease_until is None
    assert replies.notice(saved) == "Interrupted: the page was closed before the reply finished."


# --- the lease and the fence ---------------------------------------------------------------


def test_a_retry_fences_out_the_turn_whose_lease_ran_out(make_app, caplog):
    app = make_app()
    old_waits, new_waits = threading.Event(), threading.Event()
    old_provider = ScriptedProvider(Text("Old attempt"), Wait(old_waits), Text(" late"), Finish("stop"))
    new_provider = ScriptedProvider(Text("New attempt"), Wait(new_waits), Text(" done."), Finish("stop"))
    with app.app_context():
        env = Env(app)
        old = env.begin()
        reply_id = old.reply.id
        with env.running(old, old_provider) as old_gen:
            read_until(old_gen, "Old attempt", [])
            env.live.tick([old.lease])  # the old turn saved its text so far while it owned the reply
            assert row(app, reply_id).content == "Old attempt"

            expire_lease(reply_id)  # ... then its ticks stopped reaching the database
            assert row(app, reply_id).lease_expired
            new = turns.begin_retry(env.conversation(old), reply_id, env.settings)
            assert (new.lease.reply_id, new.lease.attempt, old.lease.attempt) == (reply_id, 2, 1)
            assert new.user_message is None
            claimed = row(app, reply_id)
            assert (claimed.status, claimed.content, claimed.attempt) == ("streaming", "", 2)

            # the retry runs in another worker: its own registry and ticker
            elsewhere = LiveReplies(app)
            new_gen = turns.run(new, new_provider, env.settings, elsewhere)
            try:
                read_until(new_gen, "New attempt", [])
                elsewhere.tick([new.lease])
                assert row(app, reply_id).content == "New attempt"

                # (a) the old lease's tick matches no row; the ticker cancels the old turn as lost
                with db.engine.begin() as conn:
                    assert replies.tick(conn, old.lease, env.settings.lease_seconds) is None
                env.live.tick([old.lease])  # this worker's ticker
                assert old.lease.ended == "lost"
                assert new.lease.ended is None  # the new attempt runs on
                assert old_provider.closed and not new_provider.closed

                # (b) the old turn ends, says so in the log, and writes nothing
                old_deltas, old_finished = drain(old_gen)
                assert "another attempt took this reply over" in caplog.text
                assert "late" not in "".join(old_deltas)
                assert old_finished.lost is True
                assert old_finished.reply.id == reply_id
                now = row(app, reply_id)
                assert (now.status, now.content, now.attempt) == ("streaming", "New attempt", 2)
                assert not now.lease_expired

                # (c) a final save with the old lease is refused by the fence
                assert (
                    replies.finish(old.lease, "complete", {"finish_reason": "stop"}, give_up_after=1.0)
                    is replies.Saved.LOST
                )
                now = row(app, reply_id)
                assert (now.status, now.content, now.attempt) == ("streaming", "New attempt", 2)

                new_waits.set()
                _, new_finished = drain(new_gen)
            finally:
                new_gen.close()
                elsewhere.close()

    # the retry asked the model the same question, without the abandoned attempt's text
    assert new_provider.received == old_provider.received
    assert new_finished.lost is False
    assert (new_finished.reply.status, new_finished.reply.content) == ("complete", "New attempt done.")
    saved = row(app, reply_id)
    assert (saved.status, saved.content, saved.attempt) == ("complete", "New attempt done.", 2)


def test_a_retry_in_the_same_process_ends_the_turn_it_took_the_reply_from(make_app):
    """A turn must learn that a retry took its reply over also when the retry runs in this same
    process. The registry is keyed by reply id, so the retry's lease replaces the old one and the
    ticker never ticks the old lease again: unless something else cancels it, the old turn keeps
    its model call (and its client's stream) going until the model ends."""
    app = make_app(STREAM_TICK_SECONDS=0.3)  # the first background tick comes after the setup
    old_waits, new_waits = threading.Event(), threading.Event()
    old_provider = ScriptedProvider(Text("Old attempt"), Wait(old_waits), Finish("stop"))
    new_provider = ScriptedProvider(Text("New attempt"), Wait(new_waits), Finish("stop"))
    with app.app_context():
        env = Env(app)
        old = env.begin()
        try:
            with env.running(old, old_provider) as old_gen:
                read_until(old_gen, "Old attempt", [])
                # expire and claim in one transaction: no tick can renew the lease in between
                db.session.execute(
                    text("UPDATE messages SET lease_until = 0 WHERE id = :id"), {"id": old.reply.id}
                )
                new = turns.begin_retry(env.conversation(old), old.reply.id, env.settings)
                with env.running(new, new_provider) as new_gen:
                    read_until(new_gen, "New attempt", [])
                    wait_until(
                        lambda: old.lease.ended is not None,
                        timeout=1.5,
                        what="the background ticker to cancel the fenced-out turn",
                    )
                    assert old.lease.ended == "lost"
                    assert old_provider.closed
                    assert new.lease.ended is None and not new_provider.closed
        finally:
            old_waits.set()
            new_waits.set()


def test_a_reply_whose_lease_still_runs_cannot_be_retried(make_app):
    app = make_app()
    with app.app_context():
        env = Env(app)
        turn = env.begin()
        with pytest.raises(TurnRefused) as refused:
            turns.begin_retry(env.conversation(turn), turn.reply.id, env.settings)
        assert refused.value.status == 409
        live = row(app, turn.reply.id)
        assert (live.status, live.attempt, live.lease_expired) == ("streaming", 1, False)

        # nor can the user's message, or a complete reply
        with pytest.raises(TurnRefused) as refused:
            turns.begin_retry(env.conversation(turn), turn.user_message.id, env.settings)
        assert refused.value.status == 409
        assert replies.finish(turn.lease, "complete", {}, give_up_after=1.0) is replies.Saved.SAVED
        with pytest.raises(TurnRefused) as refused:
            turns.begin_retry(env.conversation(turn), turn.reply.id, env.settings)
        assert refused.value.status == 409
        assert row(app, turn.reply.id).attempt == 1


def test_sweep_marks_only_expired_live_replies_interrupted(make_app):
    app = make_app(MAX_LIVE_REPLIES_PER_OWNER=4)  # four live at once, from one owner
    with app.app_context():
        env = Env(app)
        dead = env.begin("first")  # its turn died
        alive = env.begin("second")  # another worker still writes it
        stopping_dead = env.begin("third")  # a stop was asked, then its turn died
        done = env.begin("fourth")
        assert (
            replies.finish(done.lease, "complete", {"finish_reason": "stop"}, give_up_after=1.0)
            is replies.Saved.SAVED
        )
        assert replies.request_stop(stopping_dead.conversation.id, stopping_dead.reply.id)
        dead.lease.parts.append("half an ans")
        with db.engine.begin() as conn:
            replies.tick(conn, dead.lease, env.settings.lease_seconds)
        expire_lease(dead.reply.id)
        expire_lease(stopping_dead.reply.id)
        expire_lease(done.reply.id)  # not live: a stale lease_until means nothing

        assert row(app, dead.reply.id).lease_expired
        assert replies.shown_status(row(app, dead.reply.id)) == "interrupted"  # before the sweep
        assert replies.sweep(alive.conversation.id) == 0  # only that conversation
        assert replies.sweep() == 2
        assert replies.sweep() == 0

    swept = row(app, dead.reply.id)
    assert (swept.status, swept.content, swept.lease_until) == ("interrupted", "half an ans", None)
    assert swept.meta == {"finish_reason": "server_restarted"}
    assert replies.notice(swept) == "Interrupted: the reply stopped before it finished."
    assert row(app, stopping_dead.reply.id).status == "interrupted"
    untouched = row(app, alive.reply.id)
    assert (untouched.status, untouched.lease_expired) == ("streaming", False)
    assert replies.shown_status(untouched) == "streaming"
    assert row(app, done.reply.id).status == "complete"


# --- one live reply per conversation -------------------------------------------------------


@pytest.mark.parametrize("first_status", ["streaming", "stopping"])
def test_a_second_turn_is_refused_while_the_first_reply_is_live(make_app, first_status):
    app = make_app()
    with app.app_context():
        env = Env(app)
        first = env.begin("First question")
        if first_status == "stopping":
            assert replies.request_stop(first.conversation.id, first.reply.id)
        conversation = env.conversation(first)
        before_messages = [(m.id, m.status, m.content) for m in all_messages(app)]
        before_updated = conversation.updated_at

        with pytest.raises(TurnRefused) as refused:
            env.begin("Second question", conversation)
        assert refused.value.status == 409
        assert refused.value.message == turns.BUSY

        assert [(m.id, m.status, m.content) for m in all_messages(app)] == before_messages
        db.session.rollback()
        assert env.conversation(first).updated_at == before_updated  # not even touched


def test_a_second_turn_sweeps_a_first_reply_whose_turn_died(make_app):
    app = make_app()
    with app.app_context():
        env = Env(app)
        first = env.begin("First question")
        expire_lease(first.reply.id)
        second = env.begin("Second question", env.conversation(first))

    assert second.conversation.id == first.conversation.id
    assert second.reply.id > first.reply.id
    stale = row(app, first.reply.id)
    assert (stale.status, stale.meta) == ("interrupted", {"finish_reason": "server_restarted"})
    assert [(m.is_user, m.content, m.status) for m in all_messages(app)] == [
        (True, "First question", "complete"),
        (False, "", "interrupted"),
        (True, "Second question", "complete"),
        (False, "", "streaming"),
    ]


# --- failures ------------------------------------------------------------------------------


def test_a_provider_that_fails_to_start_ends_the_turn_as_an_internal_error(make_app, caplog):
    app = make_app()
    provider = ScriptedProvider(stream_fails=RuntimeError("a bug in the provider"))
    with app.app_context():
        env = Env(app)
        turn = env.begin()
        deltas, finished = drain(env.run(turn, provider))

    assert len(provider.received) == 1
    assert deltas == []
    reply = finished.reply
    assert (reply.status, reply.content) == ("error", "")
    assert reply.meta["error_kind"] == "internal"
    assert reply.meta["error"] == "Something went wrong on our side. Please try again in a moment."
    assert reply.meta["finish_reason"] == "error"
    saved = row(app, turn.reply.id)
    assert (saved.status, saved.meta) == ("error", reply.meta)
    assert replies.notice(saved) == "Something went wrong on our side. Please try again in a moment."
    assert "turn failed" in caplog.text and "a bug in the provider" in caplog.text


def test_an_unexpected_exception_mid_reply_keeps_the_text_as_incomplete(make_app, caplog):
    app = make_app()
    provider = ScriptedProvider(
        Text("Hold the power "), Text("button"), Raise(RuntimeError("socket closed")), Text(" never")
    )
    with app.app_context():
        env = Env(app)
        turn = env.begin()
        deltas, finished = drain(env.run(turn, provider))

    assert "".join(deltas) == "Hold the power button"
    reply = finished.reply
    assert (reply.status, reply.content) == ("interrupted", "Hold the power button")
    assert reply.meta["finish_reason"] == "incomplete"
    assert reply.meta["error_kind"] == "unexpected"
    saved = row(app, turn.reply.id)
    assert (saved.status, saved.content, saved.meta) == ("interrupted", "Hold the power button", reply.meta)
    assert (
        replies.notice(saved) == "Incomplete: Something went wrong on our side. Please try again in a moment."
    )
    assert "assistant backend failed" in caplog.text


def test_a_provider_error_before_any_text_is_an_error_with_its_reason(make_app):
    app = make_app()
    reason = "The assistant is busy right now. Please try again in a minute."
    provider = ScriptedProvider(Raise(ProviderError(reason, "rate_limited")), Text("never"))
    with app.app_context():
        env = Env(app)
        turn = env.begin()
        deltas, finished = drain(env.run(turn, provider))

    assert deltas == []
    reply = finished.reply
    assert (reply.status, reply.content) == ("error", "")
    assert (reply.meta["error"], reply.meta["error_kind"], reply.meta["finish_reason"]) == (
        reason,
        "rate_limited",
        "error",
    )
    saved = row(app, turn.reply.id)
    assert (saved.status, saved.meta) == ("error", reply.meta)
    assert replies.notice(saved) == reason


def test_a_provider_error_after_some_text_keeps_it_with_the_reason(make_app):
    app = make_app()
    reason = "The connection to the assistant broke off."
    provider = ScriptedProvider(Text("Open Settings"), Raise(ProviderError(reason, "cut")))
    with app.app_context():
        env = Env(app)
        turn = env.begin()
        deltas, finished = drain(env.run(turn, provider))
    assert "".join(deltas) == "Open Settings"
    saved = row(app, turn.reply.id)
    assert (saved.status, saved.content, saved.meta["finish_reason"]) == (
        "interrupted",
        "Open Settings",
        "incomplete",
    )
    assert saved.meta["error_kind"] == "cut"
    assert replies.notice(saved) == f"Incomplete: {reason}"
    assert finished.reply.meta == saved.meta


# --- a busy database -----------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_a_reply_that_cannot_be_saved_says_so_and_is_not_shown_complete(make_app, caplog):
    app = make_app(SQLITE_BUSY_SECONDS=0.05, REPLY_SAVE_SECONDS=0.3)
    provider = ScriptedProvider(Text("All "), Text("done."), Finish("stop"))
    with app.app_context():
        env = Env(app)
        turn = env.begin()
        with env.running(turn, provider) as gen:
            read_until(gen, "All done.", [])
            with WriteLock(app):
                started = time.monotonic()
                rest, finished = drain(gen)  # the final save, against the lock the whole time
                took = time.monotonic() - started

    assert rest == []
    assert 0.1 <= took < 2.0  # it retried for (up to) REPLY_SAVE_SECONDS, then gave up
    assert "retrying" in caplog.text
    reply = finished.reply
    assert reply.status == "error"
    assert reply.content == "All done."
    assert reply.meta["finish_reason"] == "unsaved"
    assert replies.notice(reply) == UNSAVED
    saved = row(app, turn.reply.id)
    assert saved.status == "streaming" and not saved.lease_expired  # still live, as the lock left it
    assert replies.shown_status(saved) != "complete"
    assert "could not save reply" in caplog.text


@pytest.mark.sqlite_only
def test_a_save_that_waits_out_a_short_lock_is_saved_complete(make_app):
    app = make_app(SQLITE_BUSY_SECONDS=0.05, REPLY_SAVE_SECONDS=3.0)
    provider = ScriptedProvider(Text("All "), Text("done."), Finish("stop"))
    with app.app_context():
        env = Env(app)
        turn = env.begin()
        with env.running(turn, provider) as gen:
            read_until(gen, "All done.", [])
            lock = WriteLock(app).acquire()
            timer = threading.Timer(0.5, lock.release)
            timer.start()
            try:
                started = time.monotonic()
                _, finished = drain(gen)
                took = time.monotonic() - started
            finally:
                timer.cancel()
                lock.close()

    assert 0.45 <= took < 2.5
    assert (finished.reply.status, finished.reply.content) == ("complete", "All done.")
    assert finished.reply.meta["finish_reason"] == "stop"
    saved = row(app, turn.reply.id)
    assert (saved.status, saved.content, saved.lease_until) == ("complete", "All done.", None)


@pytest.mark.sqlite_only
def test_a_tick_on_a_busy_database_logs_and_returns(make_app, caplog):
    app = make_app(SQLITE_BUSY_SECONDS=0.05)
    with app.app_context():
        env = Env(app)
        turn = env.begin()
        turn.lease.parts.append("so far")
        with WriteLock(app):
            started = time.monotonic()
            env.live.tick([turn.lease])  # must not raise
            took = time.monotonic() - started
        assert took < 1.0
        assert "could not tick 1 live replies" in caplog.text
        assert [r.levelno for r in caplog.records if "could not tick" in r.getMessage()] == [logging.WARNING]
        assert turn.lease.ended is None  # a busy database is not a lost fence
        assert row(app, turn.reply.id).content == ""  # nothing was written

        env.live.tick([turn.lease])  # the lock is gone: the next tick saves the text so far
        assert turn.lease.ended is None
        assert row(app, turn.reply.id).content == "so far"


@pytest.mark.sqlite_only
def test_text_keeps_flowing_while_the_ticker_waits_on_a_busy_database(make_app, caplog):
    app = make_app(STREAM_TICK_SECONDS=0.05, SQLITE_BUSY_SECONDS=0.5)
    go = threading.Event()
    words = [f"w{i} " for i in range(50)]
    script: list[Any] = [Text("start "), Wait(go)]
    for word in words:
        script += [Pause(0.02), Text(word)]
    provider = ScriptedProvider(*script, Finish("stop"))
    lock_seconds = 0.9
    finished = None
    with app.app_context():
        env = Env(app)
        turn = env.begin()
        with env.running(turn, provider) as gen:
            deltas: list[str] = []
            read_until(gen, "start ", deltas)
            lock = WriteLock(app).acquire()
            try:
                locked_at = time.monotonic()
                arrivals = []
                go.set()
                for item in gen:
                    if isinstance(item, Delta):
                        deltas.append(item.text)
                        arrivals.append(time.monotonic())
                    elif isinstance(item, Finished):
                        finished = item
                    if lock.held and time.monotonic() - locked_at >= lock_seconds:
                        lock.release()
            finally:
                lock.close()

    blocked_ticks = [r for r in caplog.records if "could not tick" in r.getMessage()]
    assert blocked_ticks, "the ticker was never blocked by the lock: the test proves nothing"
    during = [t for t in arrivals if t - locked_at <= lock_seconds]
    gaps = [b - a for a, b in zip([locked_at, *during], during, strict=False)]
    assert len(during) >= 5, f"only {len(during)} deltas while the lock was held"
    assert max(gaps) < 0.3, f"text stalled for {max(gaps):.2f} s while the ticker was blocked"
    assert "".join(deltas) == "start " + "".join(words)
    assert finished is not None and finished.reply.status == "complete"
    assert row(app, turn.reply.id).content == "start " + "".join(words)


def test_an_owner_has_at_most_a_few_replies_live_at_once(make_app):
    app = make_app(MAX_LIVE_REPLIES_PER_OWNER=2)
    with app.app_context():
        env = Env(app)
        first, _ = env.begin("one"), env.begin("two")
        before = db.session.execute(select(func.count()).select_from(Message)).scalar_one()
        with pytest.raises(TurnRefused) as refused:
            env.begin("three")
        assert refused.value.status == 429 and "2 replies being written" in refused.value.message
        assert db.session.execute(select(func.count()).select_from(Message)).scalar_one() == before
        assert db.session.execute(select(func.count()).select_from(Conversation)).scalar_one() == 2
        other = turns.begin_turn("someone-else", None, "mine", env.settings)  # others are not held up
        assert other.reply.status == "streaming"
        assert replies.finish(first.lease, "complete", {}, give_up_after=1.0) is replies.Saved.SAVED
        assert env.begin("three").reply.status == "streaming"  # one ended: room again


def test_a_retry_counts_against_the_live_replies_cap_too(make_app):
    app = make_app(MAX_LIVE_REPLIES_PER_OWNER=2)
    with app.app_context():
        env = Env(app)
        failed = env.begin("this one fails")
        assert replies.finish(failed.lease, "error", {"finish_reason": "error"}, give_up_after=1.0) is (
            replies.Saved.SAVED
        )
        env.begin("one"), env.begin("two")  # two live now
        with pytest.raises(TurnRefused) as refused:
            turns.begin_retry(env.conversation(failed), failed.reply.id, env.settings)
        assert refused.value.status == 429
        assert row(app, failed.reply.id).status == "error"  # untouched, still retryable


@pytest.mark.sqlite_only
def test_a_turn_whose_conversation_was_deleted_never_writes_a_row_that_got_its_id_back(make_app):
    """SQLite gives a deleted row's id to the next insert: the fence names the turn itself (its
    token), not only the reply's id and attempt, so the old turn can't write the new reply."""
    from chatbot.chat.conversations import delete_conversations

    app = make_app()
    with app.app_context():
        env = Env(app)
        first = env.begin("the first customer's question")
        first.lease.parts.append("the first customer's private answer")
        delete_conversations([first.conversation.id])
        second = env.begin("another customer's question")
        assert (second.reply.id, second.lease.attempt) == (first.reply.id, first.lease.attempt)
        # the first turn ends, ticks and saves as if its reply were still there
        with db.engine.begin() as conn:
            assert replies.tick(conn, first.lease, 30.0) is None
        assert replies.finish(first.lease, "complete", {}, give_up_after=1.0) is replies.Saved.LOST
    reply = row(app, second.reply.id)
    assert reply.status == "streaming" and reply.content == ""
    assert reply.conversation_id == second.conversation.id
