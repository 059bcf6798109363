"""The shop's admin area at ``/admin``: accounts (``flask admin …``), sign-in with rate limit and
lockout, its own session, and an audit log of what admins do.

- ``accounts.py``: making accounts and checking a sign-in (hashes, lockout, constant answers);
- ``signin.py``: the admin's session, separate from the customer's chat session;
- ``audit.py``: ``audit(action, **detail)``, the one way actions are recorded;
- ``views.py``: the pages, all behind one guard (404 until an account exists, then signed in);
- ``dashboard.py``: the dashboard's figures for a date range; ``charts.py`` its SVG charts'
  geometry; ``dashboard_views.py`` its page (a route on the same blueprint);
- ``cli.py``: ``flask admin create-user | set-password | delete-user | list-users``.
"""

from __future__ import annotations

from flask import Flask

from ..security import bind_csrf


def init_app(app: Flask) -> None:
    from . import cli, conversations, dashboard_views, signin, views  # noqa: F401  (their routes: on views.bp)

    app.register_blueprint(views.bp)
    bind_csrf(app, views.bp.name, signin.csrf_binding)
    app.cli.add_command(cli.admin_cli)
