"""The admin area's pages (HTTP only: accounts, sign-in and audit do the work).

Every route of this blueprint is behind ``guard`` (a ``before_request`` of the blueprint, so a
route added later can't forget it): the whole area answers 404, like an unknown page, until an
admin account exists; then every route but the sign-in page needs a signed-in admin (a page
redirects to the sign-in page, an htmx request gets 401). POSTs carry the app's CSRF token,
bound here to the admin's own sign-in (``signin.csrf_binding``), and the app's CSP applies.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from .. import ratelimit
from ..i18n import _, _l
from . import accounts, signin
from .audit import audit, latest

bp = Blueprint("admin", __name__, url_prefix="/admin")

PUBLIC = frozenset({"admin.login"})  # (the only route open without a sign-in)
FAILED = _l(
    "That name and password didn't work. After %(failures)s failed attempts in a row an account "
    "is locked for %(minutes)s minutes."
)


@bp.before_request
def guard() -> Response | None:
    """Off without an account (404); signed in for everything but the sign-in page."""
    if not accounts.any_account():
        abort(404)
    g.admin_area = True
    if request.endpoint in PUBLIC or signin.current() is not None:
        return None
    if request.headers.get("HX-Request") == "true":
        response = Response(_("Please sign in again."), status=401, mimetype="text/plain")
        response.headers["HX-Redirect"] = url_for("admin.login")
        return response
    if request.method != "GET":  # (a form sent after the session ended: back to the area's home)
        return redirect(url_for("admin.login"), 303)
    return redirect(url_for("admin.login", next=request.full_path.rstrip("?")), 303)


@bp.after_request
def private(response: Response) -> Response:
    """Admin pages are never cached, by the browser or anything between (while the area is off,
    its 404 is an unknown page's, headers and all)."""
    if not g.get("admin_area"):
        return response
    response.headers["Cache-Control"] = "no-store"
    response.vary.add("Cookie")
    return response


def _next_page(target: str) -> str:
    """Where to go after signing in: a page of the admin area only, else its home."""
    parts = urlsplit(target)
    if (
        parts.scheme
        or parts.netloc
        or not (target == "/admin" or target.startswith(("/admin/", "/admin?")))
        or "\\" in target
        or any(ord(c) < 32 for c in target)
        or target.startswith("/admin/login")
    ):
        return url_for("admin.home")
    return target


def _failed_message() -> str:
    return str(FAILED) % {
        "failures": current_app.config["ADMIN_LOCKOUT_FAILURES"],
        "minutes": f"{float(current_app.config['ADMIN_LOCKOUT_MINUTES']):g}",
    }


@bp.route("/login", methods=["GET", "POST"])
@ratelimit.admin_logins
def login() -> Response | tuple[str, int] | str:
    next_page = _next_page(request.values.get("next", ""))
    if request.method == "GET":
        if signin.current() is not None:
            return redirect(next_page, 303)
        return render_template("admin/login.html", next_page=next_page)
    name = request.form.get("name", "").strip()
    password = request.form.get("password", "")
    attempt = accounts.authenticate(name, password)
    if attempt.user is None:
        audit("login_failed", admin=attempt.account, reason=attempt.reason)
        if attempt.reason == "locked_now":
            audit("locked", admin=attempt.account)
        page = render_template(
            "admin/login.html", next_page=next_page, error=_failed_message(), typed_name=name
        )
        return page, 401
    token = signin.begin(attempt.user)
    audit("login", admin=attempt.user.name)
    response = redirect(next_page, 303)
    signin.set_cookie(response, token)
    return response


@bp.post("/logout")
def logout() -> Response:
    audit("logout")
    signin.end()
    response = redirect(url_for("admin.login"), 303)
    signin.clear_cookie(response)
    return response


@bp.get("")
def home() -> str:
    return render_template("admin/home.html", admin=signin.current())


ACTIONS = {
    "login": _l("Signed in"),
    "login_failed": _l("Sign-in failed"),
    "locked": _l("Account locked"),
    "logout": _l("Signed out"),
    "user_created": _l("Account created"),
    "password_set": _l("Password changed"),
    "user_deleted": _l("Account deleted"),
    "conversation_deleted": _l("Conversation deleted"),
    "conversation_exported": _l("Conversation exported"),
}


def action_label(action: str) -> str:
    """An audit entry's action in the page's language (a later action not named here: as stored)."""
    return str(ACTIONS.get(action, action))


@bp.get("/audit")
def audit_log() -> str:
    return render_template(
        "admin/audit.html", admin=signin.current(), entries=latest(), action_label=action_label
    )
