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


def test_rename_and_delete_are_the_owners_only_and_update_the_row(app, client, fake_openai):
    from .helpers import all_conversations, all_messages

    cid = conversation_id_from(send(client, "Battery drains fast"))
    renamed = client.post(f"/c/{cid}/rename", data={"title": "  My\u202e   battery  "}, headers=HX)
    assert renamed.status_code == 200
    html = renamed.get_data(as_text=True)
    assert 'id="conv-' in html and "My battery" in html  # the row as it now is
    assert 'hx-target="#conversation-title"' in html  # (the open one: its title too)
    assert all_conversations(app)[0].title == "My battery"
    assert client.post(f"/c/{cid}/rename", data={"title": "   "}, headers=HX).status_code == 400
    assert client.post(f"/c/{cid}/rename", data={"title": "x" * 121}, headers=HX).status_code == 400
    stranger = app.test_client()
    send(stranger, "mine")
    assert stranger.post(f"/c/{cid}/rename", data={"title": "pwned"}, headers=HX).status_code == 404
    assert stranger.post(f"/c/{cid}/delete", headers=HX).status_code == 404
    assert stranger.get(f"/c/{cid}/delete").status_code == 404
    # without JavaScript: a page that names the conversation, then the post
    assert "Delete “My battery”?" in client.get(f"/c/{cid}/delete").get_data(as_text=True)
    deleted = client.post(f"/c/{cid}/delete", headers=HX)
    assert deleted.status_code == 200
    assert [c.public_id for c in all_conversations(app)] != [] and cid not in [
        c.public_id for c in all_conversations(app)
    ]
    assert not [m for m in all_messages(app) if m.content == "Battery drains fast"]
    assert client.get(f"/c/{cid}").status_code == 404


def test_deleting_the_open_conversation_moves_to_the_next(client):
    older = conversation_id_from(send(client, "older"))
    middle = conversation_id_from(send(client, "middle"))
    newest = conversation_id_from(send(client, "newest"))
    client.get(f"/c/{middle}")  # open the middle one
    response = client.post(f"/c/{middle}/delete", headers=HX)
    assert f'"path": "/c/{older}"' in response.headers["HX-Location"]  # the one below it
    response = client.post(f"/c/{newest}/delete", headers=HX)  # not the open one: no move
    assert "HX-Location" not in response.headers
    assert client.post(f"/c/{older}/delete").headers["Location"].endswith("/")


def test_deleting_a_conversation_stops_its_reply_first(live_server, app, fake_openai):
    import requests

    from .fake_openai import Reply
    from .helpers import all_messages, only_conversation, post_url, wait_until

    fake_openai.will(Reply(" ".join(f"w{i}" for i in range(200)), token_delay=0.05))  # ~10 s
    with requests.Session() as s:
        response = s.post(live_server.url + post_url(), data={"content": "long one"}, headers=HX, stream=True)
        next(line for line in response.iter_lines(decode_unicode=True) if 'hx-target="#msg-2-tail"' in line)
        cid = only_conversation(app)
        assert s.post(f"{live_server.url}/c/{cid}/delete", headers=HX).status_code == 200
        wait_until(lambda: fake_openai.closed_streams == 1, timeout=3, what="the model call to be cancelled")
        response.close()
    assert all_messages(app) == []


def test_the_open_conversation_offers_its_downloads_and_the_list_all_of_them(client):
    assert "export.md" not in client.get("/").get_data(as_text=True)  # (nothing to export yet)
    cid = conversation_id_from(send(client, "Battery drains fast"))
    page = client.get(f"/c/{cid}").get_data(as_text=True)
    for link in (f"/c/{cid}/export.md", f"/c/{cid}/export.json", "/conversations/export.jsonl"):
        assert f'href="{link}" download' in page
        assert client.get(link).status_code == 200
