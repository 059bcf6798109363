"""The chat page in a real browser (Debian's Chromium via Playwright) against the live app and the
fake OpenAI server: what a user sees when sending, streaming, stopping, retrying and without JS."""

from __future__ import annotations

import re
import threading

import pytest
from playwright.sync_api import expect

from .fake_openai import Reply
from .helpers import history

CONVERSATION_URL = re.compile(r"/c/[A-Za-z0-9_-]+$")
MESSAGES = "#messages article.message"
USER = '#messages article.message[data-role="user"]'
ASSISTANT = '#messages article.message[data-role="assistant"]'

# About 60 words, with markdown bold that must come out as <strong> once the reply is complete.
STREAMED_REPLY = (
    "First, open **Settings** and go to Battery to see which apps use the most power. "
    "Then lower the screen brightness, turn off background refresh for apps you rarely use, "
    "and switch on low power mode when the charge drops below twenty percent. If the battery "
    "still drains quickly after a day, restart the phone and check for a system update before "
    "booking a repair."
)
LONG_REPLY = " ".join(f"word{i}" for i in range(300))  # 300 tokens: 15 s at 0.05 s a token


@pytest.fixture
def app(app_factory, openai_config):
    """The app as shipped: CSRF protection on (the page carries and refreshes its token)."""
    return app_factory(**openai_config, CSRF_ENABLED=True)


@pytest.fixture
def chat(page, live_server):
    """The chat page, opened fresh; ``chat.page_errors`` collects uncaught JS exceptions only."""
    page.page_errors = []
    page.on("pageerror", lambda exc: page.page_errors.append(str(exc)))
    # every Content-Security-Policy violation the page reports, whatever the console says
    page.add_init_script(
        "window.__csp = [];"
        "document.addEventListener('securitypolicyviolation',"
        " (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    page.goto(live_server.url + "/")
    expect(page.locator("form#composer")).to_be_visible()
    page.wait_for_load_state("load")  # deferred scripts (htmx, chat.js) have run
    return page


def composer(page):
    return page.locator('form#composer textarea[name="content"]')


def send_button(page):
    return page.locator('form#composer button[type="submit"]:not([name="retry"])')


def send_with_enter(page, text: str) -> None:
    box = composer(page)
    box.fill(text)
    box.press("Enter")


def two_conversations(page, first: str, second: str) -> None:
    """Two conversations, each with one answered message; the second one open."""
    send_with_enter(page, first)
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    page.locator('[data-action="new-conversation"]').click()
    expect(page.locator(ASSISTANT)).to_have_count(0)  # (the empty chat is in before typing)
    send_with_enter(page, second)
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")


def assert_no_js_errors(page, allow_422: bool = False, allow_4xx: bool = False) -> None:
    assert page.page_errors == [], page.page_errors
    assert page.evaluate("window.__csp") == [], "CSP violations"
    console = [
        e for e in page.js_errors if not (allow_422 and "422" in e) and not (allow_4xx and "status of 4" in e)
    ]
    assert console == [], console


def test_enter_sends_without_navigation_and_survives_reload(chat, fake_openai):
    page = chat
    page.evaluate("window.__marker = 'still here'")
    send_with_enter(page, "My phone won't charge")

    expect(page.locator(USER)).to_have_count(1)
    expect(page.locator(USER).locator(".message-body")).to_have_text("My phone won't charge")
    reply = page.locator(ASSISTANT)
    expect(reply).to_have_count(1)
    expect(reply).to_have_attribute("data-status", "complete")
    expect(reply.locator(".message-body")).to_contain_text("Hello from the fake model.")

    assert page.evaluate("window.__marker") == "still here", "the page navigated"
    expect(composer(page)).to_have_value("")
    expect(composer(page)).to_be_focused()
    expect(page).to_have_url(CONVERSATION_URL)
    address = page.url

    page.reload()
    assert page.url == address
    expect(page.locator(MESSAGES)).to_have_count(2)
    expect(page.locator(USER).locator(".message-body")).to_have_text("My phone won't charge")
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    expect(page.locator(ASSISTANT).locator(".message-body")).to_contain_text("Hello from the fake model.")
    assert_no_js_errors(page)


def test_busy_indicator_and_disabled_send_while_answering(chat, fake_openai):
    page = chat
    fake_openai.will(Reply(first_token_delay=1.0))
    busy = page.locator("form#composer .busy.htmx-indicator")
    expect(busy).to_be_hidden()
    expect(send_button(page)).to_be_enabled()

    send_with_enter(page, "Why is my screen dim?")
    expect(busy).to_be_visible()
    expect(busy).to_have_text("Assistant is answering…")
    expect(send_button(page)).to_be_disabled()
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "streaming")

    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    expect(busy).to_be_hidden()
    expect(send_button(page)).to_be_enabled()
    assert_no_js_errors(page)


def test_reply_streams_in_growing_pieces_then_renders_markdown(chat, fake_openai):
    page = chat
    fake_openai.will(Reply(text=STREAMED_REPLY, token_delay=0.03))
    # Sample in the page itself every 50 ms, so the test's own round trips don't skew it.
    page.evaluate("""() => {
        window.__lengths = [];
        window.__sampler = setInterval(() => {
            const body = document.querySelector(
                '#messages article[data-role="assistant"][data-status="streaming"] .message-body');
            if (body) window.__lengths.push(body.textContent.length);
        }, 50);
    }""")
    send_with_enter(page, "How can I make my battery last longer?")

    reply = page.locator(ASSISTANT)
    expect(reply).to_have_attribute("data-status", "complete")
    lengths = page.evaluate("() => { clearInterval(window.__sampler); return window.__lengths; }")

    growing = sorted(set(n for n in lengths if n > 0))
    assert len(growing) >= 3, f"text did not arrive in pieces: {lengths}"
    assert lengths == sorted(lengths), f"streamed text shrank: {lengths}"
    assert max(lengths) <= len(STREAMED_REPLY)

    body = reply.locator(".message-body")
    expect(body.locator("strong")).to_have_text("Settings")
    expect(body).to_contain_text("booking a repair.")
    expect(body).not_to_contain_text("**")
    assert_no_js_errors(page)


