"""Regenerate and edit keep the earlier versions: messages form a tree, the conversation shows one
path, a ‹ n/m › switcher changes it, and the model reads the shown path only."""

from __future__ import annotations

import html
import re
import time

from chatbot.config import DEFAULT_SYSTEM_PROMPT

from .fake_openai import Reply
from .helpers import HX, all_messages, conversation_id_from, history, message_url, parse_sse, post_url, send
from .test_resilience import set_reply


def post(client, cid: str, **form: str):
    return client.post(post_url(cid), data={"content": "", **form}, headers=HX, buffered=True)


def switch(client, cid: str, message_id: int, to: int | str, htmx: bool = True):
    return client.post(
        message_url(cid, message_id, "version"),
        data={"to": str(to)},
        headers=HX if htmx else {},
        buffered=True,
    )


def shown(client, cid: str) -> list[str]:
    """The messages the conversation's page shows, in order (their text)."""
    page = client.get(f"/c/{cid}").get_data(as_text=True)
    return [
        html.unescape(re.sub(r"<[^>]+>", "", body)).strip()
        for body in re.findall(r'class="message-body[^"]*" id="msg-\d+-body"[^>]*>(.*?)</div>', page, re.S)
    ]


def model_saw(request) -> list[tuple[str, str]]:
    """The conversation the model read (without the turn's note about the shop's articles)."""
    return [(m["role"], m["content"]) for m in history(request)]


def ids(app) -> dict[str, int]:
    return {m.content: m.id for m in all_messages(app)}


def test_regenerate_keeps_the_first_answer_as_a_version_and_the_model_reads_the_shown_path(
    client, app, fake_openai
):
    fake_openai.will(Reply("First answer."), Reply("Second answer."), Reply("Thanks reply."))
    cid = conversation_id_from(send(client, "My phone won't charge"))
    first = ids(app)["First answer."]

    response = post(client, cid, regenerate=str(first))
    assert response.status_code == 200
    events = parse_sse(response.get_data(as_text=True))
    assert f'hx-target="#msg-{first}"' in events[0]["data"]  # in place of the answer it replaces
    assert {"event": "chatbot:forked", "data": str(ids(app)["Second answer."])} in [
        {"event": e["event"], "data": e["data"]} for e in events
    ]
    assert 'aria-label="Version 2 of 2"' in events[-1]["data"]
    # the second call was asked the question only: not the answer being replaced
    assert model_saw(fake_openai.requests[1]) == [
        ("system", DEFAULT_SYSTEM_PROMPT),
        ("user", "My phone won't charge"),
    ]
    assert shown(client, cid) == ["My phone won't charge", "Second answer."]

    # back to the first version: it shows, and the next message follows it
    second = ids(app)["Second answer."]
    page = switch(client, cid, second, first).get_data(as_text=True)
    assert "First answer." in page and "Second answer." not in page
    assert 'aria-label="Version 1 of 2"' in page
    assert shown(client, cid) == ["My phone won't charge", "First answer."]
    send(client, "Thanks!", cid)
    assert model_saw(fake_openai.requests[2])[1:] == [
        ("user", "My phone won't charge"),
        ("assistant", "First answer."),
        ("user", "Thanks!"),
    ]
    # nothing was deleted
    assert {m.content for m in all_messages(app)} >= {"First answer.", "Second answer."}


def test_edit_makes_a_new_version_of_a_question_and_keeps_the_conversation_that_followed_the_old(
    client, app, fake_openai
):
    fake_openai.will(Reply("a1"), Reply("a2"), Reply("a3"), Reply("a2 again"), Reply("a4"))
    cid = conversation_id_from(send(client, "q1"))
    send(client, "q2", cid)
    send(client, "q3", cid)
    q2 = ids(app)["q2"]

    response = post(client, cid, edit=str(q2), edit_content="q2, said better")
    assert response.status_code == 200
    first_event = parse_sse(response.get_data(as_text=True))[0]["data"]
    assert f'hx-target="#msg-{q2}"' in first_event and 'aria-label="Version 2 of 2"' in first_event
    assert model_saw(fake_openai.requests[3])[1:] == [
        ("user", "q1"),
        ("assistant", "a1"),
        ("user", "q2, said better"),
    ]
    assert shown(client, cid) == ["q1", "a1", "q2, said better", "a2 again"]

    # the switcher on the edited question brings back the old one and everything after it
    edited = ids(app)["q2, said better"]
    switch(client, cid, edited, q2)
    assert shown(client, cid) == ["q1", "a1", "q2", "a2", "q3", "a3"]
    send(client, "q4", cid)
    assert [c for _, c in model_saw(fake_openai.requests[4])[1:]] == [
        "q1",
        "a1",
        "q2",
        "a2",
        "q3",
        "a3",
        "q4",
    ]
    # and forward again: the edited branch, as it was
    switch(client, cid, q2, edited)
    assert shown(client, cid) == ["q1", "a1", "q2, said better", "a2 again"]


