"""Two languages: what a Spanish-speaking customer reads, from the browser's language or the
switcher, down to the errors, the times and the browser's own strings; and a catalog that
can't fall behind the strings in the code."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from sqlalchemy import update

from chatbot import i18n
from chatbot.extensions import db
from chatbot.models import Conversation, utcnow

from .fake_openai import Reply
from .helpers import HX, all_messages, conversation_id_from, parse_sse, send

ROOT = Path(__file__).resolve().parent.parent
PO = ROOT / "chatbot" / "translations" / "es" / "LC_MESSAGES" / "messages.po"
ES = {"Accept-Language": "es-MX,es;q=0.9,en;q=0.5"}


def page(client, url: str = "/", **headers) -> str:
    response = client.get(url, headers=headers)
    assert response.status_code in (200, 404), response.status_code
    return response.get_data(as_text=True)


def html_lang(body: str) -> str:
    return re.search(r'<html lang="([\w-]+)">', body).group(1)


# --- choosing the language ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "lang", "placeholder"),
    [
        ("es-MX,es;q=0.9,en;q=0.5", "es", "Escribe tu pregunta…"),
        ("es", "es", "Escribe tu pregunta…"),
        ("en-GB,en;q=0.8", "en", "Type your question…"),
        ("fr-FR,fr;q=0.9,es;q=0.4", "es", "Escribe tu pregunta…"),  # the best one we have
        ("de-DE", "en", "Type your question…"),
        ("", "en", "Type your question…"),
    ],
)
def test_the_page_speaks_the_browsers_language(client, accept, lang, placeholder):
    body = page(client, **{"Accept-Language": accept})
    assert html_lang(body) == lang
    assert placeholder in body


def test_the_switcher_is_remembered_over_the_browsers_language(client):
    body = page(client, **ES)
    assert 'name="lang" value="en"' in body and ">English<" in body  # (offers the other one)
    switched = client.post("/language", data={"lang": "en", "next": "/"}, headers=ES)
    assert switched.status_code == 303 and switched.headers["Location"] == "/"
    cookie = switched.headers["Set-Cookie"]
    assert "chatbot_lang=en" in cookie and "Max-Age=31536000" in cookie and "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    again = page(client, **ES)
    assert html_lang(again) == "en" and "New conversation" in again
    client.post("/language", data={"lang": "es", "next": "/"})
    assert html_lang(page(client)) == "es"


@pytest.mark.parametrize(
    ("target", "back_to"),
    [
        ("/c/abc?x=1", "/c/abc?x=1"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("", "/"),
    ],
)
def test_the_switcher_only_goes_back_to_this_site(client, target, back_to):
    response = client.post("/language", data={"lang": "es", "next": target})
    assert response.status_code == 303 and response.headers["Location"] == back_to


def test_an_unknown_language_is_a_readable_400(client):
    response = client.post("/language", data={"lang": "fr"}, headers=ES)
    assert response.status_code == 400
    assert "Elige English o Español." in response.get_data(as_text=True)
    assert "Set-Cookie" not in response.headers


# --- what the customer reads ---------------------------------------------------------------------


def test_errors_and_refusals_are_in_the_pages_language(client):
    missing = page(client, "/c/nope", **ES)
    assert "<h1>No encontrado</h1>" in missing and "Esta conversación no existe o no es tuya." in missing
    refused = client.post("/c", data={"content": "   "}, headers={**HX, **ES})
    assert (
        refused.status_code == 422 and refused.get_data(as_text=True).strip() == "Escribe un mensaje primero."
    )
    english = client.post("/c", data={"content": "   "}, headers=HX)
    assert english.get_data(as_text=True).strip() == "Please type a message first."


def test_a_failed_reply_reads_in_the_language_of_the_page_that_shows_it(client, fake_openai):
    fake_openai.will(Reply(status=503))
    cid = conversation_id_from(send(client, "Mi batería se descarga"))
    es = page(client, f"/c/{cid}", **ES)
    assert "El asistente tuvo un problema al responder. Inténtalo de nuevo en un momento." in es
    assert ">Reintentar<" in es
    en = page(client, f"/c/{cid}")
    assert "The assistant had a problem answering. Please try again in a moment." in en


def test_times_and_counts_are_localized(app, client, fake_openai):
    cid = conversation_id_from(send(client, "Mi batería se descarga"))
    assert "ahora mismo" in page(client, **ES)
    with app.app_context():
        db.session.execute(update(Conversation).values(updated_at=utcnow() - timedelta(days=3)))
        db.session.commit()
    assert re.search(r'class="conversation-time"[^>]*>hace 3 días<', page(client, **ES))
    assert re.search(r'class="conversation-time"[^>]*>3 days ago<', page(client))
    too_long = client.post(f"/c/{cid}/messages", data={"content": "x" * 8001}, headers={**HX, **ES}).get_data(
        as_text=True
    )
    assert "Tu mensaje tiene 8.001 caracteres; el límite es 8.000." in too_long


def test_each_message_says_its_language(app, client, fake_openai):
    fake_openai.will(Reply("Activa el **Ahorro de batería** en Ajustes y reduce el brillo de la pantalla."))
    cid = conversation_id_from(send(client, "¿Por qué mi batería se descarga tan rápido?"))
    body = page(client, f"/c/{cid}")  # an English page, a Spanish conversation
    assert html_lang(body) == "en"
    bodies = re.findall(r'<div class="message-body[^"]*" id="msg-\d+-body"([^>]*)>', body)
    assert len(bodies) == 2 and all(' lang="es"' in attrs for attrs in bodies), bodies
    assert all_messages(app)[1].meta["lang"] == "es"
    # too little to tell: the page's language applies
    fake_openai.will(Reply("OK"))
    send(client, "iPhone 15?", cid)
    last = re.findall(r'<div class="message-body[^"]*" id="msg-\d+-body"([^>]*)>', page(client, f"/c/{cid}"))
    assert "lang=" not in last[-1] and "lang=" not in last[-2]


def test_the_browsers_strings_come_in_the_pages_language(client):
    body = page(client, **ES)
    block = re.search(r'<script type="application/json" id="i18n-strings">(.*?)</script>', body, re.S)
    strings = json.loads(block.group(1))
    assert strings["Connection lost — reconnecting…"] == "Se perdió la conexión; reconectando…"
    assert strings["Copied"] == "Copiado"
    english = json.loads(re.search(r'id="i18n-strings">(.*?)</script>', page(client), re.S).group(1))
    assert all(key == value for key, value in english.items())
    # every string chat.js translates is in the block (and the other way round)
    script = (ROOT / "static" / "js" / "chat.js").read_text()
    used = {json.loads(f'"{s}"') for s in re.findall(r'\bt\("((?:[^"\\]|\\.)*)"\)', script)}
    assert used == set(strings)


def test_a_new_conversation_gets_its_downloads_in_the_first_event(client):
    first = parse_sse(send(client, "My battery drains fast").get_data(as_text=True))[0]["data"]
    assert '<hx-partial hx-target="#export-menu" hx-swap="outerHTML">' in first
    assert 'data-action="export-md"' in first


# --- the catalog ------------------------------------------------------------------------------------


def test_every_marked_string_has_a_spanish_translation_with_the_same_placeholders(tmp_path):
    pot = tmp_path / "messages.pot"
    pybabel = str(Path(sys.executable).parent / "pybabel")
    extract = [pybabel, "-q", "extract", "-F", "babel.cfg", "-k", "_l", "-k", "N_", "-o", str(pot), "."]
    subprocess.run(extract, cwd=ROOT, check=True)
    with pot.open("rb") as f:
        marked = {m.id for m in read_po(f) if m.id}
    with PO.open("rb") as f:
        catalog = read_po(f)
    translated = {m.id: m.string for m in catalog if m.id}
    assert marked - set(translated) == set(), "new strings: run `make translations` and translate them"
    placeholder = re.compile(r"%\((\w+)\)s")
    for msgid, msgstr in translated.items():
        ids = msgid if isinstance(msgid, tuple) else (msgid,)
        strs = msgstr if isinstance(msgstr, tuple) else (msgstr,)
        assert all(strs), f"untranslated: {msgid!r}"
        for s in strs:
            assert set(placeholder.findall(s)) == set(placeholder.findall(ids[-1])), (msgid, s)
    assert not [m.id for m in catalog if m.fuzzy and m.id], "fuzzy entries are not used: review them"


def test_a_catalog_without_its_compiled_file_is_compiled_at_start(app_factory, tmp_path, monkeypatch):
    copy = tmp_path / "translations" / "es" / "LC_MESSAGES"
    copy.mkdir(parents=True)
    (copy / "messages.po").write_bytes(PO.read_bytes())
    monkeypatch.setattr(i18n, "TRANSLATIONS", tmp_path / "translations")
    app = app_factory(BABEL_TRANSLATION_DIRECTORIES=str(tmp_path / "translations"))
    assert not (copy / "messages.mo").exists()
    assert "Nueva conversación" in page(app.test_client(), **ES)
