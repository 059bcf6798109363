"""Health for load balancers: ``/healthz`` (the process answers) and ``/readyz`` (it can serve:
the database answers and is migrated, Redis answers when configured). Both are cheap enough to
call every second: no session, no template, one small query, a Redis ping with a short timeout."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, current_app, jsonify
from sqlalchemy import text

from .database import head_revision
from .extensions import db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> tuple[str, int, dict[str, str]]:
    return "ok\n", 200, {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"}


@bp.get("/readyz")
def readyz() -> Any:
    checks = {"database": _database(), **({"redis": _redis()} if current_app.config.get("REDIS_URL") else {})}
    ready = all(result == "ok" for result in checks.values())
    response = jsonify(ready=ready, **checks)
    response.status_code = 200 if ready else 503
    response.headers["Cache-Control"] = "no-store"
    return response


def _database() -> str:
    try:
        with db.engine.connect() as conn:
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        current_app.logger.warning("readiness: database unavailable: %s", type(exc).__name__)
        return f"unavailable ({type(exc).__name__})"
    head = current_app.extensions["chatbot.schema_head"]
    return "ok" if revision == head else f"schema at {revision}, not {head}"


def _redis() -> str:
    try:
        import redis

        client = current_app.extensions.get("chatbot.redis")
        if client is None:
            client = redis.Redis.from_url(
                current_app.config["REDIS_URL"], socket_connect_timeout=0.5, socket_timeout=0.5
            )
            current_app.extensions["chatbot.redis"] = client
        client.ping()
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return f"unavailable ({type(exc).__name__})"
    return "ok"


def init_app(app: Flask) -> None:
    app.extensions["chatbot.schema_head"] = head_revision()  # read once: parsing scripts costs ms
    app.register_blueprint(bp)