def test_a_switch_follows_the_newest_conversation_of_the_chosen_version(client, app, fake_openai):
    fake_openai.will(Reply("a1"), Reply("a1 v2"), Reply("a2 on v2"))
    cid = conversation_id_from(send(client, "q1"))
    a1 = ids(app)["a1"]
    post(client, cid, regenerate=str(a1))
    send(client, "q2", cid)
    v2 = ids(app)["a1 v2"]
    switch(client, cid, v2, a1)
    assert shown(client, cid) == ["q1", "a1"]
    switch(client, cid, a1, v2)
    assert shown(client, cid) == ["q1", "a1 v2", "q2", "a2 on v2"]


def test_versions_are_refused_where_they_make_no_sense(client, app, fake_openai):
    fake_openai.will(Reply("a1"), Reply("a2"))
    cid = conversation_id_from(send(client, "q1"))
    send(client, "q2", cid)
    m = ids(app)
    before = len(all_messages(app))

    # only the latest answer is regenerated; only the customer's own shown messages are edited
    assert post(client, cid, regenerate=str(m["a1"])).status_code == 409
    assert post(client, cid, regenerate=str(m["q2"])).status_code == 409
    assert post(client, cid, edit=str(m["a1"]), edit_content="hijack").status_code == 409
    assert post(client, cid, edit="999999", edit_content="nope").status_code == 409
    refused = post(client, cid, edit=str(m["q1"]), edit_content="   ", content="my draft")
    assert refused.status_code == 422 and "Please type a message first." in refused.get_data(as_text=True)
    # a version switch needs a version of the same message
    assert switch(client, cid, m["a2"], m["a1"]).status_code == 409
    assert switch(client, cid, m["a2"], "").status_code == 400
    assert switch(client, cid, m["a2"], "x").status_code == 400
    assert len(all_messages(app)) == before and len(fake_openai.requests) == 2
    assert shown(client, cid) == ["q1", "a1", "q2", "a2"]


def test_versions_belong_to_the_conversations_owner(client, app, fake_openai):
    fake_openai.will(Reply("a1"), Reply("a1 v2"))
    cid = conversation_id_from(send(client, "q1"))
    a1 = ids(app)["a1"]
    post(client, cid, regenerate=str(a1))
    stranger = app.test_client()
    send(stranger, "my own question")
    v2 = ids(app)["a1 v2"]
    assert switch(stranger, cid, v2, a1).status_code == 404
    assert post(stranger, cid, regenerate=str(v2)).status_code == 404
    assert post(stranger, cid, edit=str(ids(app)["q1"]), edit_content="mine now").status_code == 404
    assert stranger.get(f"/c/{cid}?edit={ids(app)['q1']}").status_code == 404
    assert shown(client, cid) == ["q1", "a1 v2"]


def test_no_switch_while_a_reply_is_being_written(client, app, fake_openai):
    fake_openai.will(Reply("a1"), Reply("a1 v2"))
    cid = conversation_id_from(send(client, "q1"))
    a1 = ids(app)["a1"]
    post(client, cid, regenerate=str(a1))
    v2 = ids(app)["a1 v2"]
    set_reply(app, v2, status="streaming", lease_until=time.time() + 60)
    refused = switch(client, cid, v2, a1)
    assert refused.status_code == 409 and "still answering" in refused.get_data(as_text=True)


