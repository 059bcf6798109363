"""Reading a provider in the background, and batching its text by time.

``Pump`` reads the model in a helper thread, so a silent model never blocks the response (which
must keep writing to notice a departed client). ``Batcher`` decides what the reader gets and
when: a pure function of the text that arrives and of a clock, unit-tested with a fake one.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..llm import ReplyStream

END = object()  # the provider's stream ended (normally or not)
CANCELLED = object()  # the turn was cancelled: stop waiting for the provider


class Readers:
    """Daemon threads that read providers, kept for reuse: starting a thread for every reply
    costs more than the turn's own database work (the start waits for the new thread to run).
    A reader busy with a reply is named ``model-reply``; an idle one waits ``idle_seconds`` for
    the next reply, then ends."""

    BUSY, IDLE = "model-reply", "model-reply (idle)"

    def __init__(self, idle_seconds: float = 60.0):
        self.idle_seconds = idle_seconds
        self._tasks: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, task: Callable[[], None]) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._tasks.put(task)
                return
        threading.Thread(target=self._work, args=(task,), name=self.BUSY, daemon=True).start()

    def _work(self, task: Callable[[], None] | None) -> None:
        me = threading.current_thread()
        while task is not None:
            me.name = self.BUSY
            task()
            me.name = self.IDLE
            with self._lock:
                self._idle += 1
            try:
                task = self._tasks.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._lock:  # a task handed over just as we gave up waiting is still ours
                    try:
                        task = self._tasks.get_nowait()
                    except queue.Empty:
                        self._idle -= 1
                        task = None


_readers: tuple[int, Readers] | None = None


def readers() -> Readers:
    """This process's readers, made on first use: never inherited across a fork (gunicorn's master
    imports the app), and made after a gevent worker has patched threading and queues."""
    global _readers
    pid = os.getpid()
    if _readers is None or _readers[0] != pid:
        _readers = (pid, Readers())
    return _readers[1]


class Pump:
    def __init__(self, reply: ReplyStream, pool: Readers | None = None):
        self.reply = reply
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.ended = False  # the reader has seen END
        self._finished = threading.Event()  # the reading task has returned
        (pool or readers()).submit(self._run)

    def _run(self) -> None:
        try:
            for event in self.reply:
                self.queue.put(event)
        except BaseException as exc:  # noqa: BLE001 - handed to the reading side
            self.queue.put(exc)
        finally:
            self.queue.put(END)
            self._finished.set()

    def get(self, timeout: float) -> Any:
        """The next event, or None if there was none within ``timeout`` seconds."""
        try:
            event = self.queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if event is END:
            self.ended = True
        return event

    def cancel(self) -> None:
        """Cancel the model call at whatever stage it is, and wake the reader now."""
        self.reply.close()
        self.queue.put(CANCELLED)

    def done(self) -> bool:
        """The provider's stream has ended (its reading task has returned, or is returning)."""
        return self.ended or self._finished.is_set()

    def join(self, timeout: float) -> bool:
        """Wait for the reading task to return; False if it is still running."""
        return self._finished.wait(timeout)


class Heartbeat:
    """Nothing new yet: write something small, so a departed client is noticed."""

    def __repr__(self) -> str:
        return "HEARTBEAT"


HEARTBEAT = Heartbeat()


def batch_interval(live: int, least: float, most: float, per_second: float) -> float:
    """How often each of ``live`` replies in a process sends a batch: every ``least`` seconds while
    they are few, and so that all of them together send about ``per_second`` batches a second when
    they are many (every ``most`` seconds at the slowest)."""
    return min(most, max(least, live / per_second if per_second > 0 else least))


@dataclass
class Batcher:
    """Text goes out at most every ``flush_every`` seconds (the first piece at once), and a
    heartbeat after ``keepalive`` seconds with nothing to send."""

    flush_every: float
    keepalive: float
    _buf: list[str] = field(default_factory=list)
    _last_flush: float = float("-inf")

    def wait(self, now: float) -> float:
        """How long to wait for the next piece of text before calling ``idle``."""
        if self._buf:
            return max(0.0, self._last_flush + self.flush_every - now)
        return self.keepalive

    def add(self, text: str, now: float) -> str | None:
        """Take a piece of text; returns a batch when one is due."""
        self._buf.append(text)
        if now - self._last_flush >= self.flush_every:
            return self._take(now)
        return None

    def idle(self, now: float) -> str | Heartbeat:
        """Nothing arrived in time: the waiting text, or a heartbeat."""
        return self._take(now) if self._buf else HEARTBEAT

    def rest(self) -> str | None:
        """Whatever is left at the end."""
        return self._take(float("-inf")) if self._buf else None

    def _take(self, now: float) -> str:
        batch = "".join(self._buf)
        self._buf.clear()
        self._last_flush = now
        return batch
