"""What rendering Markdown while a reply streams costs the server, per batch; prints a table.

A 2,000-word reply with headings, paragraphs, bullet and numbered lists, tables and code blocks is
cut into tokens (words with their leading spaces, as the fake model sends them) and fed in batches
of ``--tokens`` tokens (5: a batch every 100 ms at 50 tokens a second). Each batch is timed as the
stream does it: ``StreamingMarkdown.feed`` (parse the open text, render finished blocks once and the
open tail again, sanitize both) plus the event's framing. Next to it, the naive way: the whole
text so far rendered and sanitized again every batch (``render_markdown``), which grows with the
reply. Figures are per batch: mean, p95, max, and at the batches 10 %, 50 % and 100 % of the way
through the reply (the median of the 11 batches around each point, over ``--runs`` runs).
``--fence sh`` gives the code blocks a language, so that Pygments highlights them (and the open
one again with each batch while it is being written).

    python bench/stream_markdown.py [--words 2000] [--tokens 5] [--runs 5] [--fence sh]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chatbot.chat import stream
from chatbot.rendering import StreamingMarkdown, render_markdown

WORDS = (
    "battery screen charger cable setting update backup signal network carrier restart storage "
    "camera account password warranty repair store brightness mode app notification location "
    "bluetooth speaker microphone sim card wifi router hotspot data plan roaming"
).split()


def words(n: int, seed: int) -> str:
    return " ".join(WORDS[(seed * 7 + i * 13) % len(WORDS)] for i in range(n))


def section(i: int, fence: str = "") -> str:
    """About 230 words of what a support answer looks like (``fence``: its code's language)."""
    return (
        f"## Step {i + 1}: check the {WORDS[i % len(WORDS)]}\n\n"
        f"{words(45, i)}, and **{words(3, i + 1)}** before you {words(12, i + 2)}.\n\n"
        + "".join(f"- {words(9, i * 5 + k).capitalize()}.\n" for k in range(5))
        + "\n"
        + "".join(
            f"{k + 1}. Open *{words(2, k)}* and tap `{WORDS[k]}`; {words(8, i + k)}.\n" for k in range(4)
        )
        + "\n| Setting | Where | Effect |\n| --- | --- | --- |\n"
        + "".join(f"| {words(2, i + k)} | {words(2, k)} | {words(4, i * k)} |\n" for k in range(5))
        + f"\n```{fence}\n"
        + "".join(f"adb shell settings put global {WORDS[k]}_{i} {k}\n" for k in range(5))
        + "```\n\n"
        f"{words(40, i + 9)} ([details](https://example.com/help/{i})).\n\n"
    )


def reply(n_words: int, fence: str = "") -> str:
    """Whole sections, about ``n_words`` words in all."""
    text, i = "", 0
    while len(text.split()) < n_words - 100:
        text += section(i, fence)
        i += 1
    return text


def batches(text: str, per_batch: int) -> list[str]:
    tokens = re.findall(r"\s*\S+|\s+", text)
    return ["".join(tokens[i : i + per_batch]) for i in range(0, len(tokens), per_batch)]


def streamed(pieces: list[str]) -> tuple[list[float], list[int]]:
    """Seconds and event bytes per batch, the way the stream renders."""
    md, seconds, sizes = StreamingMarkdown(), [], []
    for piece in pieces:
        started = time.perf_counter()
        event = stream.markdown_update("msg-2-tail", md.feed(piece))
        seconds.append(time.perf_counter() - started)
        sizes.append(len(event.encode()))
    return seconds, sizes


def whole(pieces: list[str]) -> tuple[list[float], list[int]]:
    """Seconds and bytes per batch, rendering the whole text so far every time."""
    text, seconds, sizes = "", [], []
    for piece in pieces:
        text += piece
        started = time.perf_counter()
        html = stream.event(str(render_markdown(text)))
        seconds.append(time.perf_counter() - started)
        sizes.append(len(html.encode()))
    return seconds, sizes


def at(values: list[float], fraction: float) -> float:
    i = min(len(values) - 1, round(fraction * (len(values) - 1)))
    return statistics.median(
        values[max(0, i - 10) : i + 1] if fraction == 1 else values[max(0, i - 5) : i + 6]
    )


def summary(runs: list[list[float]]) -> dict[str, float]:
    per_batch = [statistics.median(column) for column in zip(*runs, strict=True)]  # median over runs
    ordered = sorted(per_batch)
    return {
        "mean": statistics.fmean(per_batch),
        "p95": ordered[int(0.95 * (len(ordered) - 1))],
        "max": ordered[-1],
        "10%": at(per_batch, 0.1),
        "50%": at(per_batch, 0.5),
        "100%": at(per_batch, 1.0),
        "total": sum(per_batch),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--words", type=int, default=2000)
    parser.add_argument("--tokens", type=int, default=5, help="tokens per batch")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--fence", default="", help="the code blocks' language (sh: highlighted)")
    args = parser.parse_args()

    text = reply(args.words, args.fence)
    pieces = batches(text, args.tokens)
    assert "".join(pieces) == text
    ours, naive, ours_bytes, naive_bytes = [], [], [], []
    for _ in range(args.runs):
        seconds, sizes = streamed(pieces)
        ours.append(seconds)
        ours_bytes = sizes
        seconds, sizes = whole(pieces)
        naive.append(seconds)
        naive_bytes = sizes

    print(
        f"{len(text.split())} words, {len(text)} characters, {len(pieces)} batches of {args.tokens} tokens, "
        f"code fenced as {args.fence or 'no language'!r}, median of {args.runs} runs; milliseconds per batch"
    )
    print(f"{'':28}{'mean':>7}{'p95':>7}{'max':>7}{'@10%':>7}{'@50%':>7}{'@100%':>7}{'total':>9}")
    for name, runs in (("open tail (StreamingMarkdown)", ours), ("whole text every batch", naive)):
        s = summary(runs)
        print(
            f"{name:28}"
            + "".join(f"{s[k] * 1000:7.3f}" for k in ("mean", "p95", "max", "10%", "50%", "100%"))
            + f"{s['total'] * 1000:9.1f}"
        )
    for name, sizes in (("open tail", ours_bytes), ("whole text", naive_bytes)):
        print(
            f"event bytes, {name:15} mean {statistics.fmean(sizes):8.0f}  max {max(sizes):7d}  "
            f"total {sum(sizes) / 1024:8.0f} KiB"
        )
    one = time.perf_counter()
    render_markdown(text)
    print(f"the whole reply rendered once, at the end: {(time.perf_counter() - one) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
