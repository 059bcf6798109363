"""The chat blueprint: the page, sending a message, stopping a reply, starting afresh."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, current_app

from ..i18n import _
from ..knowledge.briefing import contact
from ..llm import get_provider
from ..suggestions import suggestions
from . import live, outcomes, replies

bp = Blueprint("chat", __name__)


@bp.app_context_processor
def inject_assistant() -> dict[str, Any]:
    """Every template knows who answers now, and how a reply's status reads."""
    return {
        "assistant": get_provider(current_app),
        "shown_status": replies.shown_status,
        "reply_notice": replies.notice,
        "can_retry": replies.can_retry,
        "can_rate": replies.can_rate,
        "can_regenerate": replies.can_regenerate,
        "support_contact": current_app.config.get("SUPPORT_CONTACT"),
        "assistant_name": current_app.config.get("ASSISTANT_NAME") or _("Phone support"),
        "suggestions": suggestions,
        "asks_outcome": outcomes.asks,
        "contact": contact(current_app.config),
        "contact_labels": {"phone": _("Phone"), "email": _("E-mail"), "hours": _("Hours"), "url": _("Web")},
    }


def init_app(app: Flask) -> None:
    live.init_app(app)
    outcomes.init_app(app)
    app.url_map.converters["id"] = views.IdConverter
    app.register_blueprint(bp)


from . import export_views, search_views, views  # noqa: E402, F401  (routes register themselves on ``bp``)
