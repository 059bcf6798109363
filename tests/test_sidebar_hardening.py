"""The many-conversations sidebar, hardened: regressions from its attack review.

Each test here failed against the code it was written for (issue 17's review, branch ``attack17``).
HTTP tests use the suite's fixtures (real HTTP through the test client, a real database); browser
tests drive Chromium against the live app with CSRF protection on, as shipped.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import text, update

from chatbot.extensions import db
from chatbot.models import Conversation, utcnow

from .helpers import HX, conversation_id_from, send

ASSISTANT = '#messages article.message[data-role="assistant"]'


# --- HTTP ----------------------------------------------------------------------------------


@pytest.fixture
def quiet_app(app_factory, openai_config):
    """The app answering a failure with its 500 page (as in production) rather than raising."""
    return app_factory(**openai_config, PROPAGATE_EXCEPTIONS=False)


@pytest.mark.parametrize(
    "after",
    ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"],
)
def test_a_list_cursor_at_the_edge_of_time_is_a_400_not_a_500(quiet_app, after):
    """``GET /conversations?after=…`` with a valid ISO time whose UTC value falls outside
    datetime's range: UTCDateTime.process_bind_param's ``astimezone(UTC)`` raises OverflowError,
    and the list page answers 500 (with or without htmx) instead of "That list page doesn't
    exist." (views.conversation_list only catches ValueError from fromisoformat)."""
    client = quiet_app.test_client()
    conversation_id_from(send(client, "Battery drains fast"))
    for headers in (HX, {}):
        response = client.get("/conversations", query_string={"after": after, "id": "3"}, headers=headers)
        assert response.status_code == 400, response.status_code


def _hold_writes(app, owner: str):
    """Another writer holds what a turn's begin waits for: SQLite's write lock, or on PostgreSQL
    the owner's advisory lock. Returns (rename(title, public_id), release())."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    if url.startswith("sqlite"):
        side = sqlite3.connect(url.split("sqlite:///", 1)[1], isolation_level=None, timeout=10)
        side.execute("BEGIN IMMEDIATE")

        def rename(title: str, public_id: str) -> None:
            side.execute("UPDATE conversations SET title = ? WHERE public_id = ?", (title, public_id))

        def release() -> None:
            side.execute("COMMIT")
            side.close()

        return rename, release
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
    side = psycopg.connect(dsn)
    side.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (owner,))
    other = psycopg.connect(dsn, autocommit=True)

    def rename(title: str, public_id: str) -> None:  # (a rename takes no owner lock: it commits)
        other.execute("UPDATE conversations SET title = %s WHERE public_id = %s", (title, public_id))

    def release() -> None:
        side.commit()
        side.close()
        other.close()

    return rename, release


def test_a_rename_committed_while_a_message_is_being_sent_is_kept(app, client):
    """Lost update: a send reads the conversation (owned_conversation_or_404), waits for the
    write, then writes ``title = <the title it read>`` (begin._TOUCH in _insert_turn, and
    begin_retry). A rename (or a model title) committed in between is silently put back."""
    cid = conversation_id_from(send(client, "Battery drains fast"))
    with app.app_context():
        owner = db.session.execute(
            text("SELECT owner FROM conversations WHERE public_id = :p"), {"p": cid}
        ).scalar_one()
        db.session.remove()
    rename, release = _hold_writes(app, owner)
    done: dict[str, int] = {}

    def second_message() -> None:
        done["status"] = client.post(
            f"/c/{cid}/messages", data={"content": "still draining"}, buffered=True
        ).status_code

    sender = threading.Thread(target=second_message)
    sender.start()
    time.sleep(0.5)  # the send has read the conversation and waits to write
    rename("My battery case", cid)  # the customer's rename, committed first
    release()
    sender.join(20)
    assert done.get("status") == 303
    with app.app_context():
        title = db.session.execute(
            text("SELECT title FROM conversations WHERE public_id = :p"), {"p": cid}
        ).scalar_one()
    assert title == "My battery case"


def test_a_title_from_the_first_message_drops_bidi_and_zero_width_characters(app, client):
    """A rename strips bidi overrides and zero-width characters (conversations._INVISIBLE), but
    the title taken from the first message keeps them (conversations.title_from; begin.py only
    strips C0 controls): a row can read reversed or disguised ("\u202e" + "gnp.exe" shows as
    "exe.png"), and the tab title and the export's "# title" carry them too."""
    cid = conversation_id_from(send(client, "\u202egnp.exe battery\u200b help"))
    with app.app_context():
        title = db.session.execute(
            text("SELECT title FROM conversations WHERE public_id = :p"), {"p": cid}
        ).scalar_one()
    assert not re.search("[\u200b\u202a-\u202e\u2066-\u2069\ufeff]", title), repr(title)


def test_without_javascript_a_refused_rename_shows_the_form_again_with_what_was_typed(client):
    cid = conversation_id_from(send(client, "Battery drains fast"))
    refused = client.post(f"/c/{cid}/rename", data={"title": "\u200b\u200b  "})
    body = refused.get_data(as_text=True)
    assert refused.status_code == 400 and body.startswith("<!doctype html>")
    assert 'role="alert">Please give the conversation a name.</p>' in body
    assert 'name="title" value="\u200b\u200b  "' in body and 'aria-invalid="true"' in body


# --- in the browser (CSRF on, as shipped) ----------------------------------------------------


@pytest.fixture
def shipped_app(app_factory, openai_config):
    return app_factory(**openai_config, CSRF_ENABLED=True)