def _stop_partway(page, fake_openai, stop) -> None:
    """Send, wait for some streamed text, stop it with ``stop(page)``, check what stays saved."""
    fake_openai.will(Reply(text=LONG_REPLY, token_delay=0.05))
    send_with_enter(page, "Tell me everything about eSIM")
    reply = page.locator(ASSISTANT)
    expect(reply).to_have_attribute("data-status", "streaming")
    expect(reply.locator(".message-body")).to_contain_text("word3")  # some text is visible

    stop(page)

    expect(reply).to_have_attribute("data-status", "interrupted")
    expect(reply.locator(".message-notice")).to_have_text("Stopped.")
    partial = reply.locator(".message-body").inner_text().strip()
    assert partial.startswith("word0 word1 word2 word3")
    assert len(partial) < len(LONG_REPLY)
    expect(page.locator('[data-action="stop"]')).to_have_count(0)
    expect(page.locator(".busy.htmx-indicator")).to_be_hidden()

    page.reload()
    expect(page.locator(MESSAGES)).to_have_count(2)
    reply = page.locator(ASSISTANT)
    expect(reply).to_have_attribute("data-status", "interrupted")
    expect(reply.locator(".message-notice")).to_have_text("Stopped.")
    assert reply.locator(".message-body").inner_text().strip() == partial
    assert_no_js_errors(page)


def test_stop_button_keeps_the_partial_reply(chat, fake_openai):
    _stop_partway(
        chat,
        fake_openai,
        lambda page: page.locator(f'{ASSISTANT}[data-status="streaming"] [data-action="stop"]').click(),
    )


def test_escape_in_the_composer_stops_the_reply(chat, fake_openai):
    def press_escape(page):
        expect(composer(page)).to_be_focused()
        composer(page).press("Escape")

    _stop_partway(chat, fake_openai, press_escape)


def test_failed_reply_shows_the_reason_and_retry_reuses_the_turn(chat, fake_openai):
    page = chat
    fake_openai.will(Reply(status=500))
    send_with_enter(page, "Is my warranty still valid?")

    reply = page.locator(ASSISTANT)
    expect(reply).to_have_attribute("data-status", "error")
    notice = reply.locator(".message-notice--error")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("had a problem answering")
    expect(notice).not_to_contain_text("HTTP")
    expect(notice).to_contain_text("try again")
    retry = reply.locator('[data-action="retry"]')
    expect(retry).to_be_visible()

    retry.click()  # the next model request gets the default, successful reply
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    expect(page.locator(ASSISTANT).locator(".message-body")).to_contain_text("Hello from the fake model.")
    expect(page.locator(USER)).to_have_count(1)
    expect(page.locator(ASSISTANT)).to_have_count(1)
    expect(page.locator('[data-action="retry"]')).to_have_count(0)

    page.reload()
    expect(page.locator(MESSAGES)).to_have_count(2)
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    assert len(fake_openai.requests) == 2
    # The retried request asks the same question once, without the failed reply.
    assert [m["role"] for m in history(fake_openai.requests[1])] == ["system", "user"]
    assert_no_js_errors(page)


def test_double_clicking_retry_asks_for_one_retry(chat, fake_openai):
    page = chat
    fake_openai.will(Reply(status=500), Reply(status=500))
    send_with_enter(page, "Why won't it charge?")
    retry = page.locator(ASSISTANT).locator('[data-action="retry"]')
    expect(retry).to_be_visible()
    retry.dblclick()
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "error")
    expect(page.locator(ASSISTANT).locator('[data-action="retry"]')).to_be_visible()
    page.wait_for_timeout(300)  # a queued second retry would have been sent by now
    assert len(fake_openai.requests) == 2  # the message, then one retry
    expect(page.locator("#composer-error")).to_have_text("")

    send_with_enter(page, "   ")  # a refused message leaves the Retry button alone
    expect(page.locator("#composer-error")).to_have_text("Please type a message first.")
    expect(page.locator('[data-action="retry"]')).to_have_count(1)
    send_with_enter(page, "Another question")  # a new turn: the old Retry goes
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "complete")
    expect(page.locator('[data-action="retry"]')).to_have_count(0)
    assert_no_js_errors(page, allow_422=True)


def test_shift_enter_makes_a_new_line_instead_of_sending(chat, fake_openai):
    page = chat
    box = composer(page)
    box.fill("line one")
    box.press("Shift+Enter")
    box.press_sequentially("line two")
    expect(box).to_have_value("line one\nline two")
    expect(page.locator(MESSAGES)).to_have_count(0)
    assert fake_openai.requests == []

    box.press("Enter")
    user_body = page.locator(USER).locator(".message-body")
    expect(user_body).to_have_text("line one\nline two")
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    assert fake_openai.requests[0].json["messages"][-1] == {"role": "user", "content": "line one\nline two"}

    page.reload()
    expect(page.locator(USER).locator(".message-body")).to_have_text("line one\nline two")
    assert_no_js_errors(page)


def test_blank_message_is_refused_with_a_hint(chat, fake_openai):
    page = chat
    send_with_enter(page, "    ")
    expect(page.locator("#composer-error")).to_have_text("Please type a message first.")
    expect(page.locator("#composer-error")).to_be_visible()
    expect(page.locator(MESSAGES)).to_have_count(0)
    expect(page.locator(".busy.htmx-indicator")).to_be_hidden()
    expect(send_button(page)).to_be_enabled()
    assert fake_openai.requests == []
    assert page.page_errors == []
    # The only console error allowed is the browser's own note about the 422 response.
    assert all("422" in e for e in page.js_errors), page.js_errors

    # The hint goes away once a real message is accepted.
    send_with_enter(page, "Now a real question")
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    expect(page.locator("#composer-error")).to_have_text("")


