"""What a search costs with thousands of conversations, and what keeping the index costs writes.

One owner with ``--conversations`` conversations of ``--messages`` messages each (real questions
and answers from the bundled dataset, English and Spanish; a rare word in a handful), beside
``--others`` other owners with one such conversation each. Then:

- search: ``GET /conversations/search?q=…`` through the Flask test client as that owner (the
  whole request: session, query, snippets, template), median and p95 for a few queries;
- writes, with the search's triggers (SQLite) or index (PostgreSQL) and without them: a streaming
  reply's tick (``replies.tick``, its text growing to ~2,000 words), the final save of that reply
  (``replies.finish``: the one write that indexes it), and a customer's message (the insert a turn
  makes).

    python bench/search.py [--conversations 5000] [--messages 20] [--others 2000] [--runs 100]
    python bench/search.py --database postgresql+psycopg://postgres@127.0.0.1/empty_db
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, select, text, update

from chatbot import create_app
from chatbot.chat import replies
from chatbot.chat.begin import _NEW_MESSAGE
from chatbot.chat.conversations import title_from
from chatbot.extensions import db
from chatbot.models import (
    POSTGRESQL_SEARCH_DDL,
    SQLITE_SEARCH_DDL,
    Conversation,
    Message,
    utcnow,
)

HX = {"HX-Request": "true"}
RARE = "zanzibar"
QUERIES = [
    ("common word", "battery"),
    ("common, Spanish", "pantalla"),
    ("accents folded", "bateria"),
    ("two words", "battery drain"),
    ("prefix, 3 letters", "bat"),
    ("prefix, 5 letters", "setti"),
    ("rare word", RARE),
    ("no match", "xylophone"),
]


def dataset() -> list[tuple[str, str]]:
    """(question, answer) pairs from the bundled conversations."""
    pairs = []
    for line in (ROOT / "chatbot" / "data" / "phone_support.jsonl").read_text().splitlines():
        said = [m for m in json.loads(line)["messages"] if m["role"] != "system"]
        pairs += [
            (q["content"], a["content"])
            for q, a in zip(said[::2], said[1::2], strict=False)
            if q["role"] == "user" and a["role"] == "assistant"
        ]
    return pairs


def fill(owners: list[tuple[str, int]], per: int, rng: random.Random) -> tuple[int, float]:
    """Conversations of ``per`` messages for each (owner, how many), interleaved in time as
    customers would write them; returns (messages, seconds)."""
    pairs = dataset()
    plan = [owner for owner, n in owners for _ in range(n)]
    rng.shuffle(plan)
    start = utcnow() - timedelta(minutes=len(plan) * per)
    total, started = 0, time.perf_counter()
    conn = db.session.connection()
    for i, owner in enumerate(plan):
        chosen = [rng.choice(pairs) for _ in range(per // 2)]
        at = start + timedelta(minutes=i * per)
        cid = conn.execute(
            insert(Conversation.__table__)
            .values(
                public_id=secrets.token_urlsafe(9),
                owner=owner,
                title=title_from(chosen[0][0]),
                created_at=at,
                updated_at=at + timedelta(minutes=per),
            )
            .returning(Conversation.__table__.c.id)
        ).scalar_one()
        parent = None
        for j, (question, answer) in enumerate(chosen):
            for k, said in enumerate((question, answer)):
                if total % 20_011 == 7:  # a handful of messages
                    said += f" (ref. {RARE})"
                parent = conn.execute(
                    insert(Message.__table__)
                    .values(
                        conversation_id=cid,
                        content=said,
                        is_user=k == 0,
                        status="complete",
                        timestamp=at + timedelta(minutes=2 * j + k),
                        attempt=0,
                        metadata={},
                        parent_id=parent,
                    )
                    .returning(Message.__table__.c.id)
                ).scalar_one()
                total += 1
        if i % 500 == 499:
            db.session.commit()
            conn = db.session.connection()
    db.session.commit()
    return total, time.perf_counter() - started


def timed(fn, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return times


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.95) - 1)]


def bench_search(app, owner: str, runs: int) -> None:
    client = app.test_client()
    with client.session_transaction() as session:
        session["owner"] = owner
    print(f"\nsearch request as the owner, {runs} runs each (ms)")
    print(f"  {'query':<20} {'q':<15} {'median':>7} {'p95':>7} {'rows':>5}")
    for name, q in QUERIES:
        body = ""

        def get(q: str = q) -> None:
            nonlocal body
            response = client.get("/conversations/search", query_string={"q": q}, headers=HX)
            assert response.status_code == 200
            body = response.get_data(as_text=True)

        timed(get, 3)
        times = timed(get, runs)
        rows = body.count('class="conversation-row search-hit"')
        print(f"  {name:<20} {q:<15} {statistics.median(times):7.2f} {p95(times):7.2f} {rows:>5}")
    empty = timed(lambda: client.get("/conversations/search", query_string={"q": ""}, headers=HX), runs)
    print(f"  {'(empty q)':<20} {'':<15} {statistics.median(empty):7.2f} {p95(empty):7.2f}")


# --- writes --------------------------------------------------------------------------------------

REPLY_WORDS = 2000


def live_reply(conversation_id: int) -> replies.Lease:
    token = "bench-holder"
    reply_id = db.session.execute(
        insert(Message.__table__)
        .values(
            conversation_id=conversation_id,
            content="",
            is_user=False,
            status="streaming",
            timestamp=utcnow(),
            attempt=1,
            metadata={},
            lease_holder=token,
        )
        .returning(Message.__table__.c.id)
    ).scalar_one()
    db.session.commit()
    return replies.Lease(reply_id, 1, conversation_id, token)


def bench_writes(app, conversation_id: int, runs: int) -> dict[str, list[float]]:
    words = dataset()[0][1].split()
    engine = db.engine
    result: dict[str, list[float]] = {"tick": [], "finish": [], "message": []}

    # ticks: one reply written ~10 words a tick up to REPLY_WORDS words, as a long answer streams
    lease = live_reply(conversation_id)
    for i in range(REPLY_WORDS // 10):
        lease.parts.append(" ".join(words[(i * 10 + k) % len(words)] for k in range(10)) + " ")
        started = time.perf_counter()
        with engine.begin() as conn:
            assert replies.tick(conn, lease, 30.0) == "streaming"
        result["tick"].append((time.perf_counter() - started) * 1000)

    # the final save (it indexes the reply); taken live again between runs (not timed)
    for _ in range(runs):
        started = time.perf_counter()
        assert replies.finish(lease, "complete", {}, give_up_after=5) == replies.Saved.SAVED
        result["finish"].append((time.perf_counter() - started) * 1000)
        db.session.execute(
            update(Message).where(Message.id == lease.reply_id).values(status="streaming", content="")
        )
        db.session.commit()
    db.session.execute(update(Message).where(Message.id == lease.reply_id).values(status="complete"))
    db.session.commit()

    # a customer's message (the insert of a turn's first commit)
    question = dataset()[3][0]
    for _ in range(runs):
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(
                _NEW_MESSAGE,
                {"conversation_id": conversation_id, "content": question, "now": utcnow(), "parent_id": None},
            )
        result["message"].append((time.perf_counter() - started) * 1000)
    return result


def without_search_index(dialect: str) -> None:
    """Drop what keeps the search index up to date (a bench database only)."""
    with db.engine.begin() as conn:
        if dialect == "sqlite":
            for name in ("messages_fts_insert", "messages_fts_update", "messages_fts_delete"):
                conn.execute(text(f"DROP TRIGGER {name}"))
        else:
            conn.execute(text("DROP INDEX ix_messages_search"))


def with_search_index(dialect: str) -> None:
    with db.engine.begin() as conn:
        if dialect == "sqlite":
            for statement in SQLITE_SEARCH_DDL[2:5]:
                conn.exec_driver_sql(statement)
        else:
            conn.exec_driver_sql(POSTGRESQL_SEARCH_DDL[1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conversations", type=int, default=5000)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--others", type=int, default=2000, help="other owners, one conversation each")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--database", help="an empty database's URL (default: a new SQLite file)")
    parser.add_argument("--skip-writes", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CHATBOT_INSTANCE_PATH"] = tmp
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": args.database or f"sqlite:///{tmp}/search.sqlite3",
                "SECRET_KEY": "b" * 40,
                "LOG_LEVEL": "WARNING",
                "RATELIMIT_ENABLED": False,
            }
        )
        rng = random.Random(17)
        owner = secrets.token_urlsafe(24)
        others = [(secrets.token_urlsafe(24), 1) for _ in range(args.others)]
        with app.app_context():
            dialect = db.engine.dialect.name
            if db.session.execute(select(Conversation.id).limit(1)).first() is not None:
                raise SystemExit("the database is not empty")
            n, seconds = fill([(owner, args.conversations), *others], args.messages, rng)
            where = "SQLite" if dialect == "sqlite" else args.database.split("@")[-1]
            print(
                f"{where}: {args.conversations:,} conversations x {args.messages} messages for one owner,"
                f" {args.others:,} other owners; {n:,} messages written in {seconds:.1f} s"
                f" ({seconds / n * 1e6:.0f} µs a message, search index included)"
            )
            if dialect == "sqlite":
                size = db.session.execute(
                    text("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")
                ).scalar_one()
                fts, copy = db.session.execute(
                    text(
                        "SELECT sum(pgsize), sum(pgsize) FILTER (WHERE name = 'messages_fts_content')"
                        " FROM dbstat WHERE name LIKE 'messages_fts%'"
                    )
                ).one()
                print(
                    f"database file {size / 1e6:.0f} MB; the messages' search index {fts / 1e6:.0f} MB"
                    f" ({copy / 1e6:.0f} MB of it its copy of the text)"
                )
            else:
                db.session.execute(text("ANALYZE"))
                db.session.commit()
                size = db.session.execute(text("SELECT pg_relation_size('ix_messages_search')")).scalar_one()
                print(f"message search index {size / 1e6:.0f} MB")
            conversation_id = db.session.execute(
                select(Conversation.id).where(Conversation.owner == owner).limit(1)
            ).scalar_one()
        bench_search(app, owner, args.runs)
        if args.skip_writes:
            return
        with app.app_context():
            kept = bench_writes(app, conversation_id, args.runs)
            without_search_index(dialect)
            bare = bench_writes(app, conversation_id, args.runs)
            with_search_index(dialect)
        print(f"\nwrites, median (p95) in ms, with the search index kept / without it ({args.runs} runs)")
        labels = {
            "tick": f"streaming tick (text growing to {REPLY_WORDS:,} words)",
            "finish": f"final save of a {REPLY_WORDS:,}-word reply",
            "message": "a customer's message (insert)",
        }
        for key, label in labels.items():
            a, b = kept[key], bare[key]
            print(
                f"  {label:<44} {statistics.median(a):6.3f} ({p95(a):6.3f})"
                f" / {statistics.median(b):6.3f} ({p95(b):6.3f})"
            )


if __name__ == "__main__":
    main()
