"""Attack review of issue 18 (bilingual, dark, phone-ready, replies that look finished, light and
cached): each test here fails on the reviewed commit and names what it found."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from playwright.sync_api import expect

from chatbot.rendering import render_markdown

from .fake_openai import Reply
from .helpers import all_messages, conversation_id_from, send
from .test_days import days, move

ASSISTANT = '#messages article.message[data-role="assistant"]'


def test_the_time_zone_cookie_a_real_browser_sets_is_understood(browser, live_server, app, fake_openai):
    """first-paint.js writes ``chatbot_tz=encodeURIComponent(zone)``: "America%2FMexico_City".
    Cookies are not percent-decoded by werkzeug, so i18n.reader_zone gets "America%2FMexico_City",
    ZoneInfo refuses it, and every zone with a "/" (nearly all) is shown in UTC: clock times say
    "UTC" and day separators are UTC days, forever (the cookie is already "set")."""
    context = browser.new_context(timezone_id="America/Mexico_City")
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto(live_server.url + "/")
        box = page.locator("#composer-input")
        box.fill("what time is it?")
        box.press("Enter")
        expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
        # just after midnight UTC is still the evening before in Mexico City
        move(app, [m.id for m in all_messages(app)], datetime(2026, 11, 21, 0, 30, tzinfo=UTC))
        page.reload()
        cookie = {c["name"]: c["value"] for c in context.cookies()}["chatbot_tz"]
        html = page.request.get(page.url).text()  # (the server's own HTML, with the browser's cookies)
        assert "UTC</time>" not in html, f"the browser's cookie {cookie!r} was not understood"
        assert days(html)[0][0] == "2026-11-20", days(html)
    finally:
        context.close()


def test_a_pathological_code_block_does_not_hold_the_worker_for_seconds(app, client, fake_openai):
    """Pygments' AutoIt lexer is worse than quadratic on whitespace (4,000 spaces: ~4 s, 8,000: ~31 s
    of CPU). MAX_CHARS is 20,000, so a reply the model can be talked into writing holds the
    worker (a gevent worker: all of its streams) while the reply is finished and on each view."""
    fake_openai.will(Reply(text="Here:\n\n```autoit\n" + " \t" * 2500 + "x\n```\n"))
    started = time.monotonic()
    cid = conversation_id_from(send(client, "write me an autoit script"))
    took = time.monotonic() - started
    assert took < 2.0, f"a 5,000-character code block took {took:.1f} s to finish"
    started = time.monotonic()
    assert client.get(f"/c/{cid}").status_code == 200
    assert time.monotonic() - started < 2.0


def test_pages_that_follow_accept_language_say_so_in_vary(offline_app):
    """The page's language follows Accept-Language (no cookie), but the response has no
    ``Vary: Accept-Language`` and no Cache-Control: a cache (browser or shared) may hand the
    Spanish page to an English reader and the other way round."""
    client = offline_app.test_client()
    spanish = client.get("/", headers={"Accept-Language": "es", "Accept-Encoding": "identity"})
    assert '<html lang="es"' in spanish.get_data(as_text=True)
    vary = {v.strip().lower() for v in spanish.headers.get("Vary", "").split(",")}
    cache = spanish.headers.get("Cache-Control", "")
    assert "accept-language" in vary or "no-store" in cache or "private" in cache, (vary, cache)


def test_a_punycode_address_is_shown_as_written_not_as_a_lookalike():
    """The model writes the ASCII address ``http://xn--80ak6aa92e.com``; linkify decodes the link
    text to Cyrillic "аррӏе.com", which reads as "apple.com" (an IDN homograph the model never
    wrote). The href stays punycode, so the link looks like apple.com and goes elsewhere."""
    html = str(render_markdown("Official site: http://xn--80ak6aa92e.com"))
    assert "аррӏе" not in html, html
    assert ">http://xn--80ak6aa92e.com</a>" in html, html


def test_a_spanish_visitors_not_found_and_wrong_method_pages_are_in_spanish(offline_app):
    """errors.http_error translates the title, but a plain 404 (a mistyped address, a missing
    static file) or 405 (GET /language) keeps werkzeug's English description on the Spanish page:
    "The requested URL was not found on the server. If you entered the URL manually ..."."""
    client = offline_app.test_client()
    for path in ("/no-such-page", "/static/nope.css", "/language"):
        page = client.get(path, headers={"Accept-Language": "es"})
        body = page.get_data(as_text=True)
        assert page.status_code in (404, 405) and '<html lang="es"' in body
        assert "The requested URL" not in body and "The method is not allowed" not in body, (path, body)


def test_an_immutable_static_file_does_not_vary_by_cookie(offline_app):
    """Versioned static files are public and immutable, yet carry ``Vary: Cookie`` (the session is
    touched on every request): a shared cache (CDN, proxy) keys them by each visitor's cookies, so
    every visitor with a session misses it and the year-long caching only helps the browser."""
    client = offline_app.test_client()
    page = client.get("/").get_data(as_text=True)
    start = page.index("/static/css/chat.css?v=")
    url = page[start : page.index('"', start)]
    response = client.get(url, headers={"Accept-Encoding": "br"})
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    vary = {v.strip().lower() for v in response.headers.get("Vary", "").split(",")}
    assert "cookie" not in vary, response.headers.get("Vary")
