"""Logging, set up by the factory: the app's own loggers (``chatbot.*``) write to standard error
with the level from config (``LOG_LEVEL``), as text (``LOG_FORMAT``) or as one JSON object a line
(``LOG_JSON``). Every request gets one line (``chatbot.requests``) with a request id, a hashed
owner, the status and the duration; every reply one line with its model, tokens and timings.
Never message text, never an owner token."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import uuid
from typing import Any

from flask import Flask, g, request, session
from werkzeug.wrappers import Response

_MARK = "_chatbot_handler"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# what a log record may carry beyond its message (set with ``extra=``)
FIELDS = (
    "request_id", "owner", "method", "path", "status", "duration_ms",
    "conversation", "reply", "attempt", "provider", "model", "finish_reason", "prompt_tokens",
    "completion_tokens", "total_tokens", "ttft_ms", "latency_ms",
)  # fmt: skip

requests_log = logging.getLogger("chatbot.requests")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def owner_hash(owner: str | None) -> str | None:
    """An owner token as logs may show it: a short hash that follows one browser, not the token."""
    return hashlib.sha256(owner.encode()).hexdigest()[:12] if owner else None


def _start() -> None:
    g.started = time.perf_counter()
    given = request.headers.get("X-Request-Id", "")
    g.request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def _finish(response: Response) -> Response:
    request_id = g.get("request_id")
    if request_id is None:  # (a request refused before our hooks ran)
        return response
    response.headers["X-Request-Id"] = request_id
    duration = (time.perf_counter() - g.started) * 1000
    requests_log.info(
        "%s %s %s %.1f ms", request.method, request.path, response.status_code, duration,
        extra={
            # (a static file's request has no owner to log: reading the session would add Vary:
            # Cookie to an answer that doesn't depend on it, and a cache would keep one per visitor)
            "request_id": request_id,
            "owner": owner_hash(session.get("owner")) if request.endpoint != "static" else None,
            "method": request.method, "path": request.path, "status": response.status_code,
            "duration_ms": round(duration, 1),
        },
    )  # fmt: skip
    return response


def init_app(app: Flask) -> None:
    logger = logging.getLogger("chatbot")  # Flask's app.logger is this one too
    level = str(app.config["LOG_LEVEL"]).upper()
    if level not in logging.getLevelNamesMapping():
        raise RuntimeError(f"LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, not {level!r}")
    logger.setLevel(level)
    for handler in [h for h in logger.handlers if getattr(h, _MARK, False)]:
        logger.removeHandler(handler)  # a second app in one process replaces, not doubles
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if app.config["LOG_JSON"] else logging.Formatter(app.config["LOG_FORMAT"])
    )
    setattr(handler, _MARK, True)
    logger.addHandler(handler)
    app.before_request(_start)
    app.after_request(_finish)
