"""Admin accounts: making them, changing their passwords, and checking a sign-in.

Passwords are hashed with werkzeug's ``generate_password_hash`` default (scrypt today; a hash
records its own method, so an older one still verifies after werkzeug's default moves on).

A sign-in that fails says one thing whatever the reason (unknown name, wrong password, locked
account), and costs the same: an unknown name is checked against a dummy hash of the same kind, so
neither the answer nor its time tells whether a name exists. Wrong passwords in a row are counted
on the account in the database (one atomic UPDATE: every worker and host counts the same), and
``ADMIN_LOCKOUT_FAILURES`` of them lock it for ``ADMIN_LOCKOUT_MINUTES``: while locked even the
right password is refused. Passwords are never logged or stored anywhere but as their hash.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from flask import current_app
from sqlalchemy import case, delete, exists, literal, or_, select, update
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from ..models import AdminSession, AdminUser, UTCDateTime, utcnow

MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # (a longer one is surely a paste gone wrong)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class AccountError(ValueError):
    """A name or password that can't be used, or an account that doesn't exist (said plainly)."""


def any_account() -> bool:
    """Whether the admin area is on: at least one account exists."""
    return bool(db.session.execute(select(exists().where(AdminUser.id.is_not(None)))).scalar())


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise AccountError("a name is 1 to 64 letters, digits and . _ @ - (starting with a letter or digit)")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must be at least {MIN_PASSWORD} characters long")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"the password must be at most {MAX_PASSWORD} characters long")
    return password


def find(name: str) -> AdminUser | None:
    return db.session.execute(select(AdminUser).where(AdminUser.name == name)).scalar_one_or_none()


def _existing(name: str) -> AdminUser:
    user = find(name)
    if user is None:
        raise AccountError(f"there is no admin account named {name!r}")
    return user


def list_users() -> list[AdminUser]:
    return list(db.session.execute(select(AdminUser).order_by(AdminUser.name)).scalars())


def create_user(name: str, password: str) -> AdminUser:
    check_name(name)
    check_password(password)
    if find(name) is not None:
        raise AccountError(f"there is already an admin account named {name!r}")
    user = AdminUser(name=name, password_hash=generate_password_hash(password), failed_logins=0)
    db.session.add(user)
    db.session.commit()
    return user


def set_password(name: str, password: str) -> None:
    """A new password; every browser signed in to the account is signed out, and a lockout ends."""
    check_password(password)
    user = _existing(name)
    user.password_hash = generate_password_hash(password)
    user.failed_logins = 0
    user.locked_until = None
    db.session.execute(delete(AdminSession).where(AdminSession.user_id == user.id))
    db.session.commit()


def delete_user(name: str) -> None:
    """The account and its sessions (its audit entries stay: they name it in words)."""
    user = _existing(name)
    db.session.execute(delete(AdminSession).where(AdminSession.user_id == user.id))
    db.session.delete(user)
    db.session.commit()


@cache
def _dummy_hash() -> str:
    """A hash of a random password made the way real ones are: checking a password against it
    costs what checking a real account's does (made once a process)."""
    return generate_password_hash(secrets.token_urlsafe(24))


@dataclass(frozen=True)
class Attempt:
    """How a sign-in went. ``user`` is set only when it succeeded; ``account`` names an existing
    account (for the audit log, never for the page); ``reason`` is one of ok, unknown, wrong,
    locked (the account was locked already), locked_now (this failure locked it)."""

    user: AdminUser | None
    account: str | None
    reason: str


def authenticate(name: str, password: str, now: datetime | None = None) -> Attempt:
    """Check a sign-in, count a failure on its account, lock the account at the limit."""
    now = now or utcnow()
    config = current_app.config
    user = find(name) if NAME.match(name) else None
    # the same work whether or not the name exists (and whether or not it is locked)
    right = check_password_hash(user.password_hash if user else _dummy_hash(), password[:MAX_PASSWORD])
    right = right and len(password) <= MAX_PASSWORD  # (no password is longer: see check_password)
    locked = user is not None and user.locked_until is not None and user.locked_until > now
    if user is not None and right and not locked:
        user.failed_logins = 0
        user.locked_until = None
        user.last_login_at = now
        db.session.commit()
        return Attempt(user, user.name, "ok")

    # A failure: one statement, whatever the reason (it finds no row for an unknown or locked
    # name). The count and the lock are set in the database, atomically.
    limit = int(config["ADMIN_LOCKOUT_FAILURES"])
    until = now + timedelta(minutes=float(config["ADMIN_LOCKOUT_MINUTES"]))
    reaches = AdminUser.failed_logins + 1 >= limit
    counted = db.session.execute(
        update(AdminUser)
        .where(
            AdminUser.name == name,
            or_(AdminUser.locked_until.is_(None), AdminUser.locked_until <= now),
        )
        .values(
            failed_logins=case((reaches, 0), else_=AdminUser.failed_logins + 1),
            locked_until=case((reaches, literal(until, UTCDateTime())), else_=AdminUser.locked_until),
        )
        .returning(AdminUser.failed_logins, AdminUser.locked_until)
        .execution_options(synchronize_session=False)
    ).first()
    db.session.commit()
    if user is None:
        return Attempt(None, None, "unknown")
    if locked:
        return Attempt(None, user.name, "locked")
    if counted is not None and counted.locked_until is not None and counted.locked_until > now:
        return Attempt(None, user.name, "locked_now")
    return Attempt(None, user.name, "wrong")
