"""This process's live replies: a stop reaches them at once, one background writer ticks them
all, and a reply whose page went away is carried on to its end.

Every ``STREAM_TICK_SECONDS`` the ticker runs one transaction that ticks each live reply of this
process (``replies.tick``: text so far + lease renewal + status, one statement each). Because the
ticks run here and not on the response's path, a busy database delays a tick, never the text a
reader sees. A tick that reads "stopping" (a stop asked in another process) or finds the fence
lost (a retry took the reply over) cancels its turn. The thread runs only while replies are live.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask

from ..extensions import db
from ..models import Status
from . import replies
from .replies import Lease

log = logging.getLogger(__name__)


class LiveReplies:
    def __init__(self, app: Flask):
        self.app = app
        self._leases: dict[int, Lease] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._carried: set[threading.Thread] = set()

    def hold(self, lease: Lease) -> None:
        """Tick this reply from now on (until ``release``)."""
        with self._lock:
            previous = self._leases.get(lease.reply_id)
            self._leases[lease.reply_id] = lease
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="reply-ticker", daemon=True)
                self._thread.start()
        if previous is not None and previous is not lease:  # a retry here took over its reply
            previous.cancel(replies.LOST)

    def release(self, lease: Lease) -> None:
        with self._lock:
            if self._leases.get(lease.reply_id) is lease:
                del self._leases[lease.reply_id]

    def count(self) -> int:
        """How many replies this process is writing now."""
        return len(self._leases)

    def cancel(self, reply_id: int, reason: str) -> bool:
        """End a turn of this process early (Stop, a departed client); False if none is here."""
        lease = self._leases.get(reply_id)
        return lease.cancel(reason) if lease is not None else False

    def carry_on(self, turn: Iterator[Any]) -> None:
        """The page that asked for a reply went away (closed, reloaded, its network lost): the
        turn goes on without it, in the background, to its end and its one save; whoever opens
        the conversation follows it there. Stop still ends it; the reply-token limit bounds it."""

        def work() -> None:
            try:
                with self.app.app_context():
                    for _ in turn:  # (text and heartbeats for nobody: the turn saves the reply)
                        pass
            except Exception:
                log.exception("a reply carried on after its page left failed")
            finally:
                with self._lock:
                    self._carried.discard(threading.current_thread())

        thread = threading.Thread(target=work, name="reply-carried-on", daemon=True)
        with self._lock:
            self._carried.add(thread)
        thread.start()

    def carried(self) -> int:
        """How many replies this process is finishing for pages that went away."""
        return len(self._carried)

    def finish_up(self, wait_seconds: float, save_seconds: float = 5.0) -> int:
        """At shutdown: give the replies carried on for departed pages ``wait_seconds`` to end,
        then end the rest (saved interrupted, with their text so far) and wait for their saves.
        Returns how many had to be cut short."""
        deadline = time.monotonic() + wait_seconds
        while self._carried and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            left, leases = list(self._carried), list(self._leases.values())
        if not left:
            return 0
        for lease in leases:
            lease.cancel(replies.SHUT_DOWN)
        for thread in left:
            thread.join(save_seconds)
        return len(left)

    def _run(self) -> None:
        failed = False
        while True:
            # after a failed tick (a busy database), try again at once: be first in line when
            # the lock frees, so a live reply's lease never runs out for want of a turn to renew it
            self._stop.wait(0.05 if failed else float(self.app.config["STREAM_TICK_SECONDS"]))
            with self._lock:
                if not self._leases or self._stop.is_set():
                    self._thread = None
                    return
                leases = [
                    lease for lease in self._leases.values() if lease.ended is None and not lease.saving
                ]
            failed = bool(leases) and not self.tick(leases)

    def tick(self, leases: list[Lease]) -> bool:
        """One tick for each of these replies, in one transaction; False if the database refused."""
        seconds = float(self.app.config["STREAM_LEASE_SECONDS"])
        try:
            with self.app.app_context(), db.engine.begin() as conn:
                results = [(lease, replies.tick(conn, lease, seconds)) for lease in leases]
        except Exception as exc:  # noqa: BLE001 - busy or unreachable: the next tick tries again
            log.warning("could not tick %d live replies: %s", len(leases), exc)
            return False
        for lease, status in results:
            if status is None and not lease.saving:  # (a turn that is saving has ended its fence)
                lease.cancel(replies.LOST)  # the turn logs it as it ends
            elif status == Status.STOPPING:
                lease.cancel(replies.STOPPED)
        return True

    def close(self) -> None:
        """Stop ticking (tests, shutdown); live turns keep running until they end."""
        self._stop.set()


def init_app(app: Flask) -> None:
    app.extensions["chatbot.live"] = LiveReplies(app)


def live_replies(app: Flask) -> LiveReplies:
    live: LiveReplies = app.extensions["chatbot.live"]
    return live
