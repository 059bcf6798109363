"""Bad input is refused plainly; a failing model call keeps the user's words and offers a retry."""

from __future__ import annotations

import socket

import pytest

from .fake_openai import Reply
from .helpers import all_conversations, all_messages, conversation_id_from, history, parse_sse, send


@pytest.mark.parametrize("content", ["", "   ", "\n\t  \n"])
def test_empty_message_is_refused_and_nothing_saved(client, app, fake_openai, content):
    response = send(client, content)
    assert response.status_code == 422
    assert "Please type a message first." in response.get_data(as_text=True)
    assert all_messages(app) == [] and all_conversations(app) == []
    assert fake_openai.requests == []


def test_too_long_message_is_refused_with_the_limit(client, app, fake_openai):
    response = send(client, "x" * 8001)
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    assert "8,001 characters" in text and "8,000" in text
    assert all_messages(app) == []
    assert send(client, "y" * 8000).status_code == 200  # the limit itself is fine


def test_limit_is_configurable(app_factory, openai_config, fake_openai):
    app = app_factory(MAX_MESSAGE_CHARS=20, **openai_config)
    assert send(app.test_client(), "a" * 21).status_code == 422


def test_refusal_without_javascript_keeps_the_draft_and_the_conversation(client, app, fake_openai):
    cid = conversation_id_from(send(client, "First question"))
    response = client.post(f"/c/{cid}/messages", data={"content": "z" * 9000})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "the limit is 8,000" in page
    assert "z" * 9000 in page  # what they typed is still in the box
    assert "First question" in page  # and the conversation is still on screen
    assert len(all_messages(app)) == 2


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


FAILURES = {  # what went wrong -> what the customer reads (plain words, no HTTP code)
    "429": (dict(status=429), "very busy right now"),
    "500": (dict(status=500), "had a problem answering"),
    "503": (dict(status=503), "had a problem answering"),
    "timeout": (dict(header_delay=1.5), "took too long"),
}


@pytest.mark.parametrize(
    ("reply", "says", "logged"),
    [
        (
            Reply(status=401, error_message="Incorrect API key provided: sk-test***"),
            "isn&#39;t available right now",
            "HTTP 401: the model's server refused our credentials; check OPENAI_API_KEY",
        ),
        (
            Reply(status=400, error_message="This model's maximum context length is 1047576 tokens."),
            "grown too long for the assistant. Please start a new conversation.",
            "HTTP 400",
        ),
    ],
    ids=["bad key", "too long"],
)
def test_a_failure_retrying_cant_fix_says_what_to_do_offers_no_retry_and_is_logged_for_the_operator(
    app_factory, openai_config, fake_openai, caplog, reply, says, logged
):
    app = app_factory(**openai_config, SUPPORT_CONTACT="call 900 123 456 or write to help@shop.example")
    client = app.test_client()
    fake_openai.will(reply)
    response = send(client, "Why is my phone hot?")
    final = parse_sse(response.get_data(as_text=True))[-1]["data"]
    assert 'data-status="error"' in final and says in final
    assert 'data-action="retry"' not in final  # trying again would fail the same way
    assert "Other ways to reach us: call 900 123 456 or write to help@shop.example" in final
    for operator_detail in ("HTTP", "API key", "OPENAI", "credentials", "sk-test", "1047576"):
        assert operator_detail not in final
    assert any(logged in r.getMessage() for r in caplog.records)  # the operator gets the detail
    (_, saved) = all_messages(app)
    assert saved.meta["retryable"] is False and logged in saved.meta["error_detail"]
    page = client.get(f"/c/{conversation_id_from(response)}").get_data(as_text=True)
    assert says in page and 'data-action="retry"' not in page  # the same after a reload


