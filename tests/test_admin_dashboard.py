"""The admin dashboard: its figures equal counts made here, independently, from the rows this test
seeds (chosen days, models, tokens, times to first token, feedback, outcomes, errors); only
confirmed resolved conversations count as resolved; cost from the configured prices; bad dates
answer 400; the page needs a signed-in admin; axe finds nothing serious on it in Chromium."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta

import pytest

from chatbot.admin import dashboard
from chatbot.admin.dashboard import Range, figures, parse_range, percentile, unanswered
from chatbot.extensions import db
from chatbot.models import Conversation, Message

from .a11y import assert_no_serious_violations
from .conftest import LiveServer
from .test_admin import PASSWORD, create_user, login

PRICES = {"gpt-4.1-nano": {"input": 0.10, "output": 0.40}, "ft:gpt-4.1-nano": {"input": 0.20, "output": 0.80}}
NANO = "gpt-4.1-nano-2025-04-14"
TUNED = "ft:gpt-4.1-nano-2025-04-14:shop::abc123"
OTHER = "some-other-model"
FIRST, LAST = date(2025, 3, 1), date(2025, 3, 3)
SPAN = Range(FIRST, LAST)


def at(day: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(2025, 3, 1, tzinfo=UTC) + timedelta(days=day - 1, hours=hour, minutes=minute)


# (created day/hour, outcome, [(question, reply meta, reply status), ...]) — day 0 and day 4 are
# just outside the range (the last minute before it, the first minute after it)
SEED = [
    (
        (1, 9),
        "resolved",
        [
            (
                "How do I reset my phone?",
                {
                    "model": NANO,
                    "prompt_tokens": 1000,
                    "completion_tokens": 200,
                    "ttft_ms": 300.0,
                    "feedback": {"rating": "up"},
                    "answered_from": "article",
                },
                "complete",
            )
        ],
    ),
    (
        (1, 10),
        "unresolved",
        [
            (
                "Where is my order?",
                {
                    "model": NANO,
                    "prompt_tokens": 800,
                    "completion_tokens": 100,
                    "ttft_ms": 500.0,
                    "feedback": {"rating": "down", "comment": "no"},
                },
                "complete",
            )
        ],
    ),
    (
        (1, 11),
        "escalated",
        [
            (
                "I want a person",
                {"model": TUNED, "prompt_tokens": 500, "completion_tokens": 50, "ttft_ms": 200.0},
                "complete",
            )
        ],
    ),
    (
        (1, 12),
        "abandoned",
        [
            (
                "hello",
                {
                    "model": TUNED,
                    "prompt_tokens": 100,
                    "completion_tokens": 20,
                    "ttft_ms": 100.0,
                    "intent": "greeting",
                },
                "complete",
            )
        ],
    ),
    (
        (2, 8),
        None,
        [
            (
                "What is the weather?",
                {
                    "model": NANO,
                    "prompt_tokens": 300,
                    "completion_tokens": 30,
                    "ttft_ms": 900.0,
                    "answered_from": "off_topic",
                },
                "complete",
            ),
            ("And the battery?", {"model": NANO, "error": "timeout"}, "error"),
        ],
    ),
    (
        (2, 9),
        "resolved",
        [
            (
                "Battery drains fast",
                {
                    "model": TUNED,
                    "prompt_tokens": 700,
                    "completion_tokens": 300,
                    "ttft_ms": 250.0,
                    "feedback": {"rating": "up"},
                },
                "complete",
            ),
            (
                "Thanks",
                {
                    "model": OTHER,
                    "prompt_tokens": 50,
                    "completion_tokens": 10,
                    "ttft_ms": 1200.0,
                    "feedback": {"rating": "down"},
                },
                "complete",
            ),
        ],
    ),
    (
        (3, 23),
        None,
        [
            (
                "Screen flickers",
                {
                    "model": NANO,
                    "prompt_tokens": 400,
                    "completion_tokens": 80,
                    "ttft_ms": 350.0,
                    "answered_from": "fallback",
                },
                "complete",
            )
        ],
    ),
    (
        (0, 23),
        "resolved",
        [
            (
                "outside before",
                {
                    "model": NANO,
                    "prompt_tokens": 9999,
                    "completion_tokens": 9999,
                    "ttft_ms": 9999.0,
                    "feedback": {"rating": "down"},
                },
                "complete",
            )
        ],
    ),
    (
        (4, 0),
        "unresolved",
        [
            (
                "outside after",
                {
                    "model": NANO,
                    "prompt_tokens": 9999,
                    "completion_tokens": 9999,
                    "ttft_ms": 9999.0,
                    "feedback": {"rating": "up"},
                },
                "error",
            )
        ],
    ),
]


@pytest.fixture
def app(app_factory):
    return app_factory(PROVIDER="offline", MODEL_PRICES=PRICES)


@pytest.fixture
def seeded(app):
    """The rows of ``SEED`` in the database; returns what was written, for the counts here."""
    written = []  # (conversation created_at, outcome, public_id, [(question ts, reply ts, meta, status)])
    with app.app_context():
        for (day, hour), outcome, turns in SEED:
            if day == 4:
                created = at(4, 0, 0)
            elif day == 0:
                created = at(1, 0) - timedelta(minutes=1)
            else:
                created = at(day, hour)
            conv = Conversation(
                owner="seed", title="t", created_at=created, updated_at=created, outcome=outcome
            )
            db.session.add(conv)
            db.session.flush()
            rows = []
            for n, (question, meta, status) in enumerate(turns):
                asked = created + timedelta(minutes=2 * n)
                user = Message(
                    conversation_id=conv.id, content=question, is_user=True, timestamp=asked, meta={}
                )
                db.session.add(user)
                db.session.flush()
                answered = asked + timedelta(seconds=30)
                reply = Message(
                    conversation_id=conv.id,
                    content="…",
                    is_user=False,
                    status=status,
                    timestamp=answered,
                    parent_id=user.id,
                    meta=dict(meta),
                )
                db.session.add(reply)
                rows.append((question, asked, answered, meta, status))
            db.session.flush()
            written.append((created, outcome, conv.public_id, rows))
        db.session.commit()
    return written


def in_span(moment: datetime) -> bool:
    return SPAN.start <= moment < SPAN.end


def expected(seeded, day: date | None = None, model: str | None = None) -> dict:
    """The figures, counted here from what was seeded (a day's, a model's or the range's)."""

    def wanted(moment: datetime) -> bool:
        return in_span(moment) and (day is None or moment.date() == day)

    convs = (
        [(c, o) for c, o, _, _ in seeded if wanted(c)]
        if model is None
        else [
            (c, o)
            for c, o, _, rows in seeded
            if any(wanted(r[2]) and r[3].get("model") == model for r in rows)
        ]
    )
    replies = [
        (r[2], r[3], r[4])
        for _, _, _, rows in seeded
        for r in rows
        if wanted(r[2]) and (model is None or r[3].get("model") == model)
    ]
    users = [r[1] for _, _, _, rows in seeded for r in rows if wanted(r[1])]
    cost = 0.0
    for _, meta, _ in replies:
        price = {NANO: PRICES["gpt-4.1-nano"], TUNED: PRICES["ft:gpt-4.1-nano"]}.get(meta.get("model"))
        if price:
            cost += (
                meta.get("prompt_tokens", 0) * price["input"]
                + meta.get("completion_tokens", 0) * price["output"]
            ) / 1e6
    return {
        "conversations": len(convs),
        "resolved": sum(o == "resolved" for _, o in convs),
        "messages": len(replies) + (len(users) if model is None else 0),
        "replies": len(replies),
        "thumbs_up": sum(m.get("feedback", {}).get("rating") == "up" for _, m, _ in replies),
        "thumbs_down": sum(m.get("feedback", {}).get("rating") == "down" for _, m, _ in replies),
        "errors": sum(s == "error" for _, _, s in replies),
        "prompt_tokens": sum(m.get("prompt_tokens", 0) for _, m, _ in replies),
        "completion_tokens": sum(m.get("completion_tokens", 0) for _, m, _ in replies),
        "ttfts": sorted(m["ttft_ms"] for _, m, _ in replies if "ttft_ms" in m),
        "cost": cost,
    }


def actual(figs) -> dict:
    return {
        "conversations": figs.conversations,
        "resolved": figs.resolved,
        "messages": figs.messages,
        "replies": figs.replies,
        "thumbs_up": figs.thumbs_up,
        "thumbs_down": figs.thumbs_down,
        "errors": figs.errors,
        "prompt_tokens": figs.prompt_tokens,
        "completion_tokens": figs.completion_tokens,
        "ttfts": sorted(figs.ttfts),
        "cost": figs.cost,
    }


def same(found: dict, counted: dict) -> None:
    assert math.isclose(found.pop("cost"), counted.pop("cost"), abs_tol=1e-12)
    assert found == counted


# --- the figures -----------------------------------------------------------------------------------


def test_the_figures_equal_counts_made_independently(app, seeded):
    with app.app_context():
        board = figures(SPAN, PRICES)
    assert list(board.days) == [FIRST, date(2025, 3, 2), LAST]
    same(actual(board.total), expected(seeded))
    for day, figs in board.days.items():
        same(actual(figs), expected(seeded, day=day))
    assert set(board.models) == {NANO, TUNED, OTHER}
    for model, figs in board.models.items():
        same(actual(figs), expected(seeded, model=model))
    # by hand, too: a few that the rules above could get wrong together
    assert board.total.conversations == 7 and board.total.resolved == 2  # (not escalated/abandoned)
    assert board.days[FIRST].resolution_rate == 1 / 4
    assert board.days[date(2025, 3, 2)].resolution_rate == 1 / 2
    assert board.days[LAST].resolution_rate == 0
    assert board.total.errors == 1 and board.total.thumbs_up == 2 and board.total.thumbs_down == 2
    assert board.models[TUNED].conversations == 3 and board.models[TUNED].resolved == 1
    assert board.priced == {NANO: True, TUNED: True, OTHER: False}


def test_only_confirmed_resolved_conversations_count(app):
    with app.app_context():
        for outcome in (None, "unresolved", "escalated", "abandoned"):
            db.session.add(Conversation(owner="o", created_at=at(2), updated_at=at(2), outcome=outcome))
        db.session.commit()
        board = figures(SPAN, PRICES)
        assert board.total.conversations == 4 and board.total.resolved == 0
        assert board.total.resolution_rate == 0
        db.session.add(Conversation(owner="o", created_at=at(2), updated_at=at(2), outcome="resolved"))
        db.session.commit()
        assert figures(SPAN, PRICES).total.resolution_rate == 1 / 5
    assert figures.__module__ == dashboard.__name__


def test_cost_comes_from_the_configured_prices(app, seeded):
    with app.app_context():
        board = figures(SPAN, PRICES)
        doubled = figures(
            SPAN, {k: {"input": v["input"] * 2, "output": v["output"] * 2} for k, v in PRICES.items()}
        )
    nano = (1000 + 800 + 300 + 400) * 0.10 / 1e6 + (200 + 100 + 30 + 80) * 0.40 / 1e6
    tuned = (500 + 100 + 700) * 0.20 / 1e6 + (50 + 20 + 300) * 0.80 / 1e6
    assert math.isclose(board.models[NANO].cost, nano)
    assert math.isclose(board.models[TUNED].cost, tuned)  # (the longer prefix "ft:…" wins)
    assert board.models[OTHER].cost == 0 and board.models[OTHER].unpriced_tokens == 60
    assert math.isclose(board.total.cost, nano + tuned)
    assert math.isclose(doubled.total.cost, 2 * (nano + tuned))
    assert dashboard.price_for(OTHER, PRICES) is None
    assert dashboard.cost_of("", 10, 10, PRICES) is None


def test_percentiles_interpolate_between_ranks():
    assert percentile([], 50) is None
    assert percentile([5.0], 95) == 5.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert math.isclose(percentile(list(range(1, 101)), 95), 95.05)


def test_the_figures_read_in_batches(app, seeded, monkeypatch):
    monkeypatch.setattr(dashboard, "BATCH", 2)
    with app.app_context():
        small = figures(SPAN, PRICES)
    same(actual(small.total), expected(seeded))
    for model, figs in small.models.items():
        same(actual(figs), expected(seeded, model=model))


def test_the_unanswered_questions_and_why(app, seeded):
    with app.app_context():
        found = unanswered(SPAN)
    got = [(q.content, q.reasons) for q in found]
    assert got == [
        ("Screen flickers", ("fallback",)),
        ("Thanks", ("thumbs_down",)),
        ("What is the weather?", ("off_topic",)),
        ("I want a person", ("escalated",)),
        ("Where is my order?", ("thumbs_down", "unresolved")),
    ]
    public_ids = {q: pid for _, _, pid, rows in seeded for q, *_ in rows}
    assert [q.public_id for q in found] == [public_ids[c] for c, _ in got]
    with app.app_context():
        assert len(unanswered(SPAN, limit=2)) == 2


def test_dates(app):
    today = date(2025, 3, 31)
    assert parse_range(None, None, today) == Range(date(2025, 3, 2), today)  # (30 days)
    assert parse_range("2025-03-01", "2025-03-03", today) == SPAN
    assert parse_range("", "2025-03-03", today).days == 30
    for first, last in (
        ("2025-3-1", None),
        ("yesterday", None),
        (None, "2025-02-30"),
        ("2025-03-04", "2025-03-03"),
        ("2020-01-01", "2025-01-01"),
    ):
        with pytest.raises(dashboard.BadRange):
            parse_range(first, last, today)


# --- the page --------------------------------------------------------------------------------------


@pytest.fixture
def signed_in(app):
    assert create_user(app).exit_code == 0
    client = app.test_client()
    assert login(client).status_code == 303
    return client


def test_the_page_shows_the_figures_charts_and_questions(app, seeded, signed_in):
    page = signed_in.get("/admin/dashboard?from=2025-03-01&to=2025-03-03")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert re.search(r'id="total-conversations">7<', text)
    assert re.search(r'id="total-messages">18<', text)  # (9 questions, 9 replies)
    assert re.search(r'id="total-resolution">29%<', text)  # (2 of 7)
    assert re.search(r'id="total-thumbs">2 / 2<', text) and re.search(r'id="total-errors">1<', text)
    assert text.count("<svg") == 3 and text.count("<desc") == 3 and 'viewBox="0 0 600 180"' in text
    assert 'width="100%"' in text and "fill=" not in text and "stroke=" not in text  # (colours: CSS)
    assert '<tr data-model="some-other-model">' in text
    other = text.split('<tr data-model="some-other-model">')[1].split("</tr>")[0]
    assert '<td class="cost">—</td>' in other
    for _, _, public_id, rows in seeded:
        if any(q == "Where is my order?" for q, *_ in rows):
            assert f'href="/admin/conversations/{public_id}"' in text
    assert "outside before" not in text and "outside after" not in text
    home = signed_in.get("/admin").get_data(as_text=True)
    assert 'href="/admin/dashboard"' in home


def test_the_default_range_is_the_last_thirty_days(app, signed_in):
    text = signed_in.get("/admin/dashboard").get_data(as_text=True)
    today = datetime.now(UTC).date()
    assert f'value="{today.isoformat()}"' in text
    assert f'value="{(today - timedelta(days=29)).isoformat()}"' in text
    assert text.count("<tr data-day=") == 30


@pytest.mark.parametrize(
    "query",
    ["from=yesterday", "to=2025-02-30", "from=2025-03-04&to=2025-03-03", "from=2020-01-01&to=2025-01-01"],
)
def test_bad_dates_answer_400_with_a_readable_message(app, signed_in, query):
    page = signed_in.get(f"/admin/dashboard?{query}")
    assert page.status_code == 400
    text = page.get_data(as_text=True)
    assert 'role="alert"' in text and "Use dates like 2025-01-31" in text and "<svg" not in text


def test_the_dashboard_needs_a_signed_in_admin(app):
    client = app.test_client()
    assert client.get("/admin/dashboard").status_code == 404  # (no account yet: no admin area)
    assert create_user(app).exit_code == 0
    page = client.get("/admin/dashboard?from=2025-03-01")
    assert page.status_code == 303
    assert page.headers["Location"].startswith("/admin/login?next=/admin/dashboard")
    assert client.get("/admin/dashboard?from=nope").status_code == 303  # (not 400: sign in first)


def test_the_dashboard_speaks_spanish(app, seeded, signed_in):
    text = signed_in.get(
        "/admin/dashboard?from=2025-03-01&to=2025-03-03", headers={"Accept-Language": "es"}
    ).get_data(as_text=True)
    assert "Panel" in text and "Conversaciones por día" in text and "Pulgar abajo" in text


# --- in a browser: axe ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("theme", "lang", "width"), [("light", "en", 1100), ("dark", "es", 360)], ids=["light-en", "dark-es-360"]
)
def test_axe_finds_nothing_serious_on_the_dashboard(browser, app_factory, theme, lang, width):
    from playwright.sync_api import expect

    from .test_a11y import open_page

    app = app_factory(PROVIDER="offline", CSRF_ENABLED=True, MODEL_PRICES=PRICES)
    assert create_user(app).exit_code == 0
    today = datetime.now(UTC)
    with app.app_context():
        for n, outcome in enumerate(("resolved", "unresolved", None)):
            when = today - timedelta(days=n)
            conv = Conversation(owner="o", created_at=when, updated_at=when, outcome=outcome)
            db.session.add(conv)
            db.session.flush()
            user = Message(
                conversation_id=conv.id, content=f"question {n}", is_user=True, timestamp=when, meta={}
            )
            db.session.add(user)
            db.session.flush()
            db.session.add(
                Message(
                    conversation_id=conv.id,
                    content="answer",
                    is_user=False,
                    timestamp=when,
                    parent_id=user.id,
                    meta={
                        "model": NANO,
                        "prompt_tokens": 100,
                        "completion_tokens": 10,
                        "ttft_ms": 200.0 + n,
                        "feedback": {"rating": "down"},
                    },
                )
            )
        db.session.commit()
    server = LiveServer(app)
    page = open_page(browser, f"{server.url}/admin/dashboard", theme=theme, lang=lang, width=width)
    try:
        page.fill("#admin-name", "ana")
        page.fill("#admin-password", PASSWORD)
        page.locator("form.admin-form button[type=submit]").click()
        expect(page.locator("#per-day")).to_be_visible()
        assert page.locator("svg.chart-svg").count() == 3
        assert_no_serious_violations(page, f"dashboard, {theme}, {lang}, {width}px")
        assert page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scroll
        page.goto(f"{server.url}/admin/dashboard?from=nope")
        expect(page.locator("#dashboard-error")).to_be_visible()
        assert_no_serious_violations(page, f"dashboard, bad dates, {theme}, {lang}, {width}px")
        assert page.page_errors == []
    finally:
        page.context.close()
        server.stop()
