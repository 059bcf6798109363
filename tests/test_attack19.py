"""Attacks on the shop's knowledge (issue 19) that once worked: each test here is a hole found by
trying to break the feature, closed."""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

from chatbot.extensions import db
from chatbot.knowledge import articles
from chatbot.knowledge.retrieve import COMMON, collection, retrieve


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def help_centre(folder: Path, count: int, seed: int = 7) -> None:
    """The samples, then variants of them (their sections under new titles, words of their own)
    up to ``count`` articles: a help centre of a realistic size."""
    rng = random.Random(seed)
    samples = articles.load(articles.SAMPLES)
    extra = "model pro max mini plus lite ultra fold flip edge note router hotspot carrier plan".split()
    for sample in samples:
        write(folder, f"{sample.slug}.md", (articles.SAMPLES / f"{sample.slug}.md").read_text("utf-8"))
    for n in range(count - len(samples)):
        sample = rng.choice(samples)
        words = " ".join(rng.sample(extra, 3))
        body = "\n\n".join(
            f"## {p.heading or sample.title} ({words})\n{p.text}\n\n{' '.join(rng.sample(extra, 6))}."
            for p in sample.passages
        )
        write(
            folder,
            f"variant-{n:04d}.md",
            f"---\ntitle: {sample.title} - {words}\nlang: {sample.lang}\n---\n{body}",
        )


def test_a_long_message_costs_a_bounded_look_up_on_either_database(app_factory, tmp_path):
    """An 8,000-character message of words the articles use: PostgreSQL ranked every match with
    ts_rank (which parses each passage's text again): 0.6-1 s a turn on a thousand articles."""
    folder = tmp_path / "articles"
    help_centre(folder, 400)
    app = app_factory(PROVIDER="offline", ARTICLES_FOLDER=str(folder))
    with app.app_context():
        conn = db.session.connection()
        known = collection(conn)
        telling = [t for t, n in sorted(known.stats.df.items()) if n <= COMMON * known.stats.documents]
        message = " ".join(random.Random(1).sample(telling, 200))
        message = (message + " ") * (8000 // len(message) + 1)
        took = []
        for _ in range(3):
            started = time.perf_counter()
            found = retrieve(conn, message[:8000], [message[:8000]])
            took.append(time.perf_counter() - started)
        assert found.sources
    assert statistics.median(took) < 0.1, took  # (30 ms here; it was 200)
