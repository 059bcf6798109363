"""What finding the shop's articles costs a turn, with a thousand articles.

Builds ``--articles`` articles (the shipped samples, then variants of them: each variant a sample's
sections under a new title, with words of its own, so the index grows as a real help centre
would, not by copies), indexes them, and times:

- ``retrieve()`` alone (the database's full-text search for candidates, then the ranking), for
  the shipped evaluation questions, cold (the first call of a process reads the collection's
  statistics) and warm: median and p95;
- the whole look-up of a turn (``brief()``: the kind of message, retrieval, the note for the
  model);
- building the index.

    python bench/retrieval.py [--articles 1000] [--runs 3]
    python bench/retrieval.py --database postgresql+psycopg://postgres@127.0.0.1/empty_db
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chatbot import create_app
from chatbot.extensions import db
from chatbot.knowledge import articles, index, retrieve
from chatbot.knowledge.briefing import brief

EVAL = ROOT / "tests" / "eval" / "questions.jsonl"
WORDS = (
    "model pro max mini plus lite ultra fold flip edge note galaxy pixel iphone moto xperia nova "
    "redmi tablet watch buds router hotspot carrier plan contract prepaid invoice store voucher "
    "modelo tarjeta factura tienda contrato tarifa bono cliente oferta regalo"
).split()


def make_folder(target: Path, count: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    samples = articles.load(articles.SAMPLES)
    for sample in samples:
        (target / f"{sample.slug}.md").write_text(
            (articles.SAMPLES / f"{sample.slug}.md").read_text(encoding="utf-8"), encoding="utf-8"
        )
    for n in range(count - len(samples)):
        sample = rng.choice(samples)
        extra = " ".join(rng.sample(WORDS, 3))
        sections = rng.sample(list(sample.passages), k=max(1, len(sample.passages) - 1))
        body = "\n\n".join(
            f"## {p.heading or sample.title} ({extra})\n{p.text}\n\n{' '.join(rng.sample(WORDS, 6))}."
            for p in sections
        )
        front = f"---\ntitle: {sample.title} - {extra}\nlang: {sample.lang}\ntopic: variant-{n}\n---\n"
        (target / f"variant-{n:04d}.md").write_text(front + body, encoding="utf-8")


def quantiles(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
    return f"median {statistics.median(values):.2f} ms, p95 {p95:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database", help="an empty database's URL (default: a new SQLite file)")
    args = parser.parse_args()
    questions = [
        json.loads(line)["question"] for line in EVAL.read_text(encoding="utf-8").splitlines() if line
    ]

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "articles"
        folder.mkdir()
        make_folder(folder, args.articles)
        uri = args.database or f"sqlite:///{tmp}/bench.sqlite3"
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": uri,
                "SECRET_KEY": "bench",
                "ARTICLES_FOLDER": str(folder),
                "ARTICLES_INDEX_AT_START": False,
            }
        )
        with app.app_context():
            started = time.perf_counter()
            built = index.rebuild(folder, force=True)
            took = time.perf_counter() - started
            print(f"{db.engine.dialect.name}: {built.articles} articles, {built.passages} passages", end="")
            print(f" indexed in {took:.2f} s")
            conn = db.session.connection()
            retrieve._cache = None
            started = time.perf_counter()
            retrieve.retrieve(conn, questions[0])
            first = (time.perf_counter() - started) * 1000
            print(f"first retrieval of a process (reads the collection): {first:.1f} ms")
            alone, whole = [], []
            for _ in range(args.runs):
                for question in questions:
                    started = time.perf_counter()
                    retrieve.retrieve(conn, question)
                    alone.append((time.perf_counter() - started) * 1000)
                    messages = [
                        {"role": "system", "content": "You help."},
                        {"role": "user", "content": question},
                    ]
                    started = time.perf_counter()
                    brief(conn, messages, articles=3, contact=())
                    whole.append((time.perf_counter() - started) * 1000)
            print(f"retrieve(), {len(alone)} questions: {quantiles(alone)}")
            print(f"a turn's whole look-up (brief()): {quantiles(whole)}")
            db.session.rollback()
            if args.database:  # leave the database as it was found
                db.drop_all()


if __name__ == "__main__":
    main()
