"""What a whole turn costs next to a bare Flask turn; prints medians.

Both answer one message through the Flask test client (no socket in front of the app), against
the same zero-latency fake OpenAI server over real HTTP on 127.0.0.1, run in its own process (in
this one it would compete for the GIL and inflate both figures):

- bare: a minimal Flask view: sqlite3 insert, one typed ``chat.completions.create`` (not
  streamed, two messages), sqlite3 insert, an f-string of HTML;
- ours: the real app at zero history (the first message of a new conversation): server-side
  session, the conversation created, both messages saved, the model input built, streamed reply,
  templates rendered, reply saved with metadata; interleaved with the bare turns;
- ours at N messages: the same turn in a conversation that already holds N messages
  (the history sent is capped by CHATBOT_HISTORY_TOKENS);
- page at N messages: GET of that conversation's page.

    python bench/turn_overhead.py [--turns 200] [--long 5000]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import openai
from flask import Flask, request
from markupsafe import escape

REPLY = "Restart the phone, then check Settings > Battery for apps that use the most power."

HX = {"HX-Request": "true"}


def bare_app(db_path: str, base_url: str) -> Flask:
    app = Flask("bare")
    client = openai.OpenAI(api_key="sk-bench", base_url=base_url, max_retries=0)
    with sqlite3.connect(db_path) as con:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, content TEXT, is_user INTEGER)")

    @app.post("/turn")
    def turn():
        text = request.form["content"]
        con = sqlite3.connect(db_path)
        con.execute("INSERT INTO m (content, is_user) VALUES (?, 1)", (text,))
        con.commit()
        reply = client.chat.completions.create(
            model="gpt-4.1-nano",
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}],
        )
        answer = reply.choices[0].message.content
        con.execute("INSERT INTO m (content, is_user) VALUES (?, 0)", (answer,))
        con.commit()
        con.close()
        return f"<article>{escape(text)}</article><article>{escape(answer)}</article>"

    return app


LIMITS = ("RATELIMIT_MESSAGES_PER_OWNER", "RATELIMIT_MESSAGES_PER_IP", "RATELIMIT_NEW_SESSIONS_PER_IP")


def csrf_token(page: str) -> str:
    """The page's CSRF token (every POST carries it, as the page's own requests do)."""
    return page.split('name="csrf-token" id="csrf-token" content="', 1)[1].split('"', 1)[0]


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def fill(app, public_id: str, n: int) -> None:
    """Give a conversation n more messages straight in the database (as a long chat would have)."""
    from sqlalchemy import insert, select

    from chatbot.extensions import db
    from chatbot.models import Conversation, Message, utcnow

    with app.app_context():
        cid = db.session.execute(select(Conversation.id).where(Conversation.public_id == public_id)).scalar()
        now = utcnow()
        rows = [
            {
                "conversation_id": cid,
                "is_user": i % 2 == 0,
                "status": "complete",
                "timestamp": now,
                "content": f"Message {i}: my phone's battery drains fast when I use maps and the camera.",
                "meta": {},
            }
            for i in range(n)
        ]
        # each follows the one before (parent_id), as the app writes them and migration 0004
        # left older ones: not 5,000 first messages, each another's version
        parent = db.session.execute(
            select(Message.id).where(Message.conversation_id == cid).order_by(Message.id.desc()).limit(1)
        ).scalar()
        for row in rows:
            row["parent_id"] = parent
            parent = db.session.execute(insert(Message).values(**row).returning(Message.id)).scalar()
        db.session.commit()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--long", type=int, default=5000)
    args = parser.parse_args()

    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_openai", REPLY], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    fake_url = fake.stdout.readline().strip()
    tmp = tempfile.mkdtemp(prefix="chatbot-bench-")
    os.environ["CHATBOT_INSTANCE_PATH"] = tmp
    try:
        bare = bare_app(f"{tmp}/bare.sqlite3", fake_url).test_client()
        from chatbot import create_app

        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp}/ours.sqlite3",
                "PROVIDER": "openai",
                "OPENAI_API_KEY": "sk-bench",
                "OPENAI_BASE_URL": fake_url,
                "OPENAI_MAX_RETRIES": 0,
                # limits checked as in production, but set out of the bench's way
                **{key: "1000000/minute" for key in LIMITS},
                "MAX_CONVERSATIONS_PER_OWNER": 10**6,  # every turn here opens a conversation
                **({"RATELIMIT_ENABLED": False} if os.environ.get("BENCH_NO_LIMITS") else {}),
                **({"CSRF_ENABLED": False} if os.environ.get("BENCH_NO_CSRF") else {}),
            }
        )
        ours = app.test_client()

        token = csrf_token(ours.get("/").get_data(as_text=True))

        def our_turn(conversation=""):
            url = f"/c/{conversation}/messages" if conversation else "/c"
            r = ours.post(
                url,
                data={"content": "My battery drains fast"},
                headers={**HX, "X-CSRF-Token": token},
                buffered=True,
            )
            assert r.status_code == 200 and b'data-status=\\"complete\\"' not in r.data
            return r

        first = our_turn()
        public_id = first.get_data(as_text=True).split("data: /c/", 1)[1].split("\n", 1)[0]
        token = csrf_token(ours.get(f"/c/{public_id}").get_data(as_text=True))  # bound to the new owner
        for _ in range(20):  # warm up both
            bare.post("/turn", data={"content": "warm"})
            our_turn(public_id)

        # Interleaved, so that a noisy neighbour slows both alike. Ours at zero history: each turn
        # is the first message of a new conversation (the bare turn sends no history either).
        b, o = [], []
        for _ in range(args.turns):
            b += timed(lambda: bare.post("/turn", data={"content": "My battery drains fast"}), 1)
            o += timed(our_turn, 1)

        ours.post("/new")
        long_id = our_turn().get_data(as_text=True).split("data: /c/", 1)[1].split("\n", 1)[0]
        fill(app, long_id, args.long)
        lt = timed(lambda: our_turn(long_id), max(20, args.turns // 5))
        from chatbot.chat.context import model_input
        from chatbot.extensions import db
        from chatbot.models import Conversation

        with app.app_context():
            conv = db.session.execute(db.select(Conversation).filter_by(public_id=long_id)).scalar_one()
            sent = len(
                model_input(conv.id, 10**12, app.config["SYSTEM_PROMPT"], app.config["HISTORY_TOKENS"])
            )
        page = timed(lambda: ours.get(f"/c/{long_id}"), 10)

        print(f"turn cost, median of {args.turns} (Flask test client; zero-latency fake model over HTTP)")
        print(f"  bare Flask turn                    {statistics.median(b):6.2f} ms")
        print(
            f"  our turn, zero history             {statistics.median(o):6.2f} ms   "
            f"({statistics.median(o) / statistics.median(b):.2f}x bare)"
        )
        print(
            f"  our turn at {args.long:,} messages        {statistics.median(lt):6.2f} ms   "
            f"({sent} messages sent within the history budget)"
        )
        print(f"  page GET at {args.long:,} messages        {statistics.median(page):6.2f} ms")
    finally:
        fake.kill()


if __name__ == "__main__":
    main()
