"""What streaming adds on top of the model: prints medians over N turns.

Starts the fake OpenAI-compatible server (in this process, so its clock is ours) with a chosen
time to first token and per-token delay, and the app under gunicorn (gthread, one worker) in a
subprocess. For each turn it posts like the page does and reads the event stream.

- overhead to first token: first text event at the client  -  first token written by the fake
- per-chunk overhead: (client's first-text-to-last-event time - fake's first-token-to-[DONE] time)
  / text events received
- total: POST to last event

    python bench/stream_latency.py [--turns 20] [--ttft 0.2] [--token-delay 0.01] [--tokens 80]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fake_openai import FakeOpenAI, Reply


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def csrf_token(page: str) -> str:
    """The page's CSRF token (every POST carries it, as the page's own requests do)."""
    return page.split('name="csrf-token" id="csrf-token" content="', 1)[1].split('"', 1)[0]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--ttft", type=float, default=0.2, help="fake model's time to first token (s)")
    parser.add_argument(
        "--token-delay", type=float, default=0.01, help="fake model's delay between tokens (s)"
    )
    parser.add_argument("--tokens", type=int, default=80, help="tokens per reply")
    args = parser.parse_args()

    fake = FakeOpenAI()
    fake.default = Reply(
        " ".join(f"tok{i}" for i in range(args.tokens)),
        first_token_delay=args.ttft,
        token_delay=args.token_delay,
    )
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="chatbot-bench-")
    env = dict(
        os.environ,
        CHATBOT_INSTANCE_PATH=tmp,
        DATABASE_URL=f"sqlite:///{tmp}/bench.sqlite3",
        OPENAI_API_KEY="sk-bench",
        OPENAI_BASE_URL=fake.url,
        CHATBOT_OPENAI_MAX_RETRIES="0",
        # limits checked as in production, but set out of the bench's way
        CHATBOT_RATELIMIT_MESSAGES_PER_OWNER="1000000/minute",
        CHATBOT_RATELIMIT_MESSAGES_PER_IP="1000000/minute",
        CHATBOT_RATELIMIT_NEW_SESSIONS_PER_IP="1000000/minute",
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_ACCESS_LOG="/dev/null",
        WEB_CONCURRENCY="1",
        GUNICORN_THREADS="8",
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                requests.get(base + "/", timeout=1)
                break
            except (requests.ConnectionError, requests.Timeout):  # (a worker still booting)
                time.sleep(0.1)
        session = requests.Session()
        token = csrf_token(session.get(base + "/").text)
        first_overheads, chunk_overheads, totals, chunk_counts = [], [], [], []
        conversation = ""
        for turn in range(args.turns + 2):  # two warm-up turns
            fake.first_token_sent.clear()
            fake.stream_done.clear()
            start = time.perf_counter()
            url = f"{base}/c/{conversation}/messages" if conversation else f"{base}/c"
            response = session.post(
                url,
                data={"content": f"question {turn}"},
                headers={"HX-Request": "true", "X-CSRF-Token": token},
                stream=True,
            )
            first_text = last = None
            chunks = 0
            for line in response.iter_lines(decode_unicode=True):
                now = time.perf_counter()
                if line.startswith('data: <hx-partial hx-target="#msg-') and '-tail"' in line:
                    chunks += 1
                    first_text = first_text or now
                if line.startswith("data: /c/"):
                    conversation = line.rsplit("/", 1)[1]
                last = now
            if turn == 0:  # the first message issued this browser's owner: the page has a new token
                token = csrf_token(session.get(f"{base}/c/{conversation}").text)
            if turn < 2:
                continue
            first_overheads.append((first_text - fake.first_token_sent[0]) * 1000)
            fake_span = fake.stream_done[0] - fake.first_token_sent[0]
            chunk_overheads.append(((last - first_text) - fake_span) * 1000 / max(chunks, 1))
            totals.append((last - start) * 1000)
            chunk_counts.append(chunks)
        model_total = (args.ttft + args.token_delay * (args.tokens - 1)) * 1000
        print(
            f"stream latency over {args.turns} turns (gunicorn gthread, SQLite; fake model: "
            f"ttft {args.ttft * 1000:.0f} ms, {args.tokens} tokens, {args.token_delay * 1000:.0f} ms apart)"
        )
        print(
            f"  overhead to first token   median {statistics.median(first_overheads):7.2f} ms   "
            f"p90 {statistics.quantiles(first_overheads, n=10)[-1]:7.2f} ms   (target < 20 ms)"
        )
        print(
            f"  per-chunk overhead        median {statistics.median(chunk_overheads):7.2f} ms   "
            f"({statistics.median(chunk_counts):.0f} text events per reply)"
        )
        print(
            f"  total turn                median {statistics.median(totals):7.1f} ms   "
            f"(the fake model alone: {model_total:.0f} ms)"
        )
    finally:
        server.terminate()
        server.wait(10)
        fake.close()


if __name__ == "__main__":
    main()
