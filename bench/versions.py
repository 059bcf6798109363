"""What switching a message's version costs, by conversation length: the switch sets aside the
shown path after the message and shows the chosen version's (a recursive statement), holding the
database's write lock meanwhile (on SQLite, every other writer waits that long).

    python bench/versions.py [--sizes 100,1000,6000]
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

from sqlalchemy import insert, select

from chatbot import create_app
from chatbot.chat import versions
from chatbot.extensions import db
from chatbot.models import Conversation, Message, utcnow


def build(n: int) -> tuple[int, int, int]:
    """A conversation of n messages with a second version of its first: (conversation, v1, v2)."""
    now = utcnow()
    cid = db.session.execute(
        insert(Conversation).values(
            public_id=f"bench{n}", owner="bench", title="t", created_at=now, updated_at=now
        )
    ).inserted_primary_key[0]
    parent = None
    rows = []
    first = None
    for i in range(n):
        mid = db.session.execute(
            insert(Message).values(
                conversation_id=cid,
                content=f"m{i}",
                is_user=i % 2 == 0,
                status="complete",
                timestamp=now,
                meta={},
                parent_id=parent,
                shown=False,
            )
        ).inserted_primary_key[0]
        first = first or mid
        rows.append(mid)
        parent = mid
    v2 = db.session.execute(
        insert(Message).values(
            conversation_id=cid,
            content="m0 v2",
            is_user=True,
            status="complete",
            timestamp=now,
            meta={},
            parent_id=None,
            shown=True,
        )
    ).inserted_primary_key[0]
    db.session.commit()
    return cid, first, v2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,1000,6000")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CHATBOT_INSTANCE_PATH"] = tmp
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp}/v.sqlite3",
                "SECRET_KEY": "b" * 40,
                "LOG_LEVEL": "WARNING",
            }
        )
        print(f"{'messages':>9} {'switch median':>14} {'max':>8}")
        with app.app_context():
            for n in (int(x) for x in args.sizes.split(",")):
                cid, v1, v2 = build(n)
                conversation = db.session.get(Conversation, cid)
                times = []
                current, other = v2, v1
                for _ in range(10):
                    started = time.perf_counter()
                    versions.show_version(conversation, current, other)
                    times.append(time.perf_counter() - started)
                    current, other = other, current
                shown = db.session.execute(
                    select(Message.id).where(Message.conversation_id == cid, Message.shown)
                ).all()
                assert len(shown) in (1, n)
                print(f"{n:>9} {statistics.median(times) * 1000:>12.1f}ms {max(times) * 1000:>6.1f}ms")


if __name__ == "__main__":
    main()
