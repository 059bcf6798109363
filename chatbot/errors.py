"""App-wide error pages: a readable page, or one short line for the composer under htmx."""

from __future__ import annotations

from flask import Blueprint, Flask, render_template, request
from werkzeug.exceptions import HTTPException

from .extensions import db

bp = Blueprint("errors", __name__)


# An unhandled exception reaches this as a 500 (Flask has logged it with its traceback already).
@bp.app_errorhandler(HTTPException)
def http_error(error: HTTPException) -> tuple[str, int]:
    code = error.code or 500
    if code >= 500:
        db.session.rollback()  # whatever failed must not leave a broken transaction behind
    if request.headers.get("HX-Request") == "true":  # lands in the composer's error line
        return render_template("chat/_composer_error.html", error=error.description), code
    return render_template("error.html", error=error), code


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
