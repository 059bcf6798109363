"""The admin's own session: separate from the customer's chat session, in its own cookie.

Why not the chat's Flask-Session: that session belongs to a customer's browser for 180 days,
lives in Redis or the ``sessions`` table, and ``SameSite=Lax``; an admin sign-in needs a short,
revocable life of its own, and signing in or out must never touch a chat. So:

- the cookie ``chatbot_admin`` (``__Host-chatbot_admin`` in production: HTTPS only, this host
  only) is HttpOnly and ``SameSite=Strict``, and holds a random 256-bit token, signed with the
  secret key (a forged or garbled cookie is refused before the database is asked);
- the server keeps the token's SHA-256 in ``admin_sessions`` (a copy of the table signs nobody
  in), with its account, when it began, when it was last used and when it ends;
- it ends at ``ADMIN_SESSION_HOURS`` after sign-in whatever happens, after ``ADMIN_IDLE_MINUTES``
  without a request, at logout, and for every browser of an account whose password changes or
  which is deleted (its rows go);
- each sign-in makes a new token and ends the browser's previous one (no session fixation).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from flask import current_app, g, request
from itsdangerous import BadSignature, Signer
from sqlalchemy import delete, or_, select, update
from werkzeug.wrappers import Response

from ..extensions import db
from ..models import AdminSession, AdminUser, utcnow

SEEN_EVERY = timedelta(minutes=1)  # ``seen_at`` is written at most this often (not every request)


def _signer() -> Signer:
    return Signer(current_app.config["SECRET_KEY"], salt="chatbot.admin-session")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def cookie_token() -> str | None:
    """The token in this request's admin cookie, if its signature holds."""
    raw = request.cookies.get(current_app.config["ADMIN_COOKIE_NAME"])
    if not raw or len(raw) > 200:
        return None
    try:
        return _signer().unsign(raw).decode()
    except BadSignature:
        return None


def csrf_binding() -> str:
    """What the admin pages' CSRF tokens are bound to: this sign-in (a hash of its token; the
    sign-in page's own: "admin:" alone). Never a customer's owner token."""
    token = cookie_token()
    return "admin:" + (_hash(token)[:32] if token else "")


def begin(user: AdminUser, now: datetime | None = None) -> str:
    """A new session for ``user`` (the browser's previous one, if any, ends): its token."""
    now = now or utcnow()
    old = cookie_token()
    if old:
        db.session.execute(delete(AdminSession).where(AdminSession.token_hash == _hash(old)))
    idle = timedelta(minutes=float(current_app.config["ADMIN_IDLE_MINUTES"]))
    db.session.execute(  # (and sessions that ended unseen: nobody came back to them)
        delete(AdminSession).where(or_(AdminSession.expires_at <= now, AdminSession.seen_at <= now - idle))
    )
    token = secrets.token_urlsafe(32)
    hours = float(current_app.config["ADMIN_SESSION_HOURS"])
    db.session.add(
        AdminSession(
            token_hash=_hash(token),
            user_id=user.id,
            created_at=now,
            seen_at=now,
            expires_at=now + timedelta(hours=hours),
        )
    )
    db.session.commit()
    return token


def current(now: datetime | None = None) -> AdminUser | None:
    """The admin signed in on this request's browser, or None (no cookie, a bad one, or a session
    that ended: an ended one's row is deleted). Looked up once a request."""
    if "admin_user" in g:
        found: AdminUser | None = g.admin_user
        return found
    g.admin_user = None
    token = cookie_token()
    if token is None:
        return None
    now = now or utcnow()
    row = db.session.execute(
        select(AdminSession, AdminUser)
        .join(AdminUser, AdminUser.id == AdminSession.user_id)
        .where(AdminSession.token_hash == _hash(token))
    ).first()
    if row is None:
        return None
    admin_session, user = row
    idle = timedelta(minutes=float(current_app.config["ADMIN_IDLE_MINUTES"]))
    if admin_session.expires_at <= now or admin_session.seen_at + idle <= now:
        db.session.execute(delete(AdminSession).where(AdminSession.id == admin_session.id))
        db.session.commit()
        return None
    if now - admin_session.seen_at >= SEEN_EVERY:
        db.session.execute(
            update(AdminSession).where(AdminSession.id == admin_session.id).values(seen_at=now)
        )
        db.session.commit()
    g.admin_user = user
    return user


def end() -> None:
    """Sign this browser out (its row goes: the cookie is worth nothing after)."""
    token = cookie_token()
    if token:
        db.session.execute(delete(AdminSession).where(AdminSession.token_hash == _hash(token)))
        db.session.commit()
    g.admin_user = None


def set_cookie(response: Response, token: str) -> None:
    config = current_app.config
    response.set_cookie(
        config["ADMIN_COOKIE_NAME"],
        _signer().sign(token).decode(),
        max_age=int(float(config["ADMIN_SESSION_HOURS"]) * 3600),
        path="/",
        secure=bool(config["PRODUCTION"]) or request.is_secure,
        httponly=True,
        samesite="Strict",
    )


def clear_cookie(response: Response) -> None:
    config = current_app.config
    response.delete_cookie(
        config["ADMIN_COOKIE_NAME"],
        path="/",
        secure=bool(config["PRODUCTION"]) or request.is_secure,
        httponly=True,
        samesite="Strict",
    )