def test_without_javascript_edit_opens_an_editor_inside_the_message(client, app, fake_openai):
    fake_openai.will(Reply("a1"), Reply("a1 after edit"))
    cid = conversation_id_from(send(client, "q1 with a typo"))
    q1 = ids(app)["q1 with a typo"]
    # the Edit button is a GET form: the page opens with the editor inside that message
    page = client.get(f"/c/{cid}?edit={q1}").get_data(as_text=True)
    article = page[page.index(f'id="msg-{q1}"') : page.index("</article>", page.index(f'id="msg-{q1}"'))]
    assert re.search(
        r'<textarea id="edit-\d+" name="edit_content" form="composer"[^>]*>q1 with a typo</textarea>', article
    )
    assert f'form="composer" name="edit" value="{q1}"' in article
    assert re.search(r'<textarea id="composer-input"[^>]*></textarea>', page)  # the composer's draft: its own
    # an answer has no editor: the page opens as usual
    page = client.get(f"/c/{cid}?edit={ids(app)['a1']}").get_data(as_text=True)
    assert 'name="edit_content"' not in page
    # a refused edit keeps the editor open with the text, and says why
    refused = client.post(post_url(cid), data={"content": "", "edit": str(q1), "edit_content": " "})
    assert refused.status_code == 422 and 'name="edit_content"' in refused.get_data(as_text=True)
    # the composer's form posted without htmx: a redirect, and the new version shown
    response = client.post(
        post_url(cid), data={"content": "a draft", "edit": str(q1), "edit_content": "q1 fixed"}
    )
    assert response.status_code == 303
    assert shown(client, cid) == ["q1 fixed", "a1 after edit"]
    # and the switcher works without JavaScript too
    fixed = ids(app)["q1 fixed"]
    response = switch(client, cid, fixed, q1, htmx=False)
    assert response.status_code == 303 and response.headers["Location"].endswith(f"#msg-{q1}")
    assert shown(client, cid) == ["q1 with a typo", "a1"]


def shown_path_is_a_chain(app, cid_db: int) -> bool:
    """Every shown message follows the shown message before it: one unbroken path."""
    rows = [m for m in all_messages(app) if m.conversation_id == cid_db and m.shown]
    return all(m.parent_id == (rows[i - 1].id if i else None) for i, m in enumerate(rows))