@pytest.fixture
def site(shipped_app):
    from .conftest import LiveServer

    server = LiveServer(shipped_app)
    yield server
    server.stop()


@pytest.fixture
def chat(page, site):
    page.add_init_script(
        "window.__csp = [];"
        "document.addEventListener('securitypolicyviolation',"
        " (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    page.goto(site.url + "/")
    expect(page.locator("form#composer")).to_be_visible()
    page.wait_for_load_state("load")
    return page


def _send(page, text_: str) -> None:
    box = page.locator('form#composer textarea[name="content"]')
    box.fill(text_)
    box.press("Enter")
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "complete")


def test_the_sidebar_shows_relative_times_in_the_browser(chat, shipped_app, site, fake_openai):
    """Issue 17 item 1 (and the README): each row shows a relative time ("3 days ago"). The
    server writes it (the ``ago`` filter), but chat.js's ``localTimes(document)`` rewrites every
    ``time[datetime]`` on the page, the sidebar's included, as a bare clock time ("02:50 AM"):
    a conversation from last week reads as if from today. (Rows swapped in later keep "just now",
    so the list mixes both; search hits show "2026-11-30 02:50 UTC", a third format.)"""
    page = chat
    _send(page, "Battery drains fast")
    with shipped_app.app_context():
        db.session.execute(update(Conversation).values(updated_at=utcnow() - timedelta(days=3)))
        db.session.commit()
        db.session.remove()
    page.reload()
    expect(page.locator("#conversation-list .conversation-time").first).to_have_text("3 days ago")


def test_the_first_conversation_replaces_the_empty_sidebar_note(chat, fake_openai):
    """A page opened with no conversations says "Your conversations will show here." and has no
    "Export all" link. After the first message its row appears, but the note stays under the list
    (on a phone, in the drawer too) and "Export all" is missing until a reload."""
    page = chat
    expect(page.locator(".sidebar-empty")).to_be_visible()
    _send(page, "Battery drains fast")
    expect(page.locator("#conversation-list li[data-row]")).to_have_count(1)
    expect(page.locator(".sidebar-empty")).to_be_hidden()
    expect(page.locator('[data-action="export-all"]')).to_be_visible()


def test_a_refused_rename_says_why(chat, fake_openai):
    """The in-row rename form sends errors to ``hx-status:4xx="target:find .rename-error"``; htmx
    finds no such element ("'find' on hx-target did not match any element") and nothing is shown:
    a name of zero-width spaces (or any 400, or a 403 stale token) fails silently."""
    page = chat
    _send(page, "Battery drains fast")
    row = page.locator("#conversation-list li[data-row]").first
    row.hover()
    row.locator('[data-action="rename"]').click()
    field = row.locator('input[name="title"]')
    field.fill("\u200b\u200b")
    field.press("Enter")
    expect(row.locator(".rename-error")).to_have_text("Please give the conversation a name.")


def test_while_renaming_the_name_is_not_shown_twice(chat, fake_openai):
    """chat.js hides the row's link (``link.hidden = true``) while the name is a field, but
    ``.conversation-row a { display: flex }`` (chat.css) overrides ``[hidden]``: the old name
    stays on screen above the field with the same name."""
    page = chat
    _send(page, "Battery drains fast")
    row = page.locator("#conversation-list li[data-row]").first
    row.hover()
    row.locator('[data-action="rename"]').click()
    expect(row.locator('input[name="title"]')).to_be_focused()
    expect(row.locator("a[data-conversation-id]")).to_be_hidden()


def test_without_javascript_a_phone_can_reach_its_other_conversations(browser, site, fake_openai):
    """At 360 px the list is a drawer opened only by chat.js; without JavaScript the ☰ button does
    nothing and the list (and search) can't be reached: the other conversations are lost to a
    no-JS phone except by a saved address. (Issue 17 item 1: "without JavaScript it is a plain
    link".)"""
    context = browser.new_context(viewport={"width": 360, "height": 740}, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(site.url + "/")
        page.locator("#composer-input").fill("Battery drains fast")
        with page.expect_navigation():
            page.locator("button.button--send").click()
        first = page.url
        with page.expect_navigation():
            page.locator('[data-action="new-conversation"]').click()
        page.locator("#composer-input").fill("Cracked screen")
        with page.expect_navigation():
            page.locator("button.button--send").click()
        path = first.split(site.url, 1)[1]
        with page.expect_navigation():  # ☰ is a link to the list's own page
            page.locator('[data-action="conversations"]').click()
        links = page.locator(f'a[href="{path}"]')
        assert any(links.nth(i).is_visible() for i in range(links.count())), (
            "no visible way to the other conversation"
        )
    finally:
        context.close()


def test_deleting_a_row_from_the_keyboard_keeps_the_focus_in_the_list(chat, fake_openai):
    """Keyboard only: Delete on a conversation that isn't open removes its row (hx-swap=delete)
    with the focused button in it, and the focus falls to <body>: the next Tab starts over from
    the top of the page."""
    page = chat
    _send(page, "Battery drains fast")
    page.locator('[data-action="new-conversation"]').click()
    expect(page.locator(ASSISTANT)).to_have_count(0)
    _send(page, "Cracked screen")
    rows = page.locator("#conversation-list li[data-row]")
    expect(rows).to_have_count(2)
    page.once("dialog", lambda d: d.accept())
    rows.nth(1).locator('[data-action="delete"]').focus()
    page.keyboard.press("Enter")
    expect(rows).to_have_count(1)
    assert page.evaluate("document.activeElement.closest('#conversations') !== null"), page.evaluate(
        "document.activeElement.tagName"
    )
