"""Light or dark: the page follows the device (``prefers-color-scheme``) until the visitor picks
one with the header's toggle, remembered in a cookie. The server writes the choice into
``<html data-theme>``, so the page never paints in the other theme first."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, abort, request
from werkzeug.wrappers import Response

from .i18n import _, remember

THEMES = ("light", "dark")
COOKIE = "chatbot_theme"

bp = Blueprint("theme", __name__)


def chosen_theme() -> str | None:
    """The theme the visitor picked ("light" / "dark"), or None: the device's."""
    value = request.cookies.get(COOKIE)
    return value if value in THEMES else None


@bp.post("/theme")
def choose_theme() -> Response:
    chosen = request.form.get("theme", "")
    if chosen not in THEMES:
        abort(400, description=_("Choose light or dark."))
    return remember(COOKIE, chosen)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)

    @app.context_processor
    def theme() -> dict[str, Any]:
        return {"theme": chosen_theme()}
