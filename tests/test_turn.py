"""One turn end to end over the fake OpenAI server: what the model receives, what is saved,
what the page shows."""

from __future__ import annotations

import itertools
import json
import os
import time

import pytest

from chatbot.config import DEFAULT_SYSTEM_PROMPT

from .fake_openai import DEFAULT_REPLY, FakeOpenAI, Reply
from .helpers import (
    HX,
    all_conversations,
    all_messages,
    conversation_id_from,
    history,
    message_url,
    parse_sse,
    send,
)


def test_three_turns_send_the_whole_history_in_order(client, fake_openai, openai_config):
    fake_openai.will(Reply("First answer."), Reply("Second answer."), Reply("Third answer."))
    first = send(client, "My phone won't charge")
    cid = conversation_id_from(first)
    send(client, "I tried another cable", cid)
    send(client, "And another charger too", cid)

    assert len(fake_openai.requests) == 3
    third = fake_openai.requests[2].json
    assert third["model"] == openai_config["MODEL"]
    assert third["stream"] is True
    assert third["stream_options"] == {"include_usage": True}
    assert history(fake_openai.requests[2]) == [
        {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
        {"role": "user", "content": "My phone won't charge"},
        {"role": "assistant", "content": "First answer."},
        {"role": "user", "content": "I tried another cable"},
        {"role": "assistant", "content": "Second answer."},
        {"role": "user", "content": "And another charger too"},
    ]
    assert fake_openai.requests[2].headers["authorization"] == "Bearer sk-test-not-a-real-key"


def test_reply_is_saved_with_metadata_and_shown_after_reload(client, app, fake_openai, openai_config):
    response = send(client, "How do I check battery health?")
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    cid = conversation_id_from(response)

    messages = all_messages(app)
    assert [(m.is_user, m.status) for m in messages] == [(True, "complete"), (False, "complete")]
    reply = messages[1]
    assert reply.content == DEFAULT_REPLY
    meta = reply.meta
    assert meta["provider"] == "openai"
    assert meta["model"] == openai_config["MODEL"]
    assert meta["finish_reason"] == "stop"
    assert meta["prompt_tokens"] > 0 and meta["completion_tokens"] > 0
    assert meta["total_tokens"] == meta["prompt_tokens"] + meta["completion_tokens"]
    assert meta["latency_ms"] >= 0 and meta["ttft_ms"] <= meta["latency_ms"]

    conversation = all_conversations(app)[0]
    assert conversation.title == "How do I check battery health?"
    assert conversation.updated_at >= conversation.created_at

    page = client.get(f"/c/{cid}").get_data(as_text=True)
    assert 'data-role="user"' in page and "How do I check battery health?" in page
    assert "<strong>Settings &gt; Battery</strong>" in page  # rendered from markdown
    # the assistant by the name customers know, never the model's id (that stays in the metadata)
    assert ">Phone support<" in page and openai_config["MODEL"] not in page
    home = client.get("/").get_data(as_text=True)  # the session remembers the open conversation
    assert "How do I check battery health?" in home


def test_title_is_the_first_message_trimmed(client, app, fake_openai):
    long = "My screen " + "flickers a lot when I open the camera app and then it freezes " * 3
    send(client, long)
    title = all_conversations(app)[0].title
    assert title.startswith("My screen flickers") and title.endswith("…")
    assert len(title) <= 61


def test_without_javascript_the_form_posts_and_redirects(client, app, fake_openai):
    response = send(client, "Is water damage covered?", htmx=False)
    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith("/c/")
    page = client.get(location).get_data(as_text=True)
    assert "Is water damage covered?" in page
    assert "Hello from the fake model." in page
    assert [m.status for m in all_messages(app)] == ["complete", "complete"]


def test_new_conversation_clears_the_page_and_keeps_the_old_one(client, app, fake_openai):
    cid = conversation_id_from(send(client, "First conversation"))
    response = client.post("/new")
    assert response.status_code == 303
    home = client.get("/").get_data(as_text=True)
    chat = home.split('id="chat"', 1)[1]
    assert "First conversation" not in chat  # an empty chat...
    assert (
        f'href="/c/{cid}" data-conversation-id' in home.split('id="chat"', 1)[0]
    )  # ...the old one in the list
    assert 'data-action="new-conversation"' in home
    assert "First conversation" in client.get(f"/c/{cid}").get_data(as_text=True)
    send(client, "Second conversation")
    assert [c.title for c in all_conversations(app)] == ["First conversation", "Second conversation"]


def test_model_output_is_sanitized(client, app, fake_openai):
    fake_openai.will(
        Reply(
            "Try this <script>alert(1)</script> <img src=x onerror=alert(2)> "
            "[link](javascript:alert(3)) and <b>bold</b>"
        )
    )
    cid = conversation_id_from(send(client, "hi"))
    page = client.get(f"/c/{cid}").get_data(as_text=True)
    body = page.split('id="msg-2-body"', 1)[1].split("</article>", 1)[0]
    assert "<script" not in body and "<img" not in body and 'href="javascript:' not in body
    assert "&lt;script&gt;" in body  # shown as text, not run


def test_second_app_instance_on_the_same_database_shows_the_conversation(
    app_factory, openai_config, fake_openai
):
    first = app_factory(**openai_config)
    client = first.test_client()
    cid = conversation_id_from(send(client, "Shared across workers?"))
    cookie = client.get_cookie("chatbot_session")

    second = app_factory(**openai_config)  # a new process/worker would build its own app
    other = second.test_client()
    other.set_cookie("chatbot_session", cookie.value)
    page = other.get(f"/c/{cid}")
    assert page.status_code == 200
    assert "Shared across workers?" in page.get_data(as_text=True)
    assert "Shared across workers?" in other.get("/").get_data(as_text=True)


def test_another_browser_gets_404_for_a_conversation(app, fake_openai):
    owner, stranger = app.test_client(), app.test_client()
    cid = conversation_id_from(send(owner, "Private question"))
    reply_id = all_messages(app)[1].id

    assert stranger.get(f"/c/{cid}").status_code == 404
    response = send(stranger, "Intruding", cid)
    assert response.status_code == 404
    assert (
        stranger.post(message_url(cid, reply_id, "stop"), headers={"HX-Request": "true"}).status_code == 404
    )
    assert stranger.get(message_url(cid, reply_id)).status_code == 404
    assert send(stranger, retry=reply_id, conversation=cid).status_code == 404
    assert "Private question" not in stranger.get("/").get_data(as_text=True)
    assert len(all_messages(app)) == 2  # the stranger saved nothing
    assert owner.get(f"/c/{cid}").status_code == 200


def test_stream_events_have_the_dom_contract(client, fake_openai):
    events = parse_sse(send(client, "Does the stream look right?").get_data(as_text=True))
    first = events[0]["data"]
    assert 'data-role="user"' in first and 'data-status="streaming"' in first
    assert 'id="msg-2-body"' in first and 'data-action="stop"' in first
    texts = [e["data"] for e in events if 'hx-target="#msg-2-tail"' in e["data"]]
    assert texts, "the reply's text should arrive in its own events"
    last = events[-1]["data"]
    assert last.startswith('<hx-partial hx-target="#msg-2" hx-swap="outerHTML">')
    assert 'data-status="complete"' in last and "hx-ignore" in last


def test_wire_bytes_equal_the_typed_sdk_call(app, fake_openai):
    """Sending messages through ``extra_body`` skips the SDK's per-message walk, not a byte."""
    from chatbot.llm import get_provider

    provider = get_provider(app)
    messages = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": 'Hola, ¿qué tal? "quotes"'},
        {"role": "assistant", "content": "Bien"},
        {"role": "user", "content": "x" * 50},
    ]
    list(provider.stream(messages))
    kwargs = provider.request_kwargs(messages)
    kwargs.pop("extra_body")
    kwargs["messages"] = messages
    with provider.client.chat.completions.create(**kwargs) as typed:
        list(typed)
    ours, theirs = fake_openai.requests
    assert ours.body == theirs.body
    assert json.loads(ours.body)["messages"] == messages


