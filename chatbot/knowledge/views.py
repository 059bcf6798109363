"""The public help pages: every article at ``/help/<slug>``, and their list at ``/help``."""

from __future__ import annotations

from flask import Blueprint, abort, render_template
from sqlalchemy import select

from ..extensions import db
from ..i18n import _, language
from ..models import HelpArticle
from .articles import shown_body

bp = Blueprint("help", __name__, url_prefix="/help")


@bp.get("")
def index() -> str:
    """Every article, the visitor's language first."""
    rows = db.session.execute(
        select(HelpArticle.slug, HelpArticle.title, HelpArticle.lang).order_by(HelpArticle.title)
    ).all()
    mine = language()
    groups = sorted({r.lang for r in rows}, key=lambda lang: (lang != mine, lang))
    return render_template(
        "help/index.html", groups=[(lang, [r for r in rows if r.lang == lang]) for lang in groups]
    )


@bp.get("/<slug>")
def article(slug: str) -> str:
    found = db.session.execute(select(HelpArticle).where(HelpArticle.slug == slug)).scalar_one_or_none()
    if found is None:
        abort(404, description=_("There is no help article at this address."))
    return render_template("help/article.html", article=found, body=shown_body(found.body, found.title))
