"""What the admin area's conversation list costs at 100,000 conversations.

``--conversations`` conversations (a question and a reply each, from the bundled dataset; the
reply's metadata with a model, a language, sometimes a rating or an error; a rare word in a
handful), spread over a year. Then, through the Flask test client as a signed-in admin (the whole
request: guard, query, the page's summaries, template), median and p95 of:

- the first page, the next one, and a page deep in the list (its cursor near the oldest rows:
  keyset pages cost the same wherever they are);
- each filter, a few together, and the search across all conversations.

    python bench/admin_list.py [--conversations 100000] [--runs 20]
    python bench/admin_list.py --database postgresql+psycopg://postgres@127.0.0.1/empty_db
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, select

from chatbot import create_app
from chatbot.admin.conversations import encode_cursor
from chatbot.chat.conversations import title_from
from chatbot.extensions import db
from chatbot.models import Conversation, Message, utcnow

PASSWORD = "bench password long enough"
RARE = "zanzibar"
MODELS = ("gpt-4.1-nano-2025-04-14", "ft:gpt-4.1-nano:shop::bench")
OUTCOMES = (None, "resolved", "unresolved", "escalated", "abandoned")
BATCH = 2000
ROW = re.compile(r'href="/admin/conversations/[A-Za-z0-9_-]+"')
CASES = [
    ("no filter", {}),
    ("outcome=resolved", {"outcome": "resolved"}),
    ("outcome=open", {"outcome": "open"}),
    ("rating=down", {"rating": "down"}),
    ("model (fine-tuned)", {"model": MODELS[1]}),
    ("error=1", {"error": "1"}),
    ("lang=es", {"lang": "es"}),
    ("one month", {"since": "{month}-01", "until": "{month}-28"}),
    ("down+es+error", {"rating": "down", "lang": "es", "error": "1"}),
    ("q=battery", {"q": "battery"}),
    ("q=bat (prefix)", {"q": "bat"}),
    ("q=rare word", {"q": RARE}),
    ("q=battery+down", {"q": "battery", "rating": "down"}),
    ("q=no match", {"q": "xylophone"}),
]


def dataset() -> list[tuple[str, str]]:
    pairs = []
    for line in (ROOT / "chatbot" / "data" / "phone_support.jsonl").read_text().splitlines():
        said = [m for m in json.loads(line)["messages"] if m["role"] != "system"]
        pairs += [
            (q["content"], a["content"])
            for q, a in zip(said[::2], said[1::2], strict=False)
            if q["role"] == "user" and a["role"] == "assistant"
        ]
    return pairs


def fill(n: int, rng: random.Random) -> float:
    pairs = dataset()
    start = utcnow() - timedelta(days=365)
    step = timedelta(days=365) / n
    started = time.perf_counter()
    conn = db.session.connection()
    for first in range(0, n, BATCH):
        conversations, messages = [], []
        for i in range(first, min(n, first + BATCH)):
            question, answer = rng.choice(pairs)
            if i % 9_973 == 5:
                question += f" (ref. {RARE})"
            at = start + i * step
            cid = i + 1
            conversations.append(
                {
                    "id": cid,
                    "public_id": secrets.token_urlsafe(9),
                    "owner": f"owner-{rng.randrange(n // 3 + 1)}",
                    "title": title_from(question),
                    "created_at": at,
                    "updated_at": at + timedelta(minutes=5),
                    "outcome": rng.choice(OUTCOMES),
                }
            )
            meta: dict[str, object] = {
                "provider": "openai",
                "model": MODELS[rng.random() < 0.1],
                "lang": "es" if rng.random() < 0.3 else "en",
                "total_tokens": rng.randint(100, 900),
                "latency_ms": rng.uniform(300, 4000),
            }
            roll = rng.random()
            if roll < 0.08:
                meta["feedback"] = {"rating": "down"}
            elif roll < 0.3:
                meta["feedback"] = {"rating": "up"}
            status = "complete"
            if rng.random() < 0.02:
                status, meta["error"] = "error", "The assistant could not answer."
            base = dict(status="complete", attempt=0, shown=True, timestamp=at)
            said = {"conversation_id": cid, "content": question, "is_user": True, "metadata": {}}
            messages.append({**base, **said, "id": 2 * cid - 1, "parent_id": None})
            said = {"conversation_id": cid, "content": answer, "is_user": False, "metadata": meta}
            messages.append({**base, **said, "id": 2 * cid, "status": status, "parent_id": 2 * cid - 1})
        conn.execute(insert(Conversation.__table__), conversations)
        conn.execute(insert(Message.__table__), messages)
        db.session.commit()
        conn = db.session.connection()
    if conn.dialect.name == "postgresql":
        for table in ("conversations", "messages"):
            conn.exec_driver_sql(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))")
        conn.exec_driver_sql("ANALYZE")
        db.session.commit()
    return time.perf_counter() - started


def timed(fn, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return times


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.95) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--database", help="an empty database (default: a new SQLite file)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CHATBOT_INSTANCE_PATH"] = tmp
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": args.database or f"sqlite:///{tmp}/admin.sqlite3",
                "SECRET_KEY": "b" * 40,
                "LOG_LEVEL": "WARNING",
                "RATELIMIT_ENABLED": False,
                "CSRF_ENABLED": False,
            }
        )
        with app.app_context():
            if db.session.execute(select(Conversation.id).limit(1)).first() is not None:
                raise SystemExit("the database is not empty")
            seconds = fill(args.conversations, random.Random(20))
            dialect = db.engine.dialect.name
            deep = db.session.execute(
                select(Conversation.updated_at, Conversation.id)
                .order_by(Conversation.updated_at, Conversation.id)
                .offset(args.conversations // 50)
                .limit(1)
            ).one()
            month = db.session.execute(
                select(Conversation.created_at).where(Conversation.id == 1)
            ).scalar_one()
        where = "SQLite" if dialect == "sqlite" else (args.database or "").split("@")[-1]
        print(f"{where}: {args.conversations:,} conversations (2 messages each) written in {seconds:.1f} s")
        made = app.test_cli_runner().invoke(
            args=["admin", "create-user", "bench", "--password-stdin"], input=PASSWORD + "\n"
        )
        assert made.exit_code == 0, made.output
        client = app.test_client()
        assert client.post("/admin/login", data={"name": "bench", "password": PASSWORD}).status_code == 303
        month_text = (month + timedelta(days=40)).strftime("%Y-%m")

        print(f"\nGET /admin/conversations as a signed-in admin, {args.runs} runs each (ms)")
        print(f"  {'case':<22} {'median':>8} {'p95':>8} {'rows':>5} {'next':>5}")

        def run(name: str, query: dict[str, str]) -> None:
            body = ""

            def get() -> None:
                nonlocal body
                response = client.get("/admin/conversations", query_string=query)
                assert response.status_code == 200, response.status_code
                body = response.get_data(as_text=True)

            timed(get, 2)
            times = timed(get, args.runs)
            more = "yes" if 'rel="next"' in body else "no"
            rows = len(ROW.findall(body))
            print(f"  {name:<22} {statistics.median(times):8.2f} {p95(times):8.2f} {rows:>5} {more:>5}")

        run("first page", {})
        first = client.get("/admin/conversations").get_data(as_text=True)
        after = re.search(r"after=([0-9-]+)", first)
        if after:
            run("second page", {"after": after.group(1)})
        run("deep page (oldest 2%)", {"after": encode_cursor(*deep)})
        for name, query in CASES[1:]:
            run(name, {k: v.format(month=month_text) for k, v in query.items()})


if __name__ == "__main__":
    main()