@pytest.mark.parametrize("case", [*FAILURES, "refused"])
def test_failed_model_call_keeps_the_message_shows_the_error_and_retry_works(
    case, app_factory, openai_config, fake_openai
):
    config = dict(openai_config, OPENAI_TIMEOUT=0.5)
    if case == "refused":
        config["OPENAI_BASE_URL"] = f"http://127.0.0.1:{_closed_port()}/v1"
        expected = "couldn&#39;t be reached"
    else:
        reply, expected = FAILURES[case]
        fake_openai.will(Reply(**reply))
    app = app_factory(**config)
    client = app.test_client()

    response = send(client, "Why is my phone hot?")
    assert response.status_code == 200
    events = parse_sse(response.get_data(as_text=True))
    final = events[-1]["data"]
    assert 'data-status="error"' in final
    assert expected in final and "Please try again" in final
    assert 'data-action="retry"' in final
    for secret in ("sk-test", "Traceback", "fake failure", "HTTP"):
        assert secret not in final

    user, reply_msg = all_messages(app)
    assert user.is_user and user.content == "Why is my phone hot?"
    assert reply_msg.status == "error" and reply_msg.content == ""
    assert expected.replace("&#39;", "'") in reply_msg.meta["error"]

    cid = conversation_id_from(response)
    page = client.get(f"/c/{cid}").get_data(as_text=True)
    assert expected in page and 'data-action="retry"' in page  # still there after a reload

    if case == "refused":  # the server comes back
        app.config["OPENAI_BASE_URL"] = fake_openai.url
        from chatbot.llm import init_app as init_provider

        init_provider(app)
    calls_before = len(fake_openai.requests)
    retried = send(client, "", cid, retry=reply_msg.id)
    assert retried.status_code == 200
    final = parse_sse(retried.get_data(as_text=True))[-1]["data"]
    assert 'data-status="complete"' in final and "Hello from the fake model." in final
    assert len(fake_openai.requests) == calls_before + 1  # one call for one retry

    messages = all_messages(app)
    assert [(m.is_user, m.status) for m in messages] == [(True, "complete"), (False, "complete")]
    assert messages[1].id == reply_msg.id
    assert fake_openai.requests[-1].json["messages"][-1] == {
        "role": "user",
        "content": "Why is my phone hot?",
    }


def test_failed_reply_is_left_out_of_the_next_model_input(client, app, fake_openai):
    fake_openai.will(Reply(status=500))
    cid = conversation_id_from(send(client, "First try"))
    send(client, "Second question", cid)
    sent = history(fake_openai.requests[-1])
    assert [m["role"] for m in sent] == ["system", "user", "user"]


def test_retry_only_applies_to_the_latest_failed_reply(client, app, fake_openai):
    fake_openai.will(Reply(status=500))
    cid = conversation_id_from(send(client, "One"))
    failed = all_messages(app)[1]
    send(client, "Two", cid)  # the conversation moved on
    response = send(client, "", cid, retry=failed.id)
    assert response.status_code == 409
    assert "Only the latest reply can be retried." in response.get_data(as_text=True)

    complete = all_messages(app)[-1]
    response = send(client, "", cid, retry=complete.id)
    assert response.status_code == 409  # a finished reply is not retried behind the user's back
    assert len(fake_openai.requests) == 2


def test_sdk_retries_are_configurable(app_factory, openai_config, fake_openai):
    """With OPENAI_MAX_RETRIES=1 a single 503 is retried by the SDK and the user never sees it."""
    app = app_factory(**dict(openai_config, OPENAI_MAX_RETRIES=1))
    fake_openai.will(Reply(status=503))
    final = parse_sse(send(app.test_client(), "hello").get_data(as_text=True))[-1]["data"]
    assert 'data-status="complete"' in final
    assert len(fake_openai.requests) == 2


def test_unknown_conversation_is_a_readable_404(client):
    response = client.get("/c/does-not-exist")
    assert response.status_code == 404
    assert "isn&#39;t yours" in response.get_data(as_text=True)


def test_htmx_errors_come_back_as_a_short_message_for_the_composer(client):
    response = client.post("/c/nope/messages", data={"content": "hi"}, headers={"HX-Request": "true"})
    assert response.status_code == 404
    assert (
        response.get_data(as_text=True).strip()
        == "This conversation doesn&#39;t exist, or it isn&#39;t yours."
    )
