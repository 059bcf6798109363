"""The sidebar: the browser's conversations, newest first, the open one marked, more as you
scroll; each row moves to the top when its conversation gets a message."""

from __future__ import annotations

import re

from .helpers import HX, conversation_id_from, parse_sse, send


def rows(html: str) -> list[str]:
    """The conversations a page or a list partial shows, in order (their public ids)."""
    return re.findall(r'<a href="/c/([^"]+)" data-conversation-id=', html)


def test_the_sidebar_lists_the_browsers_conversations_newest_first_the_open_one_marked(app, client):
    first = conversation_id_from(send(client, "Battery drains fast"))
    second = conversation_id_from(send(client, "Cracked screen"))
    send(client, "and one more thing", first)  # the first is now the most recent
    page = client.get(f"/c/{second}").get_data(as_text=True)
    assert rows(page) == [first, second]
    assert re.search(rf'data-conversation-id="{second}"[^>]*aria-current="page"', page)
    assert not re.search(rf'data-conversation-id="{first}"[^>]*aria-current', page)
    assert "Battery drains fast" in page and "just now" in page
    stranger = app.test_client()
    assert rows(stranger.get("/").get_data(as_text=True)) == []
    send(stranger, "mine")
    assert first not in stranger.get("/").get_data(as_text=True)


def test_fifty_at_a_time_and_the_rest_as_you_scroll(app, client):
    ids = [conversation_id_from(send(client, f"question {i}")) for i in range(55)]
    page = client.get("/").get_data(as_text=True)
    assert rows(page) == ids[::-1][:50]
    more = re.search(r'<li class="conversation-more" hx-get="([^"]+)"\s+hx-trigger="revealed"', page)
    assert more, "the last row loads the next page when it comes into view"
    rest = client.get(more.group(1).replace("&amp;", "&"), headers=HX).get_data(as_text=True)
    assert rows(rest) == ids[::-1][50:] and "conversation-more" not in rest
    # another browser gets none of them; a made-up page is refused plainly
    assert (
        rows(app.test_client().get(more.group(1).replace("&amp;", "&"), headers=HX).get_data(as_text=True))
        == []
    )
    assert client.get("/conversations?after=yesterday&id=3", headers=HX).status_code == 400
    assert client.get("/conversations?after=2026-01-01T00:00:00&id=3", headers=HX).status_code == 400


def test_a_message_moves_its_conversation_to_the_top_in_the_same_stream(client):
    first = conversation_id_from(send(client, "Battery drains fast"))
    conversation_id_from(send(client, "Cracked screen"))
    start = parse_sse(send(client, "still draining", first).get_data(as_text=True))[0]["data"]
    partial = re.search(
        r'<hx-partial hx-target="#conversation-list" hx-swap="afterbegin">(.*?)</hx-partial>', start, re.S
    )
    assert partial and rows(partial.group(1)) == [first] and "Battery drains fast" in partial.group(1)


def test_new_conversation_is_offered_only_once_there_is_a_conversation(client):
    assert re.search(r'<form[^>]*class="new-form"[^>]*hidden>', client.get("/").get_data(as_text=True))
    cid = conversation_id_from(send(client, "hello"))
    page = client.get(f"/c/{cid}").get_data(as_text=True)
    assert re.search(r'<form[^>]*class="new-form"[^>]*>', page)
    assert not re.search(r'<form[^>]*class="new-form"[^>]*hidden>', page)