def test_without_javascript_the_form_posts_and_redirects(browser, live_server, fake_openai):
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto(live_server.url + "/")
        page.locator('form#composer textarea[name="content"]').fill("Is water damage covered?")
        with page.expect_navigation():
            page.locator('form#composer button[type="submit"]').click()

        expect(page).to_have_url(CONVERSATION_URL)
        expect(page.locator(USER).locator(".message-body")).to_have_text("Is water damage covered?")
        reply = page.locator(ASSISTANT)
        expect(reply).to_have_attribute("data-status", "complete")
        expect(reply.locator(".message-body")).to_contain_text("Hello from the fake model.")
        expect(reply.locator(".message-body strong")).to_have_text("Settings > Battery")
        expect(page.locator(MESSAGES)).to_have_count(2)
    finally:
        context.close()


def test_a_normal_turn_raises_no_javascript_errors(chat, fake_openai):
    page = chat
    send_with_enter(page, "Hello?")
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    send_with_enter(page, "And a second message in the same conversation")
    expect(page.locator(MESSAGES)).to_have_count(4)
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "complete")
    expect(page.locator(ASSISTANT).last.locator(".message-body")).to_contain_text(
        "Hello from the fake model."
    )
    assert len(fake_openai.requests) == 2
    assert [m["role"] for m in history(fake_openai.requests[1])] == [
        "system",
        "user",
        "assistant",
        "user",
    ]
    assert page.page_errors == [], page.page_errors
    assert page.js_errors == [], page.js_errors


def test_a_second_tab_cannot_start_a_turn_while_a_reply_is_live(chat, live_server, fake_openai):
    """Two tabs of one browser: while tab A's reply streams, tab B's message is refused with a
    clear line in its composer, and its draft stays; once A's reply ends, B can send."""
    page = chat
    send_with_enter(page, "First question")
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    address = page.url

    other = page.context.new_page()
    other.goto(address)
    other.wait_for_load_state("load")
    fake_openai.will(Reply(LONG_REPLY[:400], token_delay=0.05))
    send_with_enter(page, "A long answer please")
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "streaming")

    send_with_enter(other, "Me too, from the other tab")
    expect(other.locator("#composer-error")).to_contain_text("still answering in this conversation")
    expect(composer(other)).to_have_value("Me too, from the other tab")
    expect(other.locator(USER)).to_have_count(1)  # nothing of B's was added

    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "complete", timeout=15_000)
    other.locator('form#composer button[type="submit"]:not([name="retry"])').click()
    expect(other.locator(USER).last.locator(".message-body")).to_have_text("Me too, from the other tab")
    expect(other.locator(ASSISTANT).last).to_have_attribute("data-status", "complete")
    other.reload()  # the whole conversation, in order: A's turn, then B's
    expect(other.locator(USER).locator(".message-body")).to_have_text(
        ["First question", "A long answer please", "Me too, from the other tab"]
    )
    assert_no_js_errors(page, allow_4xx=True)


ATTACK_PAGE = """<!doctype html><title>win a phone</title>
<form id="f" method="post" action="{target}"><input name="content" value="planted by another site"></form>
<script>
fetch("{target}", {{method: "POST", credentials: "include", mode: "no-cors",
  headers: {{"HX-Request": "true", "Content-Type": "application/x-www-form-urlencoded"}},
  body: "content=planted+by+fetch"}}).finally(() => document.getElementById("f").submit());
</script>"""


