"""Static files with versioned URLs, cached for a year; text compressed (brotli, gzip), never the
reply's event stream; JS and CSS minified (issue 18, point 7). HTTP-level, through the test client;
the same against gunicorn and in Chromium: test_weight.py."""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
import time
from pathlib import Path

import brotli
import pytest

from chatbot.assets import IMMUTABLE

from .helpers import HX, conversation_id_from, parse_sse

ROOT = Path(__file__).resolve().parent.parent
STATIC_FILES = [
    "css/chat.css",
    "js/chat.js",
    "js/first-paint.js",
    "vendor/htmx/htmx.min.js",
    "vendor/htmx/hx-sse.js",
    "img/assistant.svg",
]
BOTH = {"Accept-Encoding": "gzip, deflate, br"}


def static_urls(html: str) -> dict[str, str]:
    """The page's static URLs by file name: {"js/chat.js": "/static/js/chat.js?v=..."}."""
    return {m.group(1): m.group(0) for m in re.finditer(r"/static/([^\"?]+)\?v=[0-9a-f]{12}", html)}


def decoded(response) -> bytes:
    coding = response.headers.get("Content-Encoding")
    if coding == "br":
        return brotli.decompress(response.data)
    if coding == "gzip":
        return gzip.decompress(response.data)
    assert coding is None, coding
    return response.data


def test_the_page_links_each_static_file_by_its_version_cached_for_a_year(client):
    urls = static_urls(client.get("/").get_data(as_text=True))
    assert set(STATIC_FILES) <= set(urls), urls
    for name, url in urls.items():
        response = client.get(url, headers=BOTH)
        assert response.status_code == 200, name
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable" == IMMUTABLE
        assert response.headers["ETag"] and response.headers["Last-Modified"]
        # the version is the served bytes' own: what is cached for a year under it is those bytes
        assert url.endswith("?v=" + hashlib.sha256(decoded(response)).hexdigest()[:12])


def test_an_old_or_missing_version_gets_the_current_file_revalidated_not_pinned(client):
    url = static_urls(client.get("/").get_data(as_text=True))["js/chat.js"]
    current = client.get(url).data
    for other in ("/static/js/chat.js", "/static/js/chat.js?v=0123456789ab", "/static/js/chat.js?v="):
        response = client.get(other)
        assert response.status_code == 200
        assert response.data == current  # (an old page after a deploy still gets a working file)
        assert response.headers["Cache-Control"] == "no-cache"  # ...but kept only until it changes
        again = client.get(other, headers={"If-None-Match": response.headers["ETag"]})
        assert again.status_code == 304 and again.data == b""
    assert client.get("/static/js/nothing-here.js").status_code == 404
    assert client.get("/static/../chatbot/__init__.py").status_code == 404
    assert client.get("/static/js").status_code == 404  # (a folder)


