"""Light and cached (issue 18, point 7), in Chromium and over HTTP against gunicorn with gevent
workers as shipped: the first load of the chat page weighs at most 60 KB on the wire, all in; a
repeat visit at most 10 KB (the static files come from the browser's cache, unasked); the reply's
event stream is not compressed and arrives event by event; the page paints at its newest message,
in the reader's time zone, before the deferred scripts arrive, and doesn't move when they do."""

from __future__ import annotations

import re
import time
import zoneinfo
from datetime import datetime

import requests
from playwright.sync_api import expect

from .fake_openai import Reply
from .helpers import HX, wait_until
from .pageweight import conversation, load
from .test_long import fill

FIRST_LOAD_BYTES = 60 * 1024
REPEAT_LOAD_BYTES = 10 * 1024
ACCEPT_BOTH = {"Accept-Encoding": "gzip, deflate, br"}


def test_first_load_and_repeat_load_weigh_little(cluster, browser, fake_openai):
    (server,) = cluster.start(1)
    requests.get(server.url + "/", timeout=10)  # (a worker that has served once: as in production)

    # a new visitor: the empty chat
    context = browser.new_context()
    page = context.new_page()
    empty = load(page, server.url + "/")
    print(f"\nfirst load of the empty chat:\n{empty.table()}")
    assert empty.wire_bytes <= FIRST_LOAD_BYTES
    context.close()

    # a customer coming back to a conversation (six answered questions), in a fresh browser
    visitor, path = conversation(server.url, fake_openai, 6)
    context = browser.new_context()
    context.add_cookies([{"name": c.name, "value": c.value, "url": server.url} for c in visitor.cookies])
    page = context.new_page()
    first = load(page, server.url + path)
    print(f"first load of a conversation:\n{first.table()}")
    assert page.locator("#messages article.message").count() == 12
    assert first.wire_bytes <= FIRST_LOAD_BYTES, first.table()
    statics = [r for r in first.resources.values() if "/static/" in r.url]
    assert len(statics) >= 6
    assert all(
        r.status == 200 and r.encoding in ("br", "gzip") for r in statics if r.url.endswith((".js", ".css"))
    ), first.table()

    again = load(page, server.url + path)  # a new navigation to the same page, the cache warm
    print(f"repeat load:\n{again.table()}")
    assert again.wire_bytes <= REPEAT_LOAD_BYTES, again.table()
    assert all(r.wire_bytes == 0 for r in again.resources.values() if "/static/" in r.url), again.table()
    expect(page.locator("#messages article.message")).to_have_count(12)
    context.close()


