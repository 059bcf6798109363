"""What following a reply costs the server: a page opened (or reconnected) while a reply is being
written polls that message's address (``GET /c/<id>/messages/<n>``) every second until it ends.

Measures one poll through the Flask test client (server-side session, ownership check, the row,
the template) for a live reply of 0, 500 and 2,000 words, and prints the CPU a follower costs per
second of following. A resumable event stream instead would hold a greenlet and a connection per
follower and need a cross-process channel (the text lives in the writer's process between ticks;
the database has it only every STREAM_TICK_SECONDS), for text no fresher than the tick's.

    python bench/follow.py [--polls 500]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import update

from chatbot import create_app
from chatbot.extensions import db
from chatbot.models import Message

HX = {"HX-Request": "true"}


def words(n: int) -> str:
    body = " ".join(f"word{i}" for i in range(n))
    return f"## Steps\n\n{body}\n\n- one\n- two\n" if n else ""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--polls", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CHATBOT_INSTANCE_PATH"] = tmp
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp}/follow.sqlite3",
                "SECRET_KEY": "bench-secret-key-0123456789abcdef-0123456789",
                "CSRF_ENABLED": False,
                "RATELIMIT_ENABLED": False,
                "OPENAI_API_KEY": None,
                "OFFLINE_WORD_DELAY": 0,
                "LOG_LEVEL": "WARNING",
            }
        )
        client = app.test_client()
        client.post("/c", data={"content": "My battery drains fast"})
        with app.app_context():
            reply = db.session.scalars(db.select(Message).where(Message.is_user.is_(False))).one()
            conversation = reply.conversation_id
            from chatbot.models import Conversation

            public_id = db.session.get(Conversation, conversation).public_id
        url = f"/c/{public_id}/messages/{reply.id}"
        print(f"{'reply words':>12} {'poll median':>12} {'p95':>8} {'CPU per follower':>18}")
        for n in (0, 500, 2000):
            with app.app_context():
                db.session.execute(
                    update(Message)
                    .where(Message.id == reply.id)
                    .values(status="streaming", content=words(n), lease_until=time.time() + 3600)
                )
                db.session.commit()
            assert 'data-status="streaming"' in client.get(url, headers=HX).get_data(as_text=True)
            times = []
            for _ in range(args.polls):
                started = time.process_time()
                client.get(url, headers=HX)
                times.append(time.process_time() - started)
            times.sort()
            median, p95 = statistics.median(times), times[int(len(times) * 0.95)]
            print(f"{n:>12} {median * 1000:>10.2f}ms {p95 * 1000:>6.2f}ms {median * 100:>15.2f}% core")


if __name__ == "__main__":
    main()
