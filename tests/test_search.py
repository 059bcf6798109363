"""Search: the list filtered by title and by message text (``GET /conversations/search?q=``), on
both databases. What the customer sees: the rows that match, newest match first, each a link to
its conversation with a snippet whose words are marked; nothing of anyone else's; a 200 whatever
the query."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import insert, select, update

from chatbot.chat import search_views
from chatbot.chat.conversations import delete_conversations
from chatbot.chat.search import search, snippet, terms_of
from chatbot.extensions import db
from chatbot.models import Conversation, Message, utcnow

from .fake_openai import Reply
from .helpers import HX, all_conversations, all_messages, conversation_id_from, send
from .test_versions import post, switch

ROW = re.compile(r'<a href="/c/([\w-]+)" data-conversation-id="([\w-]+)"')
ALLOWED_TAGS = {"li", "a", "span", "mark", "time"}


def find(client, q: str, **args) -> str:
    response = client.get("/conversations/search", query_string={"q": q, **args}, headers=HX)
    assert response.status_code == 200, (q, response.status_code)
    return response.get_data(as_text=True)


def found(client, q: str) -> list[str]:
    """The public ids of the rows a search shows, in order (each row's link and id agree)."""
    rows = ROW.findall(find(client, q))
    assert all(href == cid for href, cid in rows)
    return [cid for _, cid in rows]


def row_of(body: str, public_id: str) -> str:
    row = rf'<li class="conversation-row search-hit" data-row="{public_id}">(.*?)</li>'
    match = re.search(row, body, re.S)
    assert match, body
    return match.group(1)


def owner_of(app, public_id: str) -> str:
    return next(c.owner for c in all_conversations(app) if c.public_id == public_id)


def start(client, fake_openai, question: str, answer: str = "Noted.") -> str:
    fake_openai.will(Reply(answer))
    return conversation_id_from(send(client, question))


# --- finding ---------------------------------------------------------------------------------------


def test_finds_by_title_and_by_what_either_side_wrote_with_the_words_marked(client, app, fake_openai):
    battery = start(
        client, fake_openai, "My battery drains overnight", "Turn on **Low Power Mode** in Settings."
    )
    screen = start(client, fake_openai, "Cracked screen", "A repair centre can replace the glass.")

    body = find(client, "overnight")
    assert found(client, "overnight") == [battery]
    row = row_of(body, battery)
    assert '<span class="conversation-name">My battery drains <mark>overnight</mark></span>' in row
    assert f'href="/c/{battery}"' in row

    # the assistant's words: the snippet is its message, Markdown's markers left out
    assert found(client, "low power") == [battery]
    row = row_of(find(client, "low power"), battery)
    marked = "Turn on <mark>Low</mark> <mark>Power</mark> Mode in Settings."
    assert f'<span class="search-snippet">{marked}</span>' in row

    # a prefix, as the words are typed; the whole word is marked
    assert found(client, "repl") == [screen]
    assert "can <mark>replace</mark> the glass." in find(client, "repl")
    # all the words must be in one message (or the title)
    assert found(client, "glass battery") == []
    assert "No conversations match “glass battery”." in find(client, "glass battery")


def test_case_and_accents_do_not_matter(client, app, fake_openai):
    spanish = start(client, fake_openai, "La batería del móvil no carga", "Prueba otro cable.")
    plain = start(client, fake_openai, "bateria sin acento", "Vale.")

    for q in ("BATERIA", "bateria", "batería", "BATERÍA", "Batería"):
        assert set(found(client, q)) == {spanish, plain}, q
    assert found(client, "MOVIL") == [spanish]
    assert found(client, "móvil no") == [spanish]
    assert "La <mark>batería</mark> del" in find(client, "BATERIA")
    assert found(client, "baterias") == []  # a prefix, not a stem


def test_newest_match_first_and_the_list_pages(client, app, fake_openai, monkeypatch):
    older = start(client, fake_openai, "Wi-Fi keeps dropping", "Forget the network and join again.")
    middle = start(client, fake_openai, "Bluetooth headphones", "Unpair them.")
    newer = start(client, fake_openai, "Storage is full", "Move photos to the cloud.")
    # a later message in the oldest conversation makes it the newest match for its words
    fake_openai.will(Reply("Try the network reset, then."))
    send(client, "Still dropping, even after forgetting the network", older)

    assert found(client, "network") == [older]
    assert found(client, "the") == [older, newer, middle]  # "the" in each: the newest said first

    monkeypatch.setattr(search_views, "PAGE", 2)
    first = find(client, "the")
    assert ROW.findall(first)[-1][1] == newer and 'hx-trigger="revealed"' in first
    more = re.search(r'<li class="conversation-more" hx-get="([^"]+)"', first).group(1)
    assert "offset=2" in more
    rest = client.get(more.replace("&amp;", "&"), headers=HX).get_data(as_text=True)
    assert [cid for _, cid in ROW.findall(rest)] == [middle]
    assert "conversation-more" not in rest and "No conversations match" not in rest
    # past the end: nothing, and no "no match" line under the rows already shown
    assert find(client, "the", offset="40").strip() == ""


def test_a_title_match_counts_even_when_no_message_says_it(client, app, fake_openai):
    renamed = start(client, fake_openai, "hello", "Hi! How can I help?")
    other = start(client, fake_openai, "camera blurry", "Clean the lens.")
    with app.app_context():
        db.session.execute(
            update(Conversation).where(Conversation.public_id == renamed).values(title="Warranty claim")
        )
        db.session.commit()
    assert found(client, "warranty") == [renamed]
    row = row_of(find(client, "warranty"), renamed)
    assert "<mark>Warranty</mark> claim" in row and "search-snippet" not in row
    assert found(client, "hello") == [renamed]  # its first message still says it
    assert found(client, "camera") == [other]


# --- what is searched: the shown path, written, of conversations that exist ------------------------


def test_a_version_set_aside_by_an_edit_does_not_match_until_it_is_shown_again(client, app, fake_openai):
    fake_openai.will(Reply("Hi."), Reply("Sorry about the crack zebra."), Reply("A new charger giraffe."))
    cid = conversation_id_from(send(client, "hello"))
    send(client, "my screen is cracked", cid)
    cracked = next(m.id for m in all_messages(app) if m.content == "my screen is cracked")
    assert found(client, "cracked") == [cid] and found(client, "zebra") == [cid]

    assert post(client, cid, edit=str(cracked), edit_content="my charger is broken").status_code == 200
    assert found(client, "cracked") == [] and found(client, "zebra") == []  # the old version and its answer
    assert found(client, "broken") == [cid] and found(client, "giraffe") == [cid]

    edited = next(m.id for m in all_messages(app) if m.content == "my charger is broken")
    assert switch(client, cid, edited, cracked).status_code == 200
    assert found(client, "cracked") == [cid] and found(client, "zebra") == [cid]
    assert found(client, "broken") == [] and found(client, "giraffe") == []


def test_a_reply_matches_once_it_is_written_not_while_it_streams(client, app, fake_openai):
    cid = start(client, fake_openai, "question")
    with app.app_context():
        conversation = db.session.execute(select(Conversation).filter_by(public_id=cid)).scalar_one()
        reply = db.session.execute(
            insert(Message)
            .values(
                conversation_id=conversation.id,
                content="",
                is_user=False,
                status="streaming",
                timestamp=utcnow(),
                meta={},
            )
            .returning(Message.id)
        ).scalar_one()
        db.session.commit()

    def write(**values) -> None:
        with app.app_context():
            db.session.execute(update(Message).where(Message.id == reply).values(**values))
            db.session.commit()

    write(content="Half of an answer about the antenna")  # a tick
    write(content="Half of an answer about the antenna and the SIM tray")  # another
    assert found(client, "antenna") == []
    write(status="complete")  # the final save
    assert found(client, "antenna") == [cid] and found(client, "tray") == [cid]
    write(status="streaming", content="")  # a retry takes it again
    assert found(client, "antenna") == []
    write(status="interrupted", content="The antenna")  # cut short: shown, so searched
    assert found(client, "antenna") == [cid] and found(client, "tray") == []


def test_a_deleted_conversation_does_not_match(client, app, fake_openai):
    gone = start(client, fake_openai, "Lost phone tracking", "Use Find My Device.")
    kept = start(client, fake_openai, "Phone tracking at home", "Same steps.")
    assert set(found(client, "tracking")) == {gone, kept}
    with app.app_context():
        cid = db.session.execute(select(Conversation.id).filter_by(public_id=gone)).scalar_one()
        assert delete_conversations([cid]) == (1, 2)
    assert found(client, "tracking") == [kept]
    assert found(client, "device") == []


# --- whose: the owner's only ----------------------------------------------------------------------


def test_another_browser_never_sees_the_owners_conversations_or_snippets(client, app, fake_openai):
    mine = start(client, fake_openai, "My secret recovery code is 4242", "Keep it safe, never share it.")
    stranger = app.test_client()
    fake_openai.will(Reply("Keep it safe."))
    theirs = conversation_id_from(send(stranger, "My code is lost"))

    assert found(client, "code") == [mine]
    assert found(stranger, "code") == [theirs]
    for q in ("secret", "recovery", "4242", "share", "never"):
        body = find(stranger, q)
        assert mine not in body and "secret" not in body.lower().replace(f"“{q}”", "")
        assert "No conversations match" in body
    # the owner column of the index is not the customer's to search: typing another owner's key
    # (as the index holds it) finds nothing of theirs
    key = owner_of(app, mine).encode().hex().upper()
    for q in (key, f"owner_key:{key}", f'owner_key : "{key}"', f"{key} code"):
        assert found(stranger, q) == [], q
    # a browser with no conversations (no owner yet) gets an empty result, never an error
    newcomer = app.test_client()
    assert found(newcomer, "code") == [] and "No conversations match “code”." in find(newcomer, "code")
    with app.app_context():
        assert search(None, "code") == [] and search("", "code") == []
        assert [h.public_id for h in search(owner_of(app, theirs), "keep")] == [theirs]


# --- any query --------------------------------------------------------------------------------------

HOSTILE = [
    '"',
    '""',
    '"unbalanced quote',
    "'",
    "*",
    "**",
    "-",
    "battery -screen",
    "NEAR(battery screen)",
    "battery NEAR screen",
    "NEAR",
    "AND",
    "OR NOT",
    "title:battery",
    "content:battery",
    "{content owner_key}: battery",
    "owner_key:*",
    ":",
    "(",
    ")",
    "((battery",
    "battery)",
    "^battery",
    "battery*",
    "bat* scr*",
    "& | ! <-> :* ''",
    "'battery':*",
    "battery & !screen",
    "%",
    "_",
    "\\",
    "'; DROP TABLE messages; --",
    "x" * 10_000,
    "battery " * 300,
    "!!! ??? ... ---",
    "🔋📱",
    "电池",
    "батарея",
    "ü",
    "\u200b",
    "\u202ebattery",
    "\x00battery",
    "\x01",
    " ",
    "<script>alert(1)</script>",
    "<mark>",
    "&lt;",
]


@pytest.mark.parametrize("q", HOSTILE, ids=range(len(HOSTILE)))
def test_any_query_is_answered_with_200_and_safe_markup(client, app, fake_openai, q):
    start(client, fake_openai, "My battery and screen", "Check the battery.")
    body = find(client, q)
    assert {tag for _, tag in re.findall(r"<(/?)([a-zA-Z][\w-]*)", body)} <= ALLOWED_TAGS, body
    assert "<mark>" not in body or body.count("<mark>") == body.count("</mark>")
    if q.strip():
        assert ("search-hit" in body) != ("No conversations match" in body)


def test_markup_in_messages_is_shown_escaped_and_only_the_words_are_marked(client, app, fake_openai):
    cid = start(
        client,
        fake_openai,
        'Why <script>alert("x")</script> on my <img src=x onerror=alert(1)> screen?',
        "I can't run <b>code</b> & won't </mark><mark> pretend.",
    )
    for q in ("script", "alert", "img onerror", "code", "pretend", "mark"):
        body = find(client, q)
        assert found(client, q) == [cid], q
        assert {tag for _, tag in re.findall(r"<(/?)([a-zA-Z][\w-]*)", body)} <= ALLOWED_TAGS, (q, body)
        assert body.count("<mark>") == body.count("</mark>") >= 1
    assert "&lt;<mark>script</mark>&gt;<mark>alert</mark>(&#34;x&#34;)&lt;/<mark>script</mark>&gt;" in find(
        client, "script alert"
    )
    assert "&lt;b&gt;<mark>code</mark>&lt;/b&gt; &amp; won&#39;t &lt;/mark&gt;&lt;mark&gt; pretend." in find(
        client, "code"
    )


def test_an_empty_query_answers_nothing_to_show(client, app, fake_openai):
    start(client, fake_openai, "battery")
    for q in ("", "   ", "\t\n"):
        assert find(client, q).strip() == ""
    assert client.get("/conversations/search").status_code == 200
    assert client.get("/conversations/search?q=battery&offset=-5").status_code == 200
    assert client.get("/conversations/search?q=battery&offset=abc").status_code == 200
    assert client.get("/conversations/search?q=battery&offset=99999999999999999999").status_code == 200
    assert found(client, "battery")  # and without htmx: the same rows


def test_without_javascript_the_search_is_a_page_with_its_form_rows_and_more(
    client, app, fake_openai, monkeypatch
):
    first = start(client, fake_openai, "Battery drains fast", "Check the battery health.")
    second = start(client, fake_openai, "Battery swells", "Stop using it and visit a repair centre.")
    monkeypatch.setattr(search_views, "PAGE", 1)

    page = client.get("/conversations/search?q=battery").get_data(as_text=True)
    assert page.startswith("<!doctype html>") and "<title>“battery” · Search" in page
    assert 'name="q" value="battery"' in page  # the words stay in the box to change them
    assert [cid for _, cid in ROW.findall(page)] == [second]
    more = re.search(r'<a href="(/conversations/search\?[^"]+)">More results</a>', page).group(1)
    rest = client.get(more.replace("&amp;", "&")).get_data(as_text=True)
    assert rest.startswith("<!doctype html>") and [cid for _, cid in ROW.findall(rest)] == [first]
    assert 'href="/"' in rest  # and a way back to the chat

    nothing = client.get("/conversations/search?q=zzzz").get_data(as_text=True)
    assert "No conversations match “zzzz”." in nothing and 'value="zzzz"' in nothing
    empty = client.get("/conversations/search").get_data(as_text=True)
    assert empty.startswith("<!doctype html>") and "search-hit" not in empty


# --- the pieces --------------------------------------------------------------------------------------


def test_a_query_is_words_each_a_prefix():
    assert [(t.word, t.folded, t.prefix) for t in terms_of('Batería "NEAR" (screen)* -x')] == [
        ("Batería", "bateria", True),
        ("NEAR", "near", True),
        ("screen", "screen", True),
        ("x", "x", False),
    ]
    assert terms_of("!!! --- ***") == [] and terms_of(None) == []
    assert len(terms_of("a b c d e f g h i j k")) == 8
    assert [t.word for t in terms_of("wifi WiFi wifi")] == ["wifi"]
    assert terms_of("x" * 100)[0].word == "x" * 40


def test_a_snippet_is_cut_around_the_first_match():
    body = ("Lorem ipsum dolor sit amet. " * 20) + "The battery here. " + ("More words follow. " * 20)
    text = str(snippet(body, terms_of("battery")))
    assert text.startswith("…") and text.endswith("…") and "The <mark>battery</mark> here." in text
    assert len(re.sub(r"</?mark>", "", text)) < 200
    assert str(snippet("Short **bold** battery.", terms_of("bat"))) == "Short bold <mark>battery</mark>."


def test_searching_sets_no_cookie_and_a_long_query_is_read_in_part(client, app, fake_openai):
    cid = start(client, fake_openai, "battery")
    newcomer = app.test_client()
    response = newcomer.get("/conversations/search?q=battery", headers=HX)
    assert response.status_code == 200 and "Set-Cookie" not in response.headers
    body = find(client, "battery " + "x" * 5000)
    assert "No conversations match" in body and len(body) < 1000
    assert found(client, "battery" + " " * 5000 + "zzz") == [cid]  # (only the first 200 characters)