@pytest.fixture
def many_open_files():
    """Hold open files until new sockets get numbers from 1024 up, as in a busy gevent worker."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        if hard != resource.RLIM_INFINITY and hard < 1200:
            pytest.skip(f"this machine allows {hard} open files: can't reach file number 1024")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
    held = []
    while not held or held[-1].fileno() < 1030:
        held.append(open(os.devnull, "rb"))  # noqa: SIM115 - held until the test ends
    yield
    for f in held:
        f.close()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("files", ["few files open", "file numbers over 1024"])
def test_a_paced_reply_over_tls_keeps_up_with_the_model(
    app_factory, openai_config, tmp_path, monkeypatch, request, files
):
    """Over TLS a socket read returns one record, one chunk: a paced read must take every record
    that has arrived, or a reply of 50 chunks paced at 0.2 s would take 10 s instead of 0.5 s."""
    import trustme

    from chatbot.llm import Text, get_provider

    if files != "few files open":
        request.getfixturevalue("many_open_files")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    server = FakeOpenAI(tls=ca)
    try:
        assert server.url.startswith("https://")
        provider = get_provider(app_factory(**{**openai_config, "OPENAI_BASE_URL": server.url}))
        text = " ".join(f"w{i}" for i in range(50))
        server.will(Reply(text, token_delay=0.01))
        reply = provider.stream([{"role": "user", "content": "count"}])
        reply.pace(0.2)
        started = time.perf_counter()
        got = "".join(event.text for event in reply if isinstance(event, Text))
        took = time.perf_counter() - started
    finally:
        server.close()
    assert got == text
    assert took < 1.5, f"the paced reply took {took:.2f} s"


def test_replies_reuse_one_connection_to_the_model(app, fake_openai):
    """A reply is read to the end of its body (past ``data: [DONE]``), so its connection goes
    back to the pool and the next reply needs no new connection (nor TLS handshake)."""
    from chatbot.llm import Text, get_provider

    provider = get_provider(app)
    fake_openai.will(*(Reply(f"Answer {i}.") for i in range(3)))
    answers = [
        "".join(e.text for e in provider.stream([{"role": "user", "content": "hi"}]) if isinstance(e, Text))
        for _ in range(3)
    ]
    assert answers == ["Answer 0.", "Answer 1.", "Answer 2."]
    assert fake_openai.connections == 1


def test_a_paced_reply_reads_the_model_in_bursts_and_loses_nothing(app, fake_openai):
    """Once text flows, a paced reply reads the model's socket at most every ``pace`` seconds,
    taking every chunk that arrived meanwhile; unpaced, each chunk is read as it lands."""
    from chatbot.llm import Text, get_provider

    text = "one two three four five six seven eight nine ten eleven twelve"
    provider = get_provider(app)

    def arrivals(pace: float) -> tuple[str, int]:
        fake_openai.will(Reply(text, token_delay=0.04))
        reply = provider.stream([{"role": "user", "content": "count"}])
        reply.pace(pace)
        got, times = [], []
        for event in reply:
            if isinstance(event, Text):
                got.append(event.text)
                times.append(time.perf_counter())
        gaps = sum(1 for a, b in itertools.pairwise(times) if b - a > 0.02)
        return "".join(got), gaps

    unpaced, unpaced_gaps = arrivals(0.0)
    paced, paced_gaps = arrivals(0.2)
    assert unpaced == paced == text
    assert unpaced_gaps >= 9  # 12 words, 40 ms apart: (nearly) every one on its own
    assert paced_gaps <= 4  # 0.5 s of text read in bursts 0.2 s apart


def test_an_answer_can_be_rated_up_or_down_with_a_comment_and_changed(app, client, fake_openai):
    cid = conversation_id_from(send(client, "My screen flickers"))
    (_, answer) = all_messages(app)
    url = message_url(cid, answer.id, "feedback")
    rated = client.post(url, data={"rating": "down"}, headers=HX)
    assert rated.status_code == 200 and 'data-action="feedback-down"' in rated.text
    assert 'aria-pressed="true" aria-label="Not helpful"' in rated.text  # shown as chosen
    assert all_messages(app)[1].meta["feedback"]["rating"] == "down"
    comment = "It didn't\x00 help\u202e\u200b\u2066\r\n"  # (no NUL, no hidden reordering)
    commented = client.post(url, data={"rating": "down", "comment": comment}, headers=HX)
    assert commented.status_code == 200 and 'value="It didn&#39;t help"' in commented.text
    client.post(url, data={"rating": "up"}, headers=HX)  # changed: a new rating replaces it
    feedback = all_messages(app)[1].meta["feedback"]
    assert feedback["rating"] == "up" and "comment" not in feedback
    page = client.get(f"/c/{cid}").get_data(as_text=True)
    assert 'aria-pressed="true" aria-label="Good answer"' in page  # still there on the page
    assert all_messages(app)[1].meta["finish_reason"] == "stop"  # the rest of its metadata kept


def test_rating_refuses_what_cannot_be_rated(app, client, fake_openai):
    cid = conversation_id_from(send(client, "Hello"))
    user, answer = all_messages(app)
    url = message_url(cid, answer.id, "feedback")
    bad = client.post(url, data={"rating": "sideways"}, headers=HX)
    assert bad.status_code == 400 and "thumbs up or thumbs down" in bad.text
    long = client.post(url, data={"rating": "up", "comment": "x" * 501}, headers=HX)
    assert long.status_code == 400 and "up to 500 characters" in long.text
    mine = client.post(message_url(cid, user.id, "feedback"), data={"rating": "up"}, headers=HX)
    assert mine.status_code == 409  # a customer's own message isn't rated
    stranger = app.test_client().post(url, data={"rating": "up"}, headers=HX)
    assert stranger.status_code == 404
    assert "feedback" not in all_messages(app)[1].meta