def test_gunicorn_answers_static_files_cached_text_compressed_and_the_stream_event_by_event(
    cluster, fake_openai
):
    (server,) = cluster.start(1)
    page = requests.get(server.url + "/", headers=ACCEPT_BOTH, timeout=10)
    assert page.headers["Content-Encoding"] == "br" and "Accept-Encoding" in page.headers["Vary"]
    url = re.search(r'src="(/static/js/chat\.js\?v=[0-9a-f]{12})"', page.text).group(1)
    script = requests.get(server.url + url, headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert script.headers["Content-Encoding"] == "gzip"
    assert script.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert "Accept-Encoding" in script.headers["Vary"]
    again = requests.get(
        server.url + url,
        headers={"Accept-Encoding": "gzip", "If-None-Match": script.headers["ETag"]},
        timeout=10,
    )
    assert again.status_code == 304 and again.content == b""
    head = requests.head(server.url + url, headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert head.headers["Content-Length"] == script.headers["Content-Length"] and head.content == b""

    # the reply: 40 words 50 ms apart (2 s), to a client that accepts brotli and gzip
    fake_openai.will(Reply(" ".join(f"word{i}" for i in range(40)), token_delay=0.05))
    arrivals: list[tuple[float, str]] = []
    with requests.post(
        server.url + "/c",
        data={"content": "Tell me everything"},
        headers={**HX, **ACCEPT_BOTH},
        stream=True,
        timeout=30,
    ) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert "Content-Encoding" not in stream.headers
        assert "Accept-Encoding" not in stream.headers.get("Vary", "")
        for chunk in stream.raw.stream(1024, decode_content=False):  # the bytes as they come
            arrivals.append((time.perf_counter(), chunk.decode()))
    ended = arrivals[-1][0]
    first_text = next(t for t, chunk in arrivals if "word0" in chunk)
    assert ended - first_text > 1.0, "the first words came with the last ones"
    assert sum("data:" in chunk for _, chunk in arrivals) >= 5  # in many pieces
    assert "word39" in "".join(chunk for _, chunk in arrivals)


MEXICO_CITY = zoneinfo.ZoneInfo("America/Mexico_City")
AT_END = "m => m.scrollHeight - m.scrollTop - m.clientHeight"
# every scroll of the message list, whoever made it
RECORD_SCROLLS = """
window.__scrolls = [];
document.addEventListener("scroll", (e) => {
  if (e.target.id === "messages") window.__scrolls.push([performance.now(), e.target.scrollTop]);
}, true);
"""


def test_the_page_paints_at_the_newest_message_in_local_time_before_its_scripts_arrive(
    app, live_server, browser, fake_openai
):
    context = browser.new_context(
        viewport={"width": 1100, "height": 700}, timezone_id="America/Mexico_City", locale="en-GB"
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(live_server.url + "/")
    page.wait_for_load_state("load")
    page.locator("#composer-input").fill("first question")
    page.locator("#composer-input").press("Enter")
    expect(page.locator('#messages article[data-role="assistant"]')).to_have_attribute(
        "data-status", "complete"
    )
    cid = page.url.rsplit("/", 1)[1]
    fill(app, cid, 80)  # a long conversation: the page shows its newest 50
    page.close()

    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.add_init_script(RECORD_SCROLLS)
    held = []  # chat.js, held back (a slow network): the page is parsed, its deferred scripts wait
    page.route(re.compile(r"/static/js/chat\.js"), lambda route: held.append(route))
    page.goto(f"{live_server.url}/c/{cid}", wait_until="commit")
    page.wait_for_selector("#composer", state="attached")
    wait_until(lambda: held, what="the request for chat.js")
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    assert page.evaluate("document.readyState") == "interactive"  # (DOMContentLoaded waits for chat.js)

    messages = page.locator("#messages")
    assert messages.evaluate(AT_END) < 2  # scrolled to the end...
    newest = page.locator("#messages article.message").last
    box, view = newest.bounding_box(), messages.bounding_box()
    assert view["y"] <= box["y"] and box["y"] + box["height"] <= view["y"] + view["height"] + 1  # ...in view
    times = page.locator("#messages time[datetime]")
    assert times.count() == 50
    for stamp, shown in zip(
        times.evaluate_all("ts => ts.map((t) => t.getAttribute('datetime'))"),
        times.all_inner_texts(),
        strict=True,
    ):
        local = datetime.fromisoformat(stamp).astimezone(MEXICO_CITY)
        assert shown == local.strftime("%H:%M"), (stamp, shown)  # (the server wrote "…Z UTC")
    position = messages.evaluate("m => m.scrollTop")
    scrolls = len(page.evaluate("window.__scrolls"))

    held[0].continue_()  # the scripts arrive
    page.wait_for_load_state("load")
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    assert messages.evaluate("m => m.scrollTop") == position  # nothing moved
    assert len(page.evaluate("window.__scrolls")) == scrolls
    assert times.all_inner_texts() == [
        datetime.fromisoformat(s).astimezone(MEXICO_CITY).strftime("%H:%M")
        for s in times.evaluate_all("ts => ts.map((t) => t.getAttribute('datetime'))")
    ]
    # and the page works: the deferred scripts took over (a reply streams in, in local time)
    page.locator("#composer-input").fill("one more question")
    page.locator("#composer-input").press("Enter")
    expect(page.locator('#messages article[data-role="assistant"]').last).to_have_attribute(
        "data-status", "complete"
    )
    expect(page.locator("#messages time").last).not_to_contain_text("UTC")
    assert errors == []
    context.close()
