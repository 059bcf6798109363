"""The audit log: every admin action in one table, written by one function.

``audit("login")``, ``audit("login_failed", reason="wrong")``… records who (the signed-in admin,
or ``admin=`` when there is none yet), what, the details (JSON) and the client's address. What a
visitor typed is never recorded (a password typed into the name field would be kept): a failed
sign-in names its account only when the account exists.
"""

from __future__ import annotations

from typing import Any

from flask import g, has_request_context, request
from sqlalchemy import select

from ..extensions import db
from ..models import AdminAudit

LATEST = 200


def audit(action: str, *, admin: str | None = None, **detail: Any) -> None:
    """Record ``action`` (committed at once: the entry stays whatever the request does next)."""
    remote = None
    if has_request_context():
        remote = (request.remote_addr or "")[:64] or None  # (ProxyFix made it the client's)
        signed_in = g.get("admin_user")
        if admin is None and signed_in is not None:
            admin = signed_in.name
    db.session.add(AdminAudit(admin_name=admin, action=action, detail=detail, remote_addr=remote))
    db.session.commit()


def latest(limit: int = LATEST) -> list[AdminAudit]:
    """The newest entries first."""
    rows = db.session.execute(select(AdminAudit).order_by(AdminAudit.id.desc()).limit(limit)).scalars()
    return list(rows)