@pytest.mark.parametrize("name", STATIC_FILES)
def test_static_text_comes_in_the_encoding_the_client_prefers(client, name):
    url = static_urls(client.get("/").get_data(as_text=True))[name]
    plain = client.get(url, headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    assert plain.headers["Vary"].startswith("Accept-Encoding")
    etags = {plain.headers["ETag"]}
    for accept, coding in [
        ("gzip, deflate, br", "br"),
        ("br;q=0.5, gzip", "gzip"),
        ("gzip", "gzip"),
        ("*", "br"),
        ("br;q=0, gzip;q=0", None),
    ]:
        response = client.get(url, headers={"Accept-Encoding": accept})
        assert response.headers.get("Content-Encoding") == coding, (accept, coding)
        assert "Accept-Encoding" in response.headers["Vary"]
        assert int(response.headers["Content-Length"]) == len(response.data)
        assert decoded(response) == plain.data
        if coding:
            assert len(response.data) < len(plain.data)
            etags.add(response.headers["ETag"])
    assert len(etags) == 3  # each encoding its own validator (a cache never mixes them)


def test_conditional_head_and_range_requests(client):
    url = static_urls(client.get("/").get_data(as_text=True))["js/chat.js"]
    full = client.get(url, headers=BOTH)
    etag = full.headers["ETag"]
    # a revalidation in the same encoding: 304, no body, the caching headers again
    not_modified = client.get(url, headers={**BOTH, "If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.data == b""
    assert not_modified.headers["ETag"] == etag
    assert not_modified.headers["Cache-Control"] == IMMUTABLE
    assert "Accept-Encoding" in not_modified.headers["Vary"]
    # another encoding's validator doesn't match these bytes
    assert client.get(url, headers={"Accept-Encoding": "gzip", "If-None-Match": etag}).status_code == 200
    since = client.get(url, headers={**BOTH, "If-Modified-Since": full.headers["Last-Modified"]})
    assert since.status_code == 304
    # HEAD: GET's headers (its length too), no body
    head = client.head(url, headers=BOTH)
    assert head.status_code == 200 and head.data == b""
    assert head.headers["Content-Length"] == full.headers["Content-Length"]
    assert head.headers["Content-Encoding"] == "br"
    # a range of the representation asked for
    part = client.get(url, headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and len(part.data) == 100
    assert part.data == client.get(url).data[:100]


def test_javascript_and_css_are_served_minified_their_sources_stay_readable(client):
    urls = static_urls(client.get("/").get_data(as_text=True))
    for name in ["js/chat.js", "vendor/htmx/hx-sse.js", "css/chat.css"]:
        source = (ROOT / "static" / name).read_bytes()
        served = client.get(urls[name]).data
        assert len(served) < 0.9 * len(source), name
        assert b"\n  " in source and b"\n  " not in served  # (indentation gone)
    already = (ROOT / "static/vendor/htmx/htmx.min.js").read_bytes()
    assert client.get(urls["vendor/htmx/htmx.min.js"]).data == already  # *.min.* as it is


def test_pages_are_compressed_small_answers_are_not(client):
    for accept, coding in [("gzip, deflate, br", "br"), ("gzip", "gzip"), ("", None)]:
        page = client.get("/", headers={"Accept-Encoding": accept})
        assert page.status_code == 200
        assert page.headers.get("Content-Encoding") == coding
        assert "Accept-Encoding" in page.headers["Vary"]
        assert b'id="composer"' in decoded(page)
        head = client.head("/", headers={"Accept-Encoding": accept})
        assert head.headers.get("Content-Encoding") == coding
        assert abs(int(head.headers["Content-Length"]) - len(page.data)) < 50  # (its own CSRF token)
    small = client.get("/healthz", headers=BOTH)
    assert "Content-Encoding" not in small.headers and "Accept-Encoding" not in small.headers.get("Vary", "")
    missing = client.get("/c/nothing-here", headers=BOTH)  # an error page, as big as a page
    assert missing.status_code == 404
    if len(decoded(missing)) >= 1024:
        assert missing.headers["Content-Encoding"] == "br"


def test_the_reply_stream_and_downloads_are_never_compressed(client, fake_openai):
    client.get("/")
    response = client.post("/c", data={"content": "My battery drains fast"}, headers={**HX, **BOTH})
    assert response.mimetype == "text/event-stream"
    assert response.is_streamed  # (not buffered by anything on the way)
    assert "Content-Encoding" not in response.headers
    assert "Accept-Encoding" not in response.headers.get("Vary", "")
    events = parse_sse(response.get_data(as_text=True))
    assert "Hello from the fake model" in events[-1]["data"]
    cid = conversation_id_from(response)
    download = client.get(f"/c/{cid}/export.md", headers=BOTH)
    assert download.status_code == 200 and "Content-Encoding" not in download.headers


def test_in_debug_mode_a_changed_file_gets_a_new_version_at_once(app_factory, tmp_path):
    static = tmp_path / "static"
    shutil.copytree(ROOT / "static", static)
    debug = app_factory(DEBUG=True)
    steady = app_factory()
    for app in (debug, steady):
        app.static_folder = str(static)
    before = {
        app: static_urls(app.test_client().get("/").get_data(as_text=True))["css/chat.css"]
        for app in (debug, steady)
    }
    time.sleep(0.01)
    with open(static / "css/chat.css", "a") as f:
        f.write("\n.added-later { color: red; }\n")
    debug_client = debug.test_client()
    now = static_urls(debug_client.get("/").get_data(as_text=True))["css/chat.css"]
    assert now != before[debug]
    assert b".added-later" in debug_client.get(now).data
    assert debug_client.get(before[debug]).headers["Cache-Control"] == "no-cache"  # the old version
    # (without debug, a process serves the version it started with: a deploy restarts it)
    assert static_urls(steady.test_client().get("/").get_data(as_text=True))["css/chat.css"] == before[steady]
