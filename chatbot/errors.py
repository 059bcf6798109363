"""App-wide error pages: a readable page, or one short line for the composer under htmx."""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, make_response, render_template, request, session
from flask.wrappers import Response
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, SecurityError, ServiceUnavailable, TooManyRequests

from . import ratelimit
from .extensions import db
from .i18n import N_, _, ngettext, number

bp = Blueprint("errors", __name__)


# An unhandled exception reaches this as a 500 (Flask has logged it with its traceback already).
@bp.app_errorhandler(HTTPException)
def http_error(error: HTTPException) -> tuple[str, int]:
    code = error.code or 500
    if isinstance(error, SecurityError):  # an untrusted Host: no URLs can be built for it
        return f"{error.description}\n", code
    if code == 413:  # never echo what was sent: it may be megabytes
        error.description = _(
            "That was too much to send at once. A message can be up to %(limit)s characters.",
            limit=number(current_app.config["MAX_MESSAGE_CHARS"]),
        )
    if error.description == type(error).description:  # (werkzeug's own words, in English)
        error.description = _(
            DEFAULT_DESCRIPTIONS.get(code, DEFAULT_DESCRIPTIONS[400 if code < 500 else 500])
        )
    if code >= 500:
        db.session.rollback()  # whatever failed must not leave a broken transaction behind
    if request.headers.get("HX-Request") == "true":  # lands in the composer's error line
        return render_template("chat/_composer_error.html", error=error.description), code
    return render_template("error.html", error=error, error_name=error_name), code


@bp.app_errorhandler(OperationalError)
def database_busy(error: OperationalError) -> tuple[str, int]:
    """The database is locked or unreachable: say so plainly (nothing the user sent is lost: a
    refused message stays in the composer), rather than a bare 500."""
    current_app.logger.warning("database unavailable on %s %s: %s", request.method, request.path, error.orig)
    db.session.rollback()
    session.modified = False  # the session's own write would fail the same way: skip it this time
    return http_error(ServiceUnavailable(_("The service is busy right now. Please try again in a moment.")))


def redis_unavailable(error: Exception) -> tuple[str, int]:
    """Redis (sessions) doesn't answer: say so plainly, as for the database."""
    current_app.logger.warning("redis unavailable on %s %s: %s", request.method, request.path, error)
    db.session.rollback()
    return http_error(ServiceUnavailable(_("The service is busy right now. Please try again in a moment.")))


@bp.app_errorhandler(429)
def too_many_requests(error: TooManyRequests) -> Response:
    """A rate limit (``ratelimit.py``): when to try again, in the composer's error line or on a
    page, and in ``Retry-After``. The route never ran: nothing was saved, no session issued."""
    seconds = ratelimit.retry_after() or 60  # (a 429 from elsewhere: a minute is a fair guess)
    wait = _duration(seconds)
    if ratelimit.limited_logins():
        error.description = _("Too many sign-in attempts. Please wait %(wait)s and try again.", wait=wait)
    elif ratelimit.limited_messages():
        error.description = _(
            "You're sending messages very fast. Please wait %(wait)s and try again.", wait=wait
        )
    else:
        error.description = _("You're clicking very fast. Please wait %(wait)s and try again.", wait=wait)
    response = make_response(http_error(error))
    response.headers["Retry-After"] = str(seconds)
    return response


def _duration(seconds: int) -> str:
    """42 seconds, 5 minutes, 3 hours (rounded up: never sooner than the limit allows)."""
    if seconds < 120:
        return ngettext("%(num)s second", "%(num)s seconds", seconds)
    if seconds < 2 * 3600:
        return ngettext("%(num)s minute", "%(num)s minutes", -(-seconds // 60))
    return ngettext("%(num)s hour", "%(num)s hours", -(-seconds // 3600))


# What an error page says when the code that raised it said nothing of its own
DEFAULT_DESCRIPTIONS = {
    400: N_("That request couldn't be understood. Please go back to the chat and try again."),
    403: N_("That isn't allowed here."),
    404: N_("We couldn't find that page. Check the address, or go back to the chat."),
    405: N_("That address can't be used that way."),
    500: N_("Something went wrong on our side. Please try again in a moment."),
}

# The headings of error pages (werkzeug's names are English)
STATUS_NAMES = {
    400: N_("Bad request"),
    403: N_("Not allowed"),
    404: N_("Not found"),
    405: N_("Not allowed"),
    409: N_("Conflict"),
    411: N_("Length required"),
    413: N_("Too much at once"),
    422: N_("Can't send that"),
    429: N_("Too many requests"),
    500: N_("Something went wrong"),
    503: N_("Busy right now"),
}


def error_name(error: HTTPException) -> str:
    name = STATUS_NAMES.get(error.code or 500)
    return _(name) if name else str(error.name)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    if app.config.get("REDIS_URL"):
        import redis

        app.register_error_handler(redis.exceptions.ConnectionError, redis_unavailable)
        app.register_error_handler(redis.exceptions.TimeoutError, redis_unavailable)