@pytest.mark.parametrize("origin", ["localhost", "127.0.0.1"], ids=["cross-site", "same-site-other-port"])
def test_a_page_on_another_origin_cannot_post_into_the_visitors_chat(chat, live_server, fake_openai, origin):
    """The visitor has a conversation; a page elsewhere (another site, or another port of this
    host) makes their browser post into it with their cookie: refused, nothing changes."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    page = chat
    send_with_enter(page, "My own question")
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    address = page.url
    cookie = next(c for c in page.context.cookies() if c["name"] == "chatbot_session")["value"]
    target = address + "/messages"

    class Attack(BaseHTTPRequestHandler):
        def do_GET(self):
            body = ATTACK_PAGE.format(target=target).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    evil = ThreadingHTTPServer(("127.0.0.1", 0), Attack)
    threading.Thread(target=evil.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        page.goto(f"http://{origin}:{evil.server_address[1]}/")
        expect(page.locator("body")).to_contain_text("came from another website")
    finally:
        evil.shutdown()
        evil.server_close()
    assert len(fake_openai.requests) == 1  # no model call was made for the planted messages
    page.goto(address)
    expect(page.locator(USER).locator(".message-body")).to_have_text(["My own question"])
    assert next(c for c in page.context.cookies() if c["name"] == "chatbot_session")["value"] == cookie


def test_new_conversation_right_after_the_first_message(chat, fake_openai):
    """The first message issues the browser's owner and a new CSRF token: every form on the page
    (the composer and New conversation) must carry the new one, without a reload."""
    page = chat
    send_with_enter(page, "First conversation")
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    first = page.url
    page.locator('[data-action="new-conversation"]').click()
    expect(page.locator(MESSAGES)).to_have_count(0)
    expect(page.locator("#conversation-title")).to_have_text("New conversation")
    send_with_enter(page, "Second conversation")
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    assert page.url != first
    page.goto(first)
    expect(page.locator(USER).locator(".message-body")).to_have_text(["First conversation"])
    assert_no_js_errors(page)


def _long_conversation(app, live_server, page, fake_openai, older: int) -> None:
    """A conversation with ``older`` filler messages before one real exchange, opened afresh."""
    from .test_long import fill

    page.goto(live_server.url + "/")
    send_with_enter(page, "first question")
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "complete")
    cid = page.url.rsplit("/", 1)[1]
    fill(app, cid, older)
    page.goto(f"{live_server.url}/c/{cid}")
    page.wait_for_load_state("load")


def test_jump_to_latest_appears_when_scrolled_up_while_a_reply_streams(app, live_server, chat, fake_openai):
    page = chat
    _long_conversation(app, live_server, page, fake_openai, 30)
    jump = page.locator('[data-action="jump-latest"]')
    fake_openai.will(Reply(LONG_REPLY, token_delay=0.05))
    send_with_enter(page, "Tell me everything")
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "streaming")
    expect(jump).to_be_hidden()  # following the reply at the bottom: nothing to jump to
    page.locator("#messages").hover()
    page.mouse.wheel(0, -5000)  # the reader scrolls up
    expect(jump).to_be_visible()
    jump.focus()
    page.keyboard.press("Enter")  # keyboard reachable
    expect(jump).to_be_hidden()
    at_bottom = "m => m.scrollHeight - m.scrollTop - m.clientHeight < 80"
    assert page.locator("#messages").evaluate(at_bottom)
    page.wait_for_timeout(500)  # the text keeps coming: the view keeps following it
    assert page.locator("#messages").evaluate(at_bottom)
    page.keyboard.press("Escape")
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "interrupted")
    page.wait_for_timeout(200)  # the reply, replaced by its final form, is still in view
    assert page.locator("#messages").evaluate(at_bottom)
    assert_no_js_errors(page)


def test_after_jump_to_latest_the_view_stays_at_the_end_as_the_reply_completes(
    app, live_server, chat, fake_openai
):
    page = chat
    _long_conversation(app, live_server, page, fake_openai, 30)
    fake_openai.will(
        Reply("## Steps\n\n" + "\n".join(f"- step {i}: **do** it" for i in range(40)), token_delay=0.02)
    )
    send_with_enter(page, "Tell me everything")
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "streaming")
    page.locator("#messages").hover()
    page.mouse.wheel(0, -5000)
    jump = page.locator('[data-action="jump-latest"]')
    expect(jump).to_be_visible()
    jump.click()
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "complete", timeout=15_000)
    page.wait_for_timeout(300)  # the reply, replaced by its final (formatted, taller) form
    gap = page.locator("#messages").evaluate("m => m.scrollHeight - m.scrollTop - m.clientHeight")
    assert gap < 80, f"the view is {gap} px above the end"
    assert_no_js_errors(page)


def test_show_earlier_messages_keeps_the_readers_place(app, live_server, chat, fake_openai):
    page = chat
    _long_conversation(app, live_server, page, fake_openai, 80)
    messages = page.locator("#messages")
    messages.evaluate("m => m.scrollTo(0, 0)")
    first = page.locator(MESSAGES).first
    first_id = first.get_attribute("id")
    before = first.bounding_box()["y"]
    page.get_by_role("link", name="Show earlier messages").click()
    expect(page.locator(MESSAGES)).to_have_count(82)  # all of them now (50 a page)
    after = page.locator(f"#{first_id}").bounding_box()["y"]
    assert abs(after - before) < 3, (before, after)  # the same message, in the same place
    assert_no_js_errors(page)


def test_a_send_that_cannot_reach_the_server_keeps_the_draft_and_says_so(chat, fake_openai):
    page = chat
    page.context.set_offline(True)
    send_with_enter(page, "Is my phone still under warranty?")
    expect(page.locator("#composer-error")).to_contain_text("You're offline. Your message is still here")
    expect(composer(page)).to_have_value("Is my phone still under warranty?")
    expect(page.locator(MESSAGES)).to_have_count(0)
    page.context.set_offline(False)
    send_button(page).click()
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    expect(page.locator("#composer-error")).to_be_empty()
    assert page.page_errors == [] and page.evaluate("window.__csp") == []  # (the console logs the
    # failed fetch: that is the point)


WHOLE_REPLY = " ".join(f"word{i}" for i in range(80))  # 80 tokens: 4 s at 0.05 s a token


def test_a_broken_stream_says_connection_lost_and_catches_up_with_the_whole_reply(
    app, live_server, page, fake_openai
):
    from .servers import RoundRobin

    proxy = RoundRobin(live_server.server.server_port)  # the network between browser and server
    try:
        page.goto(proxy.url + "/")
        page.wait_for_load_state("load")
        fake_openai.will(Reply(WHOLE_REPLY, token_delay=0.05))
        send_with_enter(page, "Tell me everything")
        reply = page.locator(ASSISTANT)
        expect(reply).to_have_attribute("data-status", "streaming")
        expect(reply.locator(".message-body")).to_contain_text("word5")
        proxy.cut()  # the connection drops mid-reply
        expect(reply.locator(".message-connection")).to_contain_text("Connection lost — reconnecting…")
        # the reply went on without the page, which follows it at its address until it ends
        expect(reply).to_have_attribute("data-status", "complete", timeout=15_000)
        expect(reply.locator(".message-body")).to_have_text(WHOLE_REPLY)
        expect(reply.locator('[data-action="stop"]')).to_have_count(0)
        expect(reply.locator(".message-connection")).to_have_count(0)
        assert len(fake_openai.requests) == 1
    finally:
        proxy.close()


def test_offline_mid_reply_catches_up_with_the_whole_reply_once_back_online(chat, fake_openai):
    page = chat
    fake_openai.will(Reply(WHOLE_REPLY, token_delay=0.05))
    send_with_enter(page, "Tell me everything")
    reply = page.locator(ASSISTANT)
    expect(reply.locator(".message-body")).to_contain_text("word5")
    page.context.set_offline(True)
    expect(reply.locator(".message-connection")).to_contain_text("Connection lost — reconnecting…")
    expect(reply.locator(".message-connection")).to_contain_text("can't reach the server", timeout=10_000)
    page.context.set_offline(False)
    expect(reply).to_have_attribute("data-status", "complete", timeout=15_000)
    expect(reply.locator(".message-body")).to_have_text(WHOLE_REPLY)
    assert len(fake_openai.requests) == 1


def test_a_server_killed_mid_reply_reads_interrupted_with_retry_once_back(cluster, page, fake_openai):
    (server,) = cluster.start(1)
    page.goto(server.url + "/")
    page.wait_for_load_state("load")
    fake_openai.will(Reply(WHOLE_REPLY, token_delay=0.05), Reply("Here it is again, whole."))
    send_with_enter(page, "Tell me everything")
    reply = page.locator(ASSISTANT)
    expect(reply.locator(".message-body")).to_contain_text("word20")  # (a second: some of it saved)
    server.kill()  # SIGKILL, master and worker: nothing gets to save anything
    connection = reply.locator(".message-connection")
    expect(connection).to_contain_text("Connection lost — reconnecting…")
    expect(connection).to_contain_text("can't reach the server", timeout=10_000)
    cluster.start(1, port=server.port)  # back at the same address
    expect(reply).to_have_attribute("data-status", "interrupted", timeout=10_000)
    expect(reply.locator(".message-body")).to_contain_text("word0")
    expect(reply.locator(".message-notice")).to_contain_text("Interrupted")
    reply.locator('[data-action="retry"]').click()
    expect(reply).to_have_attribute("data-status", "complete")
    expect(reply.locator(".message-body")).to_have_text("Here it is again, whole.")


def test_a_reload_mid_reply_shows_the_whole_reply_from_one_model_call(chat, fake_openai):
    page = chat
    fake_openai.will(Reply(WHOLE_REPLY, token_delay=0.05))
    send_with_enter(page, "Tell me everything")
    expect(page.locator(ASSISTANT).locator(".message-body")).to_contain_text("word5")
    page.reload()
    reply = page.locator(ASSISTANT)
    expect(reply).to_have_attribute("data-status", "streaming")  # followed live...
    expect(reply.locator('[data-action="stop"]')).to_be_visible()
    expect(reply).to_have_attribute("data-status", "complete", timeout=15_000)  # ...to its end
    expect(reply.locator(".message-body")).to_have_text(WHOLE_REPLY)
    assert len(fake_openai.requests) == 1
    assert_no_js_errors(page)


def test_copy_puts_the_messages_own_markdown_on_the_clipboard(chat, live_server, fake_openai):
    page = chat
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    fake_openai.will(Reply(STREAMED_REPLY))
    send_with_enter(page, "My battery drains fast")
    reply = page.locator(ASSISTANT)
    expect(reply).to_have_attribute("data-status", "complete")
    expect(reply.locator(".message-body strong")).to_have_text("Settings")  # shown formatted...
    copy = reply.locator('[data-action="copy"]')
    copy.focus()  # keyboard reachable (and shown on focus)
    expect(copy).to_have_css("opacity", "1")
    page.keyboard.press("Enter")
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == STREAMED_REPLY  # ...copied as written
    page.locator(USER).locator('[data-action="copy"]').click()
    expect(page.locator(USER).locator('[data-action="copy"]')).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == "My battery drains fast"
    page.reload()  # the same on a page loaded from the server
    page.locator(ASSISTANT).locator('[data-action="copy"]').click()
    assert page.evaluate("navigator.clipboard.readText()") == STREAMED_REPLY
    assert_no_js_errors(page)


def test_rating_an_answer_shows_it_chosen_takes_a_comment_and_survives_a_reload(chat, fake_openai):
    page = chat
    send_with_enter(page, "My screen flickers")
    reply = page.locator(ASSISTANT)
    expect(reply).to_have_attribute("data-status", "complete")
    down = reply.locator('[data-action="feedback-down"]')
    down.focus()
    page.keyboard.press("Enter")
    chosen = page.locator(ASSISTANT).locator('[data-action="feedback-down"]')
    expect(chosen).to_have_attribute("aria-pressed", "true")
    comment = page.locator(ASSISTANT).locator('input[name="comment"]')
    comment.fill("It still flickers after the update")
    comment.press("Enter")  # (Enter in the comment box keeps the rating chosen)
    expect(page.locator(ASSISTANT).locator('[data-action="feedback-comment"]')).to_have_text("Update")
    expect(page.locator(ASSISTANT).locator('[data-action="feedback-down"]')).to_have_attribute(
        "aria-pressed", "true"
    )
    page.reload()
    reply = page.locator(ASSISTANT)
    expect(reply.locator('[data-action="feedback-down"]')).to_have_attribute("aria-pressed", "true")
    expect(reply.locator('[data-action="feedback-up"]')).to_have_attribute("aria-pressed", "false")
    expect(reply.locator('input[name="comment"]')).to_have_value("It still flickers after the update")
    page.evaluate(
        "document.querySelectorAll('input[name=csrf_token], meta[name=csrf-token]')"
        ".forEach(e => e.setAttribute(e.tagName === 'META' ? 'content' : 'value', 'stale'))"
    )
    reply.locator('[data-action="feedback-up"]').click()  # refused (a stale page): said in the
    expect(page.locator("#composer-error")).to_contain_text("out of date")  # composer's line...
    expect(page.locator(ASSISTANT).locator(".message-body")).to_be_visible()  # ...the answer stays
    expect(page.locator(ASSISTANT).locator('[data-action="feedback-down"]')).to_have_attribute(
        "aria-pressed", "true"
    )
    assert_no_js_errors(page, allow_4xx=True)


def test_regenerate_and_edit_keep_versions_behind_a_switcher(chat, fake_openai):
    page = chat
    fake_openai.will(Reply("a1"), Reply("a2"), Reply("a2, regenerated"), Reply("a1 for the edit"))
    send_with_enter(page, "q1")
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    send_with_enter(page, "q2")
    expect(page.locator(ASSISTANT).nth(1)).to_contain_text("a2")
    expect(page.locator(ASSISTANT).nth(1)).to_have_attribute("data-status", "complete")
    composer(page).fill("a draft I keep")

    # regenerate the latest answer: a second version in its place, the draft untouched
    page.locator(ASSISTANT).nth(1).locator('[data-action="regenerate"]').click()
    latest = page.locator(ASSISTANT).nth(1)
    expect(latest).to_contain_text("a2, regenerated")
    expect(latest).to_have_attribute("data-status", "complete")
    expect(latest.locator(".versions-count")).to_have_text("2/2")
    expect(page.locator(ASSISTANT)).to_have_count(2)
    expect(composer(page)).to_have_value("a draft I keep")
    assert [m["content"] for m in history(fake_openai.requests[2])[1:]] == ["q1", "a1", "q2"]

    # ‹ shows the first version; the focus stays on the switcher
    latest.locator('[data-action="version-prev"]').click()
    latest = page.locator(ASSISTANT).nth(1)
    expect(latest).to_contain_text("a2")
    expect(latest.locator(".versions-count")).to_have_text("1/2")
    expect(latest.locator('[data-action="version-next"]')).to_be_focused()
    page.keyboard.press("Enter")  # › back to the second, from the keyboard
    expect(page.locator(ASSISTANT).nth(1).locator(".versions-count")).to_have_text("2/2")

    # edit the first question: an editor opens inside it; Esc cancels, Enter resends a new
    # version of it; what followed the old one is set aside; the composer's draft stays
    first = page.locator(USER).first
    first.hover()
    first.locator('[data-action="edit"]').click()
    editor = first.locator('textarea[name="edit_content"]')
    expect(editor).to_be_focused()
    expect(editor).to_have_value("q1")
    editor.press("Escape")
    expect(first.locator('textarea[name="edit_content"]')).to_have_count(0)
    expect(first.locator(".message-body")).to_have_text("q1")
    expect(first.locator('[data-action="edit"]')).to_be_focused()
    page.keyboard.press("Enter")  # the Edit button, from the keyboard
    editor = first.locator('textarea[name="edit_content"]')
    editor.fill("q1, said better")
    editor.press("Enter")
    expect(page.locator(USER)).to_have_count(1)
    expect(page.locator(USER).first).to_contain_text("q1, said better")
    expect(page.locator(USER).first.locator(".versions-count")).to_have_text("2/2")
    expect(page.locator(ASSISTANT)).to_have_count(1)
    expect(page.locator(ASSISTANT).first).to_contain_text("a1 for the edit")
    expect(page.locator(ASSISTANT).first).to_have_attribute("data-status", "complete")
    expect(composer(page)).to_have_value("a draft I keep")
    assert [m["content"] for m in history(fake_openai.requests[3])[1:]] == ["q1, said better"]

    # the old question comes back with the whole conversation that followed it
    page.locator(USER).first.locator('[data-action="version-prev"]').click()
    expect(page.locator(USER)).to_have_count(2)
    expect(page.locator(ASSISTANT).nth(1)).to_contain_text("a2, regenerated")
    page.reload()
    expect(page.locator(USER)).to_have_count(2)
    expect(page.locator(USER).first.locator(".versions-count")).to_have_text("1/2")
    assert_no_js_errors(page)


# A support answer in Markdown, three times taller than the window: headings, bold, lists, tables
# and code blocks; streamed slowly enough to see each block finished before the end. (Streamed as
# raw text and rendered only at the end, this one made the page jump by CLS 0.37 at its end, in
# about half the runs.)
MARKDOWN_SECTION = """## {n}. Check the battery

