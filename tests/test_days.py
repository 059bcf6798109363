"""Days and times where the reader is: a line for each day ("Today", "Yesterday", a date) in the
reader's time zone and language, and message times in local time once the browser has said
where it is (a cookie first-paint.js sets)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from playwright.sync_api import expect
from sqlalchemy import update

from chatbot.extensions import db
from chatbot.models import Message

from .fake_openai import Reply
from .helpers import all_messages, conversation_id_from, send

ASSISTANT = '#messages article.message[data-role="assistant"]'


def days(body: str) -> list[tuple[str, str]]:
    return re.findall(r'<div class="day-separator" data-day="([\d-]+)"><span>(.*?)</span></div>', body)


def move(app, message_ids: list[int], when: datetime) -> None:
    with app.app_context():
        db.session.execute(update(Message).where(Message.id.in_(message_ids)).values(timestamp=when))
        db.session.commit()


def test_each_day_gets_its_line_in_the_readers_zone_and_language(app, client, fake_openai):
    cid = conversation_id_from(send(client, "first question"))
    send(client, "second question", cid)
    send(client, "third question", cid)
    ids = [m.id for m in all_messages(app)]
    now = datetime.now(UTC)
    move(app, ids[:2], now - timedelta(days=9))
    move(app, ids[2:4], now - timedelta(days=1))

    body = client.get(f"/c/{cid}").get_data(as_text=True)
    labels = [label for _, label in days(body)]
    nine_days_ago = (now - timedelta(days=9)).strftime("%A, %B %-d, %Y")
    assert labels == [nine_days_ago, "Yesterday", "Today"], labels
    # each line comes before its day's first message
    assert body.index(">Yesterday<") < body.index("second question") < body.index(">Today<")

    spanish = client.get(f"/c/{cid}", headers={"Accept-Language": "es"}).get_data(as_text=True)
    assert [label for _, label in days(spanish)][1:] == ["Ayer", "Hoy"]


def test_times_are_shown_where_the_reader_is_once_their_browser_says(app, client, fake_openai):
    cid = conversation_id_from(send(client, "what time is it?"))
    noon = datetime(2026, 11, 20, 12, 5, tzinfo=UTC)
    move(app, [m.id for m in all_messages(app)], noon)
    utc = client.get(f"/c/{cid}").get_data(as_text=True)
    assert ">12:05 UTC</time>" in utc  # (until the browser says where it is, and labelled so)

    client.set_cookie("chatbot_tz", "America/Mexico_City")
    local = client.get(f"/c/{cid}").get_data(as_text=True)
    assert ">06:05</time>" in local and "UTC</time>" not in local
    # a day is the reader's: just after midnight UTC is still the evening before in Mexico
    move(app, [m.id for m in all_messages(app)], datetime(2026, 11, 21, 0, 30, tzinfo=UTC))
    assert days(client.get(f"/c/{cid}").get_data(as_text=True))[0][0] == "2026-11-20"

    for nonsense in ("Mars/Olympus_Mons", "../../etc/passwd", "x" * 500, ""):
        client.set_cookie("chatbot_tz", nonsense)
        page = client.get(f"/c/{cid}")
        assert page.status_code == 200 and "UTC</time>" in page.get_data(as_text=True)


def test_a_new_message_adds_todays_line_once(page, live_server, app, fake_openai):
    page.goto(live_server.url + "/")
    page.wait_for_load_state("load")
    box = page.locator("#composer-input")
    box.fill("yesterday's question")
    box.press("Enter")
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    move(app, [m.id for m in all_messages(app)], datetime.now(UTC) - timedelta(days=1))
    page.reload()
    lines = page.locator("#messages .day-separator")
    expect(lines).to_have_text(["Yesterday"])

    for question in ("today's question", "and another"):
        fake_openai.will(Reply("Answered."))
        box.fill(question)
        box.press("Enter")
        expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "complete")
        expect(lines).to_have_text(["Yesterday", "Today"])  # one line a day, however many messages