def test_two_switches_at_once_leave_one_whole_path(live_server, app, fake_openai):
    """Two tabs switch two messages of one conversation at the same moment: they take turns, and
    the conversation shows one unbroken path (never an answer without its question)."""
    import threading

    import requests

    fake_openai.will(Reply("a1"), Reply("q1 edited answer"), Reply("a2"), Reply("a2 v2"))
    with requests.Session() as tab:
        first = tab.post(live_server.url + "/c", data={"content": "q1"}, headers=HX).text
        cid = next(e["data"] for e in parse_sse(first) if e["event"] == "chatbot:navigate").rsplit("/", 1)[1]
        q1 = ids(app)["q1"]
        tab.post(
            live_server.url + post_url(cid),
            data={"content": "", "edit": str(q1), "edit_content": "q1 v2"},
            headers=HX,
        )
        tab.post(live_server.url + post_url(cid), data={"content": "q2"}, headers=HX)
        a2 = ids(app)["a2"]
        tab.post(live_server.url + post_url(cid), data={"content": "", "regenerate": str(a2)}, headers=HX)
        cid_db = all_messages(app)[0].conversation_id
        for _ in range(5):
            m = ids(app)
            # both tabs see q1 v2 ... a2 v2 and switch one message each, at once
            tab.post(
                live_server.url + message_url(cid, m["q1"], "version"),
                data={"to": str(m["q1 v2"])},
                headers=HX,
            )
            tab.post(
                live_server.url + message_url(cid, m["a2"], "version"),
                data={"to": str(m["a2 v2"])},
                headers=HX,
            )
            assert shown_path_is_a_chain(app, cid_db)
            together = threading.Barrier(2)
            statuses = []

            def switch_at_once(message: int, to: int, together=together, statuses=statuses) -> None:
                together.wait()
                url = live_server.url + message_url(cid, message, "version")
                statuses.append(tab.post(url, data={"to": str(to)}, headers=HX).status_code)

            threads = [
                threading.Thread(target=switch_at_once, args=(m["q1 v2"], m["q1"])),
                threading.Thread(target=switch_at_once, args=(m["a2 v2"], m["a2"])),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
            assert 200 in statuses and all(s in (200, 409) for s in statuses), statuses
            assert shown_path_is_a_chain(app, cid_db), [
                (x.id, x.parent_id, x.content) for x in all_messages(app) if x.shown
            ]


def test_a_page_whose_last_message_another_tab_set_aside_cannot_continue_out_of_sight(
    client, app, fake_openai
):
    fake_openai.will(Reply("a1"), Reply("a1 for Samsung"))
    cid = conversation_id_from(send(client, "I have an iPhone"))
    q1 = ids(app)["I have an iPhone"]
    post(client, cid, edit=str(q1), edit_content="I have a Samsung Galaxy")  # tab A
    samsung_answer = ids(app)["a1 for Samsung"]
    switch(client, cid, ids(app)["I have a Samsung Galaxy"], q1)  # tab B goes back to the iPhone
    # tab A still shows the Samsung branch and sends: refused, nothing saved, no model call
    refused = post(client, cid, content="how do I check battery health?", after=str(samsung_answer))
    assert refused.status_code == 409 and "changed in another tab" in refused.get_data(as_text=True)
    assert len(fake_openai.requests) == 2 and "how do I check battery health?" not in ids(app)
    # a page that shows the conversation as it is goes on
    assert (
        post(client, cid, content="how do I check battery health?", after=str(ids(app)["a1"])).status_code
        == 200
    )
    assert [c for _, c in model_saw(fake_openai.requests[2])[1:]] == [
        "I have an iPhone",
        "a1",
        "how do I check battery health?",
    ]


def test_a_stopped_answer_is_regenerated_as_a_new_version_not_retried_over(client, app, fake_openai):
    fake_openai.will(Reply("a1"), Reply("a1, again"))
    cid = conversation_id_from(send(client, "q1"))
    a1 = ids(app)["a1"]
    set_reply(app, a1, status="interrupted", meta={"finish_reason": "stopped"})
    page = client.get(f"/c/{cid}").get_data(as_text=True)
    assert f'name="regenerate" value="{a1}"' in page and 'data-action="retry"' not in page
    post(client, cid, regenerate=str(a1))
    assert shown(client, cid) == ["q1", "a1, again"]
    switch(client, cid, ids(app)["a1, again"], a1)
    assert shown(client, cid) == ["q1", "a1"]  # what the customer had read is kept


def test_editing_the_first_message_retitles_the_conversation_unless_it_was_renamed(client, app, fake_openai):
    from .helpers import all_conversations

    fake_openai.will(Reply("a1"), Reply("a1 again"), Reply("a2"), Reply("a3"))
    cid = conversation_id_from(send(client, "my ipone wont charge"))
    q1 = ids(app)["my ipone wont charge"]
    response = post(client, cid, edit=str(q1), edit_content="My iPhone 15 is not charging")
    assert 'hx-target="#conversation-title"' in response.get_data(as_text=True)
    assert all_conversations(app)[0].title == "My iPhone 15 is not charging"
    send(client, "second question", cid)
    post(client, cid, edit=str(ids(app)["second question"]), edit_content="second, edited")
    assert all_conversations(app)[0].title == "My iPhone 15 is not charging"  # only the first counts


def test_without_javascript_a_refused_edit_keeps_the_composers_draft(client, app, fake_openai):
    cid = conversation_id_from(send(client, "q1"))
    q1 = ids(app)["q1"]
    page = client.post(
        post_url(cid), data={"content": "my unsent draft", "edit": str(q1), "edit_content": " "}
    )
    assert page.status_code == 422
    assert re.search(
        r'<textarea id="composer-input"[^>]*>my unsent draft</textarea>', page.get_data(as_text=True)
    )


def test_a_switch_gives_back_the_list_as_long_as_the_page_had_it(app_factory, fake_openai, openai_config):
    app = app_factory(**openai_config, PAGE_MESSAGES=4)
    client = app.test_client()
    fake_openai.will(*[Reply(f"a{i}") for i in range(1, 5)], Reply("a1 again"))
    cid = conversation_id_from(send(client, "q1"))
    for i in range(2, 5):
        send(client, f"q{i}", cid)
    q1 = ids(app)["q1"]
    post(client, cid, edit=str(q1), edit_content="q1 v2")
    # the page had loaded every message ("Show earlier"); it switches the first one back
    listed = switch_from(client, cid, ids(app)["q1 v2"], q1, first_shown=ids(app)["q1 v2"])
    bodies = re.findall(r'id="msg-(\d+)"', listed)
    assert str(q1) in bodies and len(bodies) == 8  # all of q1..a4, not just the newest page
    assert "Show earlier messages" not in listed


def switch_from(client, cid: str, message_id: int, to: int, first_shown: int) -> str:
    return client.post(
        message_url(cid, message_id, "version"), data={"to": str(to), "from": str(first_shown)}, headers=HX
    ).get_data(as_text=True)
