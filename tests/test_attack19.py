"""Attacks on the shop's knowledge (issue 19) that once worked: each test here is a hole found by
trying to break the feature, closed."""

from __future__ import annotations

import random
import statistics
import threading
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import event

from chatbot.chat import outcomes
from chatbot.extensions import db
from chatbot.knowledge import articles, index
from chatbot.knowledge import retrieve as retrieve_module
from chatbot.knowledge.retrieve import COMMON, collection, retrieve
from chatbot.language import detect
from chatbot.models import utcnow

from .a11y import assert_no_serious_violations
from .conftest import LiveServer
from .fake_openai import Reply
from .helpers import all_conversations, all_messages, conversation_id_from, parse_sse, send
from .test_a11y import open_page


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def help_centre(folder: Path, count: int, seed: int = 7) -> None:
    """The samples, then variants of them (their sections under new titles, words of their own)
    up to ``count`` articles: a help centre of a realistic size."""
    rng = random.Random(seed)
    samples = articles.load(articles.SAMPLES)
    extra = "model pro max mini plus lite ultra fold flip edge note router hotspot carrier plan".split()
    for sample in samples:
        write(folder, f"{sample.slug}.md", (articles.SAMPLES / f"{sample.slug}.md").read_text("utf-8"))
    for n in range(count - len(samples)):
        sample = rng.choice(samples)
        words = " ".join(rng.sample(extra, 3))
        body = "\n\n".join(
            f"## {p.heading or sample.title} ({words})\n{p.text}\n\n{' '.join(rng.sample(extra, 6))}."
            for p in sample.passages
        )
        write(
            folder,
            f"variant-{n:04d}.md",
            f"---\ntitle: {sample.title} - {words}\nlang: {sample.lang}\n---\n{body}",
        )


