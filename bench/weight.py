"""What the chat page weighs on the wire, in Chromium, against gunicorn with gevent workers as
shipped (and the fake model): the first load of the empty chat and of a conversation (all
resources, compressed, headers included), a repeat load (a new navigation, the cache warm), and
the time to DOMContentLoaded, on localhost and on an emulated phone network ("Fast 3G": 150 ms,
1.6 Mbit/s). The numbers in README "Light and cached" come from here.

    python bench/weight.py [--exchanges 6] [--runs 3] [--verbose]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests
from playwright.sync_api import sync_playwright

from tests.fake_openai import FakeOpenAI
from tests.pageweight import FAST_3G, Load, conversation, load
from tests.servers import Cluster

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--exchanges", type=int, default=6, help="answered questions in the conversation")
    parser.add_argument("--runs", type=int, default=3, help="loads of each kind (the median is shown)")
    parser.add_argument("--verbose", action="store_true", help="every request of the first run's loads")
    args = parser.parse_args()
    fake = FakeOpenAI()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp), f"sqlite:///{tmp}/weight.sqlite3", fake.url, {"WEB_CONCURRENCY": "1"})
        try:
            (server,) = cluster.start(1)
            requests.get(server.url + "/", timeout=10)  # a worker that has served once
            visitor, path = conversation(server.url, fake, args.exchanges)
            cookies = [{"name": c.name, "value": c.value, "url": server.url} for c in visitor.cookies]
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
                heading = f"median of {args.runs} runs"
                print(f"{heading:40} {'bytes':>8} {'DOMContentLoaded':>17} {'on Fast 3G':>11}")
                for name, url, with_cookies in [
                    ("empty chat", server.url + "/", False),
                    (f"conversation ({2 * args.exchanges} messages)", server.url + path, True),
                ]:
                    runs: dict[tuple[bool, int], list[Load]] = {}
                    for _ in range(args.runs):
                        for network in (None, FAST_3G):
                            context = browser.new_context()  # a new visitor: an empty cache
                            if with_cookies:
                                context.add_cookies(cookies)
                            page = context.new_page()
                            for i in range(2):  # the first load, then a repeat one
                                runs.setdefault((bool(network), i), []).append(load(page, url, network))
                            context.close()
                    for i, label in enumerate(("first load", "repeat load")):
                        fast, slow = runs[(False, i)], runs[(True, i)]
                        size = statistics.median(r.wire_bytes for r in fast)
                        dcl = statistics.median(r.dom_content_loaded_ms for r in fast)
                        dcl_3g = statistics.median(r.dom_content_loaded_ms for r in slow)
                        print(f"{name + ', ' + label:40} {size:>8,.0f} {dcl:>14.0f} ms {dcl_3g:>8.0f} ms")
                        if args.verbose:
                            print(fast[0].table())
                browser.close()
        finally:
            cluster.close()
            fake.close()


if __name__ == "__main__":
    main()
