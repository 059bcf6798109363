"""A long conversation opens with its newest messages and loads older ones on demand."""

from __future__ import annotations

import re

from sqlalchemy import insert, select

from chatbot.extensions import db
from chatbot.models import Conversation, Message, utcnow

from .helpers import HX, conversation_id_from, history, send


def fill(app, public_id: str, n: int) -> None:
    with app.app_context():
        cid = db.session.execute(select(Conversation.id).where(Conversation.public_id == public_id)).scalar()
        db.session.execute(
            insert(Message),
            [
                {
                    "conversation_id": cid,
                    "is_user": i % 2 == 0,
                    "status": "complete",
                    "timestamp": utcnow(),
                    "content": f"old message number {i}",
                    "meta": {},
                }
                for i in range(n)
            ],
        )
        db.session.commit()


def shown(html: str) -> list[str]:
    return re.findall(r"old message number (\d+)|(Hello from the fake model)|(newest question)", html)


def test_page_shows_the_newest_messages_then_earlier_ones_on_demand(app, client, fake_openai):
    client.get("/")
    cid = conversation_id_from(send(client, "first question"))
    fill(app, cid, 118)  # 120 in all, then one more turn
    send(client, "newest question", cid)

    page = client.get(f"/c/{cid}").get_data(as_text=True)
    assert page.count('class="message message--') == 50
    assert "newest question" in page and "old message number 69" not in page
    assert "old message number 70" in page
    link = re.search(r'hx-get="([^"]+/earlier\?before=\d+)"', page).group(1).replace("&amp;", "&")

    older = client.get(link, headers=HX).get_data(as_text=True)
    assert older.count('class="message message--') == 50
    assert "old message number 20" in older and "old message number 69" in older
    assert "old message number 70" not in older
    link = re.search(r'hx-get="([^"]+/earlier\?before=\d+)"', older).group(1)

    oldest = client.get(link, headers=HX).get_data(as_text=True)
    assert oldest.count('class="message message--') == 22  # 2 of the first turn + 20 filled
    assert "first question" in oldest and "Show earlier messages" not in oldest

    # Without JavaScript the same link opens the page at that point.
    no_js = client.get(link)
    assert no_js.status_code == 303
    page = client.get(no_js.headers["Location"]).get_data(as_text=True)
    assert "first question" in page and "Back to the latest messages" in page
    assert app.test_client().get(link, headers=HX).status_code == 404  # and only for the owner


def test_the_model_input_stops_at_the_history_budget(app_factory, openai_config, fake_openai):
    app = app_factory(HISTORY_TOKENS=300, **openai_config)
    client = app.test_client()
    cid = conversation_id_from(send(client, "first question"))
    fill(app, cid, 200)  # each about 11 tokens by our estimate
    send(client, "newest question", cid)
    sent = history(fake_openai.requests[-1])
    assert sent[0]["role"] == "system" and sent[-1] == {"role": "user", "content": "newest question"}
    assert 10 < len(sent) < 30  # only the newest messages that fit
    assert sent[-2]["content"] == "old message number 199"
    numbers = [int(m["content"].rsplit(" ", 1)[1]) for m in sent[1:-1]]
    assert numbers == sorted(numbers) and numbers[-1] == 199  # in order, ending at the newest
