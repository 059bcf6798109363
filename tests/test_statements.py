"""How many SQL statements a turn costs, and how many a streaming reply costs per second.

The figures are the design's budget: a regression that adds a query to every turn, or polls the
database from each stream, fails here. (Timings are in bench/, not in tests.)
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import requests
from sqlalchemy import event

from chatbot.extensions import db
from chatbot.knowledge import retrieve

from .fake_openai import Reply
from .helpers import HX, conversation_id_from, send


class StatementLog:
    """Every statement the app's engine runs while installed, by kind (first word)."""

    def __init__(self, app):
        with app.app_context():
            self.engine = db.engine
        self.statements: list[tuple[float, str]] = []
        self.lock = threading.Lock()

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, parameters, context, executemany):
        with self.lock:
            self.statements.append((time.perf_counter(), statement))

    def kinds(self, since: float = 0.0, until: float = float("inf")) -> Counter:
        return Counter(s.split(None, 1)[0].upper() for t, s in self.statements if since <= t <= until)


def test_a_turn_costs_a_fixed_handful_of_statements(app, client, fake_openai, monkeypatch):
    monkeypatch.setattr(retrieve, "RECHECK_SECONDS", 3600.0)  # (the index's state: once a second)
    cid = conversation_id_from(send(client, "My phone won't charge"))
    with StatementLog(app) as log:
        send(client, "I tried another cable", cid)
    kinds = log.kinds()
    # session read; the conversation (ownership); begin: touch + user message + reply;
    # the history; the shop's articles (one search); the final save: reply + conversation.
    # Commits are not statements here.
    assert kinds == Counter({"SELECT": 4, "UPDATE": 3, "INSERT": 2}), kinds
    assert sum(kinds.values()) == 9


def test_a_streaming_reply_costs_one_tick_per_interval(app_factory, openai_config, fake_openai):
    from .conftest import LiveServer

    app = app_factory(**openai_config, STREAM_TICK_SECONDS=0.5)
    server = LiveServer(app)
    fake_openai.will(Reply(" ".join(f"w{i}" for i in range(40)), token_delay=0.05))  # ~2 s
    try:
        with StatementLog(app) as log, requests.Session() as s:
            response = s.post(
                f"{server.url}/c", data={"content": "long"}, headers=HX, stream=True, timeout=10
            )
            lines = response.iter_lines(decode_unicode=True)
            next(line for line in lines if 'hx-target="#msg-2-tail"' in line)
            first_text = time.perf_counter()
            last_text = first_text
            for line in lines:
                if 'hx-target="#msg-2-tail"' in line:
                    last_text = time.perf_counter()
    finally:
        server.stop()
    seconds = last_text - first_text
    assert seconds > 1.5
    during = log.kinds(first_text, last_text)
    # Only ticks while the text streams: one UPDATE … RETURNING per interval, nothing else (the
    # final save's two UPDATEs may land just before the last text reaches us).
    assert set(during) == {"UPDATE"}, during
    ticks = [s for t, s in log.statements if first_text <= t <= last_text and "RETURNING" in s.upper()]
    assert during["UPDATE"] - len(ticks) <= 2, during
    per_second = len(ticks) / seconds
    assert 2.5 >= per_second >= 1.0, (len(ticks), seconds)
