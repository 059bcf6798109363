"""The offline assistant: no API key, answers from the bundled dataset, clearly labelled."""

from __future__ import annotations

import json

import pytest

from chatbot.language import fold, language
from chatbot.llm.offline import DATASET, FALLBACK, answer

from .helpers import all_messages, conversation_id_from, parse_sse, send


def ask(*turns: str) -> str:
    """Answer a conversation given as alternating user/assistant turns, the last the user's."""
    roles = ["user", "assistant"]
    return answer([{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)])


# (conversation turns, words of which at least one must be in the answer, answer language)
QUESTIONS = [
    (["my battery drains really fast"], ["battery"], "en"),
    (["mi bateria se descarga rapidisimo"], ["batería"], "es"),  # no accents typed
    (["Se me rompió la pantalla, ¿qué hago?"], ["pantalla"], "es"),
    (["I droped my phone in the pool yesterday"], ["turn it off", "dry", "water", "liquid"], "en"),  # typo
    (["como activo la esim en mi telefono nuevo"], ["esim"], "es"),
    (["wifi wont conect at home"], ["network", "wi-fi", "router"], "en"),  # typos
    (["someone stole my phone on the bus"], ["find my", "imei", "erase"], "en"),
    (
        ["my phone gets really hot when charging", "…", "what if that doesn't help?"],
        ["cool", "warm", "hot", "charg"],
        "en",
    ),  # a follow-up
    (["la pantalla táctil no responde", "…", "¿y si eso no funciona?"], ["pantalla"], "es"),
    (["does the warranty cover a cracked screen?"], ["warranty"], "en"),
    (["la camara saca fotos borrosas"], ["lente", "cámara"], "es"),
    (["Mi TELÉFONO se CALIENTA mucho"], ["calient", "temperatura"], "es"),
]


@pytest.mark.parametrize("turns,expected,lang", QUESTIONS, ids=[q[0][-1][:30] for q in QUESTIONS])
def test_answers_on_topic_in_the_users_language(turns, expected, lang):
    reply = ask(*turns)
    assert reply not in FALLBACK.values()
    assert any(fold(word) in fold(reply) for word in expected), reply
    assert language(reply) == lang, reply


def test_unrelated_questions_get_what_it_can_help_with_in_the_right_language():
    assert ask("¿cuál es la capital de Francia?") == FALLBACK["es"]
    assert ask("what's the weather like today") == FALLBACK["en"]


def test_the_dataset_is_valid_chat_fine_tuning_data():
    lines = DATASET.read_text(encoding="utf-8").splitlines()
    assert len(lines) >= 60
    langs = {"es": 0, "en": 0}
    for line in lines:
        messages = json.loads(line)["messages"]
        assert messages[0]["role"] == "system"
        roles = [m["role"] for m in messages[1:]]
        assert roles == ["user", "assistant"] * (len(roles) // 2) and roles, roles
        assert all(isinstance(m["content"], str) and m["content"].strip() for m in messages)
        langs[language(messages[1]["content"] + " " + messages[2]["content"])] += 1
    assert langs["es"] >= 25 and langs["en"] >= 25, langs


def test_offline_turn_through_the_page_is_labelled(offline_app):
    client = offline_app.test_client()
    page = client.get("/").get_data(as_text=True)
    assert ">Offline assistant<" in page  # (the header says who answers)
    response = send(client, "¿Cómo libero espacio? El almacenamiento está lleno")
    events = parse_sse(response.get_data(as_text=True))
    assert len([e for e in events if 'hx-target="#msg-2-tail"' in e["data"]]) >= 1
    final = events[-1]["data"]
    assert 'data-status="complete"' in final and "Offline assistant" in final
    reply = all_messages(offline_app)[1]
    assert reply.meta["provider"] == "offline" and reply.meta["finish_reason"] == "stop"
    assert "espacio" in reply.content.lower()
    assert reply.meta["completion_tokens"] > 0
    cid = conversation_id_from(response)
    assert "Offline assistant" in client.get(f"/c/{cid}").get_data(as_text=True)


def test_without_javascript_the_offline_answer_comes_at_once(app_factory):
    """The word-by-word pause is for a page that shows the words arrive; a page without
    JavaScript waits for the whole answer (at 5 s a word, a paced answer would take minutes)."""
    app = app_factory(PROVIDER="auto", OFFLINE_WORD_DELAY=5.0)
    client = app.test_client()
    response = client.post("/c", data={"content": "My battery drains fast"})
    assert response.status_code == 303
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert 'data-role="assistant"' in page and 'data-status="complete"' in page