def test_a_long_message_costs_a_bounded_look_up_on_either_database(app_factory, tmp_path):
    """An 8,000-character message of words the articles use: PostgreSQL ranked every match with
    ts_rank (which parses each passage's text again): 0.6-1 s a turn on a thousand articles."""
    folder = tmp_path / "articles"
    help_centre(folder, 400)
    app = app_factory(PROVIDER="offline", ARTICLES_FOLDER=str(folder))
    with app.app_context():
        conn = db.session.connection()
        known = collection(conn)
        telling = [t for t, n in sorted(known.stats.df.items()) if n <= COMMON * known.stats.documents]
        message = " ".join(random.Random(1).sample(telling, 200))
        message = (message + " ") * (8000 // len(message) + 1)
        took = []
        for _ in range(3):
            started = time.perf_counter()
            found = retrieve(conn, message[:8000], [message[:8000]])
            took.append(time.perf_counter() - started)
        assert found.sources
    assert statistics.median(took) < 0.1, took  # (30 ms here; it was 200)


# --- the abandoned sweep ------------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_the_abandoned_sweep_reads_only_the_open_conversations(app_factory):
    """It runs each minute in every process. It read every conversation ever held (only
    ``updated_at`` was indexed), on SQLite under the write lock: 85 ms of waiting writers a sweep
    with 300,000 conversations, more as the history grew. Now an index holds the open ones."""
    app = app_factory(PROVIDER="offline")
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE CONVERSATIONS"):
            seen.append((statement, parameters))

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", record)
        try:
            outcomes.settle(utcnow(), timedelta(minutes=30))
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
        ((statement, parameters),) = seen
        with db.engine.connect() as conn:
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
    steps = " / ".join(str(row[-1]) for row in plan)
    assert "ix_conversations_open" in steps, steps


# --- hostile article files ----------------------------------------------------------------------


def test_a_link_to_a_file_outside_the_articles_folder_is_refused_not_published(app_factory, tmp_path):
    """``leak.md -> ../secret_key`` (a link is easy to slip into an articles repository) published
    the app's secret key at /help/leak; ``/etc/passwd`` likewise."""
    own = tmp_path / "instance" / "articles"
    write(own, "opening-hours.md", "---\ntitle: Opening hours\n---\nWe open at nine.\n")
    write(own / "shared", "returns.md", "---\ntitle: Returns\n---\nThirty days.\n")
    (own / "returns.md").symlink_to(own / "shared" / "returns.md")  # (inside: fine)
    app = app_factory(PROVIDER="offline")
    client = app.test_client()
    assert client.get("/help/returns").status_code == 200
    secret = (tmp_path / "instance" / "secret_key").read_text()
    (own / "leak.md").symlink_to(tmp_path / "instance" / "secret_key")
    result = app.test_cli_runner().invoke(args=["articles", "index"])
    assert result.exit_code != 0 and "leak.md" in result.output and "outside" in result.output
    restarted = app_factory(PROVIDER="offline")
    client = restarted.test_client()
    assert client.get("/help/leak").status_code == 404
    assert secret not in client.get("/help/returns").get_data(as_text=True)
    assert client.get("/help/opening-hours").status_code == 200  # (the index as it was)


@pytest.mark.parametrize(
    ("line", "title"),
    [
        ('title: "Fix #1: call us #now"  # a comment', "Fix #1: call us #now"),
        ("title: 'Top #5 tips' # a comment", "Top #5 tips"),
        ("title: Plain words # a comment", "Plain words"),
        ("title: C# and #hashtags", "C# and"),  # (as YAML reads it: a comment after a space)
        ("title: What's covered # a comment", "What's covered"),
    ],
)
def test_a_hash_inside_a_quoted_front_matter_value_is_not_a_comment(line, title):
    """``title: "Fix #1: call us"`` was read as the title ``"Fix`` (the quote left open)."""
    article = articles.parse("x", f'---\n{line}\ntags: ["#1 fix", b]\n---\nBody.\n')
    assert article.title == title and article.tags == ("#1 fix", "b")


# --- hostile model output -----------------------------------------------------------------------


def test_a_number_in_brackets_inside_code_is_not_a_citation(client, app, fake_openai):
    """``arr[3]`` in a code sample listed the third article given to the model as a source."""
    fake_openai.will(
        Reply(
            "New phones have a 3-year warranty [1]. Out of range: [0], [99], [-1]; again [1][1].\n\n"
            "```python\nphones[3] = 'x'  # [2]\n```\n\nAnd `sources[3]` in a sentence.\n\n"
            "~~~\nunclosed [2]"
        )
    )
    events = parse_sse(send(client, "How long is the warranty on a new phone?").get_data(as_text=True))
    final = events[-1]["data"]
    reply = all_messages(app)[1]
    assert len(reply.meta["retrieved"]) == 3  # (three articles were given: [2] and [3] existed)
    assert [s["n"] for s in reply.meta["sources"]] == [1]
    assert final.count("<li value=") == 1 and 'href="/help/warranty"' in final


# --- the page -----------------------------------------------------------------------------------

ASSISTANT = '#messages article.message[data-role="assistant"]'


@pytest.fixture
def shop_server(app_factory):
    server = LiveServer(
        app_factory(
            PROVIDER="offline",
            CSRF_ENABLED=True,
            SUPPORT_PHONE="+34 900 123 456",
            SUPPORT_EMAIL="help@shop.example",
            SUPPORT_URL="https://shop.example/contact",
        )
    )
    yield server
    server.stop()


@pytest.mark.parametrize(("theme", "lang", "choice"), [("dark", "es", "yes"), ("light", "en", "person")])
def test_answering_from_the_keyboard_keeps_the_focus_on_the_answer_at_360_px(
    browser, shop_server, theme, lang, choice
):
    """Enter on Yes or Talk to a person swapped the buttons out and dropped the focus on <body>
    (a keyboard or screen reader user lost their place). axe-core: nothing serious with the
    sources and the question showing, nor with the answer."""
    page = open_page(browser, shop_server.url + "/", theme=theme, lang=lang, width=360, height=740)
    box = page.locator("#composer-input")
    box.fill({"en": "My phone won't charge", "es": "mi móvil no carga"}[lang])
    box.press("Enter")
    reply = page.locator(ASSISTANT).last
    expect(reply).to_have_attribute("data-status", "complete")
    expect(reply.locator(".message-sources a")).to_be_visible()
    expect(reply.locator("form.outcome")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360  # (the buttons wrap)
    assert_no_serious_violations(page, f"the question under an answer, {theme}, {lang}, 360 px")

    button = reply.locator(f'[data-action="outcome-{choice}"]')
    button.focus()
    page.keyboard.press("Enter")
    note = page.locator(ASSISTANT).last.locator(".outcome-note")
    expect(note).to_be_visible()
    expect(note).to_be_focused()
    # (the focus within the message brings its tools in: checked once they have faded in)
    expect(page.locator(ASSISTANT).last.locator(".message-tools")).to_have_css("opacity", "1")
    assert_no_serious_violations(page, f"the answer to the question, {theme}, {lang}, 360 px")
    assert page.page_errors == []
    page.context.close()


# --- the dialogue -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "said", ["quiero hablar con alguien", "¿Puedo hablar con alguien?", "I want to speak to someone"]
)
def test_talk_to_someone_is_a_request_for_a_person_in_either_language(app_factory, said):
    """ "I want to speak to someone" reached a person, "quiero hablar con alguien" (the usual way
    to say it in Spanish) got an article instead."""
    app = app_factory(PROVIDER="offline", SUPPORT_PHONE="+34 900 123 456")
    send(app.test_client(), said)
    reply = all_messages(app)[-1]
    assert reply.meta["intent"] == "person" and "+34 900 123 456" in reply.content
    assert all_conversations(app)[0].outcome == "escalated"


def test_control_characters_in_a_heading_reach_neither_the_terminal_nor_the_page(app_factory, tmp_path):
    """A title taken from the first heading (no front matter) kept its escape sequences: ``flask
    articles list`` wrote them to the operator's terminal (here: retitle the window, clear the
    screen), and a right-to-left override reached the page; section headings likewise."""
    write(
        tmp_path / "instance" / "articles",
        "hours.md",
        "# Opening hours\x1b]0;owned\x07\x1b[2J\u202e\n\nWe open at nine.\n\n## Sundays\x1b[8m\n\nClosed.\n",
    )
    app = app_factory(PROVIDER="offline")
    listed = app.test_cli_runner().invoke(args=["articles", "list"])
    assert listed.exit_code == 0 and "/help/hours" in listed.output
    assert "\x1b" not in listed.output and "\x07" not in listed.output
    listing = app.test_client().get("/help").get_data(as_text=True)
    assert 'href="/help/hours">Opening hours]0;owned[2J</a>' in listing and "\u202e" not in listing
    article = articles.parse("hours", (tmp_path / "instance" / "articles" / "hours.md").read_text())
    assert [p.heading for p in article.passages] == ["Opening hours]0;owned[2J", "Sundays[8m"]


# --- the index while it is rebuilt --------------------------------------------------------------


def test_a_rebuild_that_commits_while_a_process_reads_the_index_is_not_mixed_into_it(app_factory, tmp_path):
    """A process reads the index's articles, then its passages: ``flask articles index``
    committing in between (here: a new article, so every article's number moves) mixed the two
    and the next question failed with a KeyError (or found passages under another article)."""
    own = tmp_path / "instance" / "articles"
    write(own, "b-hours.md", "---\ntitle: Opening hours\n---\nWe open at nine.\n")
    write(own, "c-returns.md", "---\ntitle: Returns\n---\nThirty days to return a phone.\n")
    app = app_factory(PROVIDER="offline")
    rebuilt: list[bool] = []

    def rebuild_now(conn, cursor, statement, parameters, context, executemany):
        if "help_passages.body_terms" in statement and not rebuilt:
            rebuilt.append(True)
            write(own, "a-battery.md", "---\ntitle: Battery\n---\nThe battery drains fast.\n")
            other = threading.Thread(target=rebuild, args=(app, own))  # (another connection)
            other.start()
            other.join()

    with app.app_context():
        retrieve_module.forget()
        event.listen(db.engine, "before_cursor_execute", rebuild_now)
        try:
            found = retrieve(db.session.connection(), "how many days do I have to return a phone?")
        finally:
            event.remove(db.engine, "before_cursor_execute", rebuild_now)
    assert rebuilt
    assert [(s.slug, s.passages[0].text) for s in found.sources[:1]] == [
        ("c-returns", "Thirty days to return a phone.")
    ]


def rebuild(app, folder: Path) -> None:
    with app.app_context():
        index.rebuild(folder)


@pytest.mark.parametrize(
    ("first", "then", "article"),
    [
        ("My phone won't charge", "¿y si es el cable?", "no-carga"),
        ("mi móvil no carga", "what if it's the cable?", "phone-wont-charge"),
    ],
)
def test_a_follow_up_in_the_other_language_is_answered_from_the_article_in_that_language(
    app_factory, first, then, article
):
    """The follow-up is read with the question before it, whose words (in the other language)
    won: the offline assistant said "our article on this is in English" and quoted it, though
    the shop has the same article in Spanish."""
    app = app_factory(PROVIDER="offline")
    client = app.test_client()
    cid = conversation_id_from(send(client, first))
    send(client, then, cid)
    reply = all_messages(app)[-1]
    assert [s["slug"] for s in reply.meta["sources"]] == [article]
    assert detect(reply.content) == detect(then)
    assert "in English" not in reply.content and "en inglés" not in reply.content


def test_a_huge_or_unreadable_file_is_named_not_read_whole_nor_a_traceback(app_factory, tmp_path):
    """The folder's fingerprint read every file whole before the size limit was checked (a 1 GB
    file named ``*.md``: 1 GB in memory in every worker at every start), and a file that can't be
    read was a traceback from ``flask articles index`` that named no file."""
    own = tmp_path / "instance" / "articles"
    write(own, "opening-hours.md", "---\ntitle: Opening hours\n---\nWe open at nine.\n")
    app = app_factory(PROVIDER="offline")
    with open(own / "dump.md", "wb") as huge:
        huge.truncate(1 << 30)  # (sparse: no disk used)
    tracemalloc.start()
    try:
        result = app.test_cli_runner().invoke(args=["articles", "index"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.exit_code == 1 and "dump.md: larger than 200 KB" in result.output, result.output
    assert peak < 50 << 20
    (own / "dump.md").unlink()
    (own / "mem.md").symlink_to("/proc/self/mem")  # (a regular file that can't be read)
    result = app.test_cli_runner().invoke(args=["articles", "index"])
    assert result.exit_code == 1 and "mem.md: can't be read" in result.output, result.output
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit


@pytest.mark.parametrize(
    "text",
    [
        "# Opening hours\n\nWe open at nine.\n",  # (the title taken from it)
        "---\ntitle: Opening hours\n---\n\n# Opening hours\r\n\r\nWe open at nine.\r\n",  # (repeated)
    ],
)
def test_a_help_page_shows_its_title_once(app_factory, tmp_path, text):
    """An article that starts with ``# Its title`` (the usual Markdown file) showed it twice, as
    two first-level headings one under the other."""
    write(tmp_path / "instance" / "articles", "opening-hours.md", text)
    app = app_factory(PROVIDER="offline")
    page = app.test_client().get("/help/opening-hours").get_data(as_text=True)
    assert page.count("Opening hours</h1>") == 1 and page.count("<h1") == 1
    assert "We open at nine." in page
    other = "---\ntitle: Opening hours\n---\n# Weekdays\n\nNine to eight.\n"  # (another heading stays)
    write(tmp_path / "instance" / "articles", "opening-hours.md", other)
    page = app_factory(PROVIDER="offline").test_client().get("/help/opening-hours").get_data(as_text=True)
    assert "Weekdays</h1>" in page


@pytest.mark.parametrize(
    "said",
    [
        'battery" OR "x" NEAR(a b) * ^head: body:wifi {head body}: -foo AND NOT',  # FTS5
        "wifi & !bluetooth | (screen:* <-> 'x') \\ :A",  # PostgreSQL tsquery
        "'; DROP TABLE help_articles; --",
        "?!¿¡...;;;''\"\"",
        "😀👍🔥" * 30,
        "a" * 8000,
    ],
)
def test_query_syntax_and_odd_messages_are_plain_words_to_the_search(app_factory, said):
    """(Held: the search sees only folded, stemmed letters and digits.) Every one of these is
    an ordinary turn on either database, the index intact after it."""
    app = app_factory(PROVIDER="offline")
    response = send(app.test_client(), said)
    assert response.status_code == 200
    assert all_messages(app)[-1].status == "complete"
    with app.app_context():
        assert (
            retrieve(db.session.connection(), "my phone won't charge").sources[0].slug == "phone-wont-charge"
        )
