"""gunicorn settings for serving many concurrent streamed replies.

Each streaming reply holds one thread for its length, so the worker class is ``gthread``
(the sync worker would trip ``timeout`` on a long stream; gevent blocks on sqlite3 calls).
Concurrent streams = WEB_CONCURRENCY x GUNICORN_THREADS (2 x 16 = 32 by default).

    gunicorn -c gunicorn.conf.py wsgi:app
"""

import os
from typing import Any

bind = os.environ.get("GUNICORN_BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "16"))
timeout = 60  # worker heartbeat (gthread keeps beating while threads stream)
graceful_timeout = 30
keepalive = 5
# The app logs every request itself (logger chatbot.requests: request id, hashed owner, status,
# duration); set GUNICORN_ACCESS_LOG=- for gunicorn's own access log as well.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"


def on_starting(server: Any) -> None:
    """Upgrade the schema once, in the master, before any worker starts (create_app does it), and
    mark replies cut short by the last shutdown as interrupted (the same sweep as everywhere)."""
    from chatbot import create_app
    from chatbot.chat.replies import sweep
    from chatbot.extensions import db

    app = create_app()
    with app.app_context():
        left = sweep()
        if left:
            server.log.info("marked %d unfinished replies as interrupted", left)
        db.engine.dispose()  # no pooled connection may cross the fork
