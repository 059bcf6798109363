"""App-wide error pages: a readable page, or one short line for the composer under htmx."""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, make_response, render_template, request, session
from flask.wrappers import Response
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, SecurityError, ServiceUnavailable, TooManyRequests

from . import ratelimit
from .extensions import db

bp = Blueprint("errors", __name__)


# An unhandled exception reaches this as a 500 (Flask has logged it with its traceback already).
@bp.app_errorhandler(HTTPException)
def http_error(error: HTTPException) -> tuple[str, int]:
    code = error.code or 500
    if isinstance(error, SecurityError):  # an untrusted Host: no URLs can be built for it
        return f"{error.description}\n", code
    if code == 413:  # never echo what was sent: it may be megabytes
        error.description = (
            f"That was too much to send at once. A message can be up to "
            f"{current_app.config['MAX_MESSAGE_CHARS']:,} characters."
        )
    if code >= 500:
        db.session.rollback()  # whatever failed must not leave a broken transaction behind
    if request.headers.get("HX-Request") == "true":  # lands in the composer's error line
        return render_template("chat/_composer_error.html", error=error.description), code
    return render_template("error.html", error=error), code


@bp.app_errorhandler(OperationalError)
def database_busy(error: OperationalError) -> tuple[str, int]:
    """The database is locked or unreachable: say so plainly (nothing the user sent is lost: a
    refused message stays in the composer), rather than a bare 500."""
    current_app.logger.warning("database unavailable on %s %s: %s", request.method, request.path, error.orig)
    db.session.rollback()
    session.modified = False  # the session's own write would fail the same way: skip it this time
    return http_error(ServiceUnavailable("The service is busy right now. Please try again in a moment."))


def redis_unavailable(error: Exception) -> tuple[str, int]:
    """Redis (sessions) doesn't answer: say so plainly, as for the database."""
    current_app.logger.warning("redis unavailable on %s %s: %s", request.method, request.path, error)
    db.session.rollback()
    return http_error(ServiceUnavailable("The service is busy right now. Please try again in a moment."))


@bp.app_errorhandler(429)
def too_many_requests(error: TooManyRequests) -> Response:
    """A rate limit (``ratelimit.py``): when to try again, in the composer's error line or on a
    page, and in ``Retry-After``. The route never ran: nothing was saved, no session issued."""
    seconds = ratelimit.retry_after() or 60  # (a 429 from elsewhere: a minute is a fair guess)
    doing = "sending messages" if ratelimit.limited_messages() else "clicking"
    error.description = f"You're {doing} very fast. Please wait {_duration(seconds)} and try again."
    response = make_response(http_error(error))
    response.headers["Retry-After"] = str(seconds)
    return response


def _duration(seconds: int) -> str:
    """42 seconds, 5 minutes, 3 hours (rounded up: never sooner than the limit allows)."""
    if seconds < 120:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    if seconds < 2 * 3600:
        return f"{-(-seconds // 60)} minutes"
    return f"{-(-seconds // 3600)} hours"


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    if app.config.get("REDIS_URL"):
        import redis

        app.register_error_handler(redis.exceptions.ConnectionError, redis_unavailable)
        app.register_error_handler(redis.exceptions.TimeoutError, redis_unavailable)
