"""Health endpoints for a load balancer: alive, and ready (database migrated, Redis when set)."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from chatbot.extensions import db

from .conftest import PG_SERVER
from .helpers import HX, send


def test_healthz_answers_without_touching_anything(app, client, fake_openai):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_data(as_text=True) == "ok\n"
    assert "Set-Cookie" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"


def test_readyz_is_ready_with_a_migrated_database(app, client, fake_openai):
    response = client.get("/readyz")
    assert response.status_code == 200
    redis = {"redis": "ok"} if app.config.get("REDIS_URL") else {}  # (the postgres stack)
    assert response.json == {"ready": True, "database": "ok", **redis}
    assert "Set-Cookie" not in response.headers


def test_readyz_says_when_the_schema_is_behind(app, client, fake_openai):
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0001_baseline'"))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["ready"] is False and "schema at 0001_baseline" in response.json["database"]


def test_readyz_says_when_the_database_is_gone(pg_admin, app_factory, openai_config, fake_openai):
    name = f"chatbot_health_{uuid.uuid4().hex[:10]}"
    pg_admin.execute(f'CREATE DATABASE "{name}"')
    app = app_factory(**openai_config, SQLALCHEMY_DATABASE_URI=PG_SERVER.rsplit("/", 1)[0] + "/" + name)
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    assert send(client, "hello").status_code == 200
    with app.app_context():
        db.engine.dispose()
    pg_admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    balancer = app.test_client()  # (a load balancer sends no session cookie)
    response = balancer.get("/readyz")
    assert response.status_code == 503 and response.json["database"].startswith("unavailable")
    assert balancer.get("/healthz").status_code == 200  # alive, just not ready
    with app.app_context():
        db.engine.dispose()


def test_readyz_checks_redis_when_configured(app_factory, openai_config, fake_openai):
    down = app_factory(**openai_config, REDIS_URL="redis://127.0.0.1:1/0").test_client().get("/readyz")
    assert down.status_code == 503 and down.json["redis"].startswith("unavailable")


def test_health_endpoints_are_not_rate_limited_or_csrf_checked(app_factory, openai_config, fake_openai):
    app = app_factory(**openai_config, RATELIMIT_ENABLED=True, CSRF_ENABLED=True)
    client = app.test_client()
    for _ in range(200):
        assert client.get("/healthz", headers=HX).status_code == 200
    assert client.get("/readyz").status_code == 200


def test_health_checks_never_run_the_session_cleanup(app, client, fake_openai, monkeypatch):
    """Expired sessions are deleted on about one request in a thousand; a health check must not
    be that request (it would touch the database)."""
    import random

    from sqlalchemy import event

    monkeypatch.setattr(random, "randint", lambda a, b: 0)  # every request draws the cleanup
    statements: list[str] = []
    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    assert client.get("/healthz").status_code == 200
    assert statements == []
    assert client.get("/static/vendor/htmx/htmx.min.js").status_code == 200
    assert statements == []
    client.get("/")
    assert any(s.lstrip().upper().startswith("DELETE FROM SESSIONS") for s in statements), statements