First, open **Settings** and go to Battery to see which apps use the most power.

- Lower the screen brightness.
- Turn off background refresh for apps you rarely use.
- Switch on **low power mode** below twenty percent.

| Setting | Where | Saves |
| --- | --- | --- |
| Brightness | Display | a lot |
| Refresh | General | some |

To read the battery's state from a computer:

```
adb shell dumpsys battery
adb shell dumpsys batterystats --reset
```

If it still drains:

1. Restart the phone.
2. Check for a system update.
3. Book a repair if a day's charge lasts less than a morning.
"""
MARKDOWN_REPLY = "\n".join(MARKDOWN_SECTION.format(n=n) for n in (1, 2, 3)) + "\nThat is all."

# Measured in the page itself, so that the test's own round trips don't skew anything: every
# layout shift (buffered: none is missed), the moment the reply stops streaming, and after each
# change of the messages, what the reply being written shows.
RECORD_THE_REPLY = """() => {
    window.__shifts = [];
    new PerformanceObserver((list) => {
        for (const e of list.getEntries()) {
            if (!e.hadRecentInput) window.__shifts.push([e.startTime, e.value]);
        }
    }).observe({type: "layout-shift", buffered: true});
    window.__ended = null;
    window.__seen = {table: false, li: false, code: false, markers: [], live: []};
    const messages = document.getElementById("messages");
    new MutationObserver(() => {
        const reply = messages.querySelector('article[data-role="assistant"]');
        if (!reply) return;
        if (reply.dataset.status !== "streaming") {
            if (window.__ended === null) window.__ended = performance.now();
            return;
        }
        const body = reply.querySelector(".message-body");
        const seen = window.__seen;
        seen.table ||= body.querySelector("table td") !== null;
        seen.li ||= body.querySelector("li") !== null;
        seen.code ||= body.querySelector("pre code") !== null;
        // every block shown but the last (which may still be half written) is finished
        const blocks = [...body.children].flatMap((c) => c.matches(".md-tail") ? [...c.children] : [c]);
        for (const block of blocks.slice(0, -1)) {
            for (const marker of ["**", "##", "```", "| ---"]) {
                if (block.textContent.includes(marker)) seen.markers.push(marker + " in " + block.outerHTML);
            }
        }
        body.querySelectorAll("script, img, iframe, template, hx-partial, a[href^='javascript']")
            .forEach((e) => seen.live.push(e.outerHTML));
        body.querySelectorAll("*").forEach((e) => {
            for (const a of e.attributes) if (a.name.startsWith("on")) seen.live.push(e.outerHTML);
        });
    }).observe(messages, {childList: true, subtree: true, characterData: true});
}"""


def layout_shift(page) -> tuple[float, float]:
    """Cumulative layout shift while the reply streamed, and from its end on."""
    shifts, ended = page.evaluate("[window.__shifts, window.__ended]")
    assert ended is not None
    return sum(v for t, v in shifts if t < ended), sum(v for t, v in shifts if t >= ended)


def test_markdown_renders_while_it_streams_and_nothing_moves_at_the_end(chat, fake_openai):
    page = chat
    page.evaluate(RECORD_THE_REPLY)
    fake_openai.will(Reply(MARKDOWN_REPLY, token_delay=0.01))  # ~4 s
    send_with_enter(page, "My battery drains fast")
    reply = page.locator(ASSISTANT)
    expect(reply).to_have_attribute("data-status", "streaming")
    body = reply.locator(".message-body")
    # formatted while it is written: the first heading and bold are there long before the end
    expect(body.locator("h4").first).to_have_text("1. Check the battery")
    expect(body.locator("strong").first).to_have_text("Settings")
    assert reply.get_attribute("data-status") == "streaming"

    expect(reply).to_have_attribute("data-status", "complete", timeout=15_000)
    page.wait_for_timeout(300)  # (a shift is reported in the frame after it)
    seen = page.evaluate("window.__seen")
    assert seen["table"] and seen["li"] and seen["code"], seen  # all of them before the reply ended
    assert seen["markers"] == [], seen["markers"][:3]  # no Markdown left raw in a finished block
    assert seen["live"] == []
    during, at_end = layout_shift(page)
    assert during < 0.05, during
    assert at_end < 0.05, at_end
    # the finished reply, rendered whole, is what was streamed
    expect(body.locator("table")).to_have_count(3)
    expect(body.locator("ol > li")).to_have_count(9)
    expect(body.locator("pre code").last).to_contain_text("adb shell dumpsys battery")
    expect(body).not_to_contain_text("**")
    assert_no_js_errors(page)


def test_markup_the_model_writes_never_becomes_live_while_it_streams(chat, fake_openai):
    page = chat
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.evaluate(RECORD_THE_REPLY)
    attacks = (
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(2)>",
        "[click me](javascript:alert(3))",
        '<a href="javascript:alert(4)">tap</a>',
        '</hx-partial><hx-partial hx-target="#composer-error" hx-swap="innerHTML">pwned</hx-partial>',
    )
    text = "Careful:\n\n" + "".join(f"- {a}\n" for a in attacks) + "\n" + "\n\n".join(attacks) + "\n\nDone."
    fake_openai.will(Reply(text, token_delay=0.02))
    send_with_enter(page, "Show me some HTML")
    reply = page.locator(ASSISTANT)
    expect(reply).to_have_attribute("data-status", "complete", timeout=15_000)
    seen = page.evaluate("window.__seen")
    assert seen["li"] and seen["live"] == [], seen["live"]
    body = reply.locator(".message-body")
    expect(body).to_contain_text("<script>alert(1)</script>")  # shown as text...
    assert body.locator("script, img, a[href^='javascript']").count() == 0  # ...never as markup
    expect(page.locator("#composer-error")).to_have_text("")
    assert dialogs == []
    assert_no_js_errors(page)


def test_one_editor_at_a_time_nothing_queued_behind_a_reply_and_offline_clicks_say_so(chat, fake_openai):
    page = chat
    fake_openai.will(Reply("a1"), Reply("a2"), Reply(WHOLE_REPLY, token_delay=0.05))
    send_with_enter(page, "q1")
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    send_with_enter(page, "q2")
    expect(page.locator(ASSISTANT).nth(1)).to_have_attribute("data-status", "complete")
    # two editors opened one after the other: only the second stays, and it sends its own text
    page.locator(USER).nth(0).locator('[data-action="edit"]').click()
    page.locator(USER).nth(0).locator('textarea[name="edit_content"]').fill("half-typed, abandoned")
    page.locator(USER).nth(1).locator('[data-action="edit"]').click()
    expect(page.locator('textarea[name="edit_content"]')).to_have_count(1)
    expect(page.locator(USER).nth(0).locator(".message-body")).to_be_visible()
    # while a reply streams, an edit can't be sent (Enter says why): nothing is queued until the
    # reply ends
    send_with_enter(page, "a long one")
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "streaming")
    page.locator(USER).nth(0).locator('[data-action="edit"]').click()
    editor = page.locator('textarea[name="edit_content"]')
    editor.fill("q1 changed mid-reply")
    expect(page.locator('[data-action="edit-send"]')).to_be_disabled()
    editor.press("Enter")
    expect(page.locator("#composer-error")).to_contain_text("wait for the reply to finish")
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "complete", timeout=15_000)
    expect(page.locator('[data-action="edit-send"]')).to_be_enabled()
    page.wait_for_timeout(500)
    assert len(fake_openai.requests) == 3  # nothing went off when the reply ended
    # offline, a rating says it didn't reach the server
    page.locator(ASSISTANT).last.hover()
    page.context.set_offline(True)
    page.locator(ASSISTANT).last.locator('[data-action="feedback-up"]').click()
    expect(page.locator("#composer-error")).to_contain_text("offline")
    page.context.set_offline(False)


def test_the_sidebar_switches_conversations_in_place_with_back_forward_and_reload(chat, fake_openai):
    page = chat
    fake_openai.will(Reply("About the battery."), Reply("About the screen."), Reply("More on the battery."))
    send_with_enter(page, "Battery drains fast")
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    first_url = page.url
    page.locator('[data-action="new-conversation"]').click()
    expect(page.locator(ASSISTANT)).to_have_count(0)
    expect(page.locator('[data-action="new-conversation"]')).to_be_hidden()  # (an empty chat)
    page.evaluate("window.__marker = 'no reload'")
    send_with_enter(page, "Cracked screen")
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    second_url = page.url
    rows = page.locator("#conversations a[data-conversation-id]")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("Cracked screen")  # the newest at the top
    expect(rows.first).to_have_attribute("aria-current", "page")
    expect(page).to_have_title(re.compile("^Cracked screen"))

    rows.nth(1).click()  # the older one, swapped in place: the address follows, no reload
    expect(page).to_have_url(first_url)
    expect(page.locator(ASSISTANT)).to_contain_text("About the battery.")
    expect(page).to_have_title(re.compile("^Battery drains fast"))
    expect(page.locator('#conversations a[aria-current="page"]')).to_contain_text("Battery drains fast")
    assert page.evaluate("window.__marker") == "no reload"
    # the chat works in the conversation swapped in, and it moves to the top of the list
    send_with_enter(page, "Still draining")
    expect(page.locator(ASSISTANT).last).to_contain_text("More on the battery.")
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "complete")
    expect(rows.first).to_contain_text("Battery drains fast")
    expect(rows).to_have_count(2)
    assert [m["content"] for m in history(fake_openai.requests[2])[1:]] == [
        "Battery drains fast",
        "About the battery.",
        "Still draining",
    ]
    # Back and Forward load that address's page afresh (a reload: slow on a busy machine)
    page.go_back()
    expect(page).to_have_url(second_url)
    expect(page.locator(ASSISTANT)).to_contain_text("About the screen.", timeout=15_000)
    page.go_forward()
    expect(page).to_have_url(first_url)
    expect(page.locator(ASSISTANT).last).to_contain_text("More on the battery.", timeout=15_000)
    page.reload()
    expect(page.locator('#conversations a[aria-current="page"]')).to_contain_text("Battery drains fast")
    assert_no_js_errors(page)


def test_rename_in_the_row_and_delete_with_a_confirmation_that_names_it(chat, fake_openai):
    page = chat
    two_conversations(page, "Battery drains fast", "Cracked screen")
    rows = page.locator("#conversations li[data-row]")
    expect(rows).to_have_count(2)

    # rename the open one: Esc cancels, Enter saves; the row and the chat's title follow
    rows.first.hover()
    rows.first.locator('[data-action="rename"]').click()
    field = rows.first.locator('input[name="title"]')
    expect(field).to_be_focused()
    field.fill("never mind")
    field.press("Escape")
    expect(rows.first.locator(".conversation-name")).to_have_text("Cracked screen")
    expect(rows.first.locator('[data-action="rename"]')).to_be_focused()
    page.keyboard.press("Enter")
    field = rows.first.locator('input[name="title"]')
    field.fill("Screen repair")
    field.press("Enter")
    expect(rows.first.locator(".conversation-name")).to_have_text("Screen repair")
    expect(page.locator("#conversation-title")).to_have_text("Screen repair")
    expect(rows.first.locator("a")).to_have_attribute("aria-current", "page")

    # delete the open one: the dialog names it; the chat moves to the next conversation
    asked = []
    page.once("dialog", lambda d: (asked.append(d.message), d.accept()))
    rows.first.locator('[data-action="delete"]').click()
    expect(rows).to_have_count(1)
    assert asked and "Screen repair" in asked[0]
    expect(page.locator(ASSISTANT)).to_contain_text("Hello from the fake model.")
    expect(page.locator(USER).locator(".message-body")).to_have_text("Battery drains fast")
    expect(rows.first.locator("a")).to_have_attribute("aria-current", "page")
    # a refused deletion (Cancel in the dialog) keeps it
    page.once("dialog", lambda d: d.dismiss())
    rows.first.locator('[data-action="delete"]').click()
    page.wait_for_timeout(300)
    expect(rows).to_have_count(1)
    assert_no_js_errors(page)


def test_at_360_px_the_list_is_a_drawer(chat, fake_openai):
    page = chat
    two_conversations(page, "Battery drains fast", "Cracked screen")
    page.set_viewport_size({"width": 360, "height": 740})
    drawer, menu = page.locator("#conversations"), page.locator('[data-action="conversations"]')
    expect(drawer).to_be_hidden()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360  # nothing sideways
    menu.click()
    expect(drawer).to_be_visible()
    expect(menu).to_have_attribute("aria-expanded", "true")
    expect(page.locator('#conversations a[aria-current="page"]')).to_be_focused()  # the focus goes in
    page.keyboard.press("Escape")
    expect(drawer).to_be_hidden()
    expect(menu).to_be_focused()  # ...and comes back
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")  # (Esc stopped nothing)
    menu.click()
    page.mouse.click(350, 400)  # a tap outside it
    expect(drawer).to_be_hidden()
    menu.click()
    page.locator("#conversations a[data-conversation-id]").nth(1).click()  # choosing one
    expect(drawer).to_be_hidden()
    expect(page.locator(USER).locator(".message-body")).to_have_text("Battery drains fast")
    assert_no_js_errors(page)


def test_search_filters_the_list_as_you_type(chat, fake_openai):
    page = chat
    fake_openai.will(Reply("Check the charging port for lint."), Reply("A cracked screen can be replaced."))
    send_with_enter(page, "My phone won't charge")
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    page.locator('[data-action="new-conversation"]').click()
    expect(page.locator(ASSISTANT)).to_have_count(0)
    send_with_enter(page, "Screen problem")
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    search = page.locator('#conversations input[type="search"][name="q"]')
    search.press_sequentially("lin", delay=30)  # a word of the first conversation's answer, as typed
    hits = page.locator("#search-results a[data-conversation-id]")
    expect(hits).to_have_count(1)
    expect(hits.first).to_contain_text("My phone won't charge")
    expect(hits.first.locator("mark")).to_have_text("lint")  # (the word it matched)
    expect(page.locator("#conversation-list")).to_be_hidden()
    hits.first.click()
    expect(page.locator(USER).locator(".message-body")).to_have_text("My phone won't charge")
    search.fill("")
    search.press("Enter")
    expect(page.locator("#conversation-list")).to_be_visible()
    expect(page.locator("#conversation-list a[data-conversation-id]")).to_have_count(2)
    assert_no_js_errors(page)
