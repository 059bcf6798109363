"""gunicorn settings for serving many concurrent streamed replies.

A streamed reply is an open response for its whole length (seconds to a minute), mostly waiting on
the model. The worker class is ``gevent``: every open stream is a greenlet (a few tens of KB), not
an OS thread, so one worker holds hundreds of streams and a slow client holds nothing but its
socket. Measured on 2 cores (``bench/concurrency.py``, README "Benchmarks"): gthread with 2 x 16
threads made the 33rd customer wait for someone else's reply to end, and 500 customers waited
38 s p95 for their first text; gevent serves them all at once.

The standard library is patched in this file, before anything else is imported, so every lock,
queue, socket and sleep the app and its libraries use in a worker is a cooperative one. psycopg 3
cooperates with gevent on its own; SQLite calls are short, and a wait for another process's write
lock is a greenlet's sleep (``database.CooperativeConnection``), not SQLite's busy loop in C.
``GUNICORN_WORKER_CLASS=gthread`` serves with threads instead.

    gunicorn -c gunicorn.conf.py wsgi:app
"""

import os
from typing import Any

worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gevent")
if worker_class == "gevent":
    from gevent import monkey

    monkey.patch_all()

bind = os.environ.get("GUNICORN_BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))  # one per core: each runs one greenlet at a time
# gevent: open connections (streams, page loads, idle keep-alives) each worker holds at most
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "2000"))
# gthread only: concurrent requests per worker
threads = int(os.environ.get("GUNICORN_THREADS", "16"))
timeout = 60  # worker heartbeat: a worker silent this long is killed and replaced
# A restart (HUP, a deploy's TERM) stops accepting and lets running replies finish this long;
# a reply cut by a hard kill is marked interrupted (on_starting below, and its lease) and can be
# retried.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "60"))
keepalive = 5
# A reply whose page went away (closed, reloaded, offline) goes on in the background, with no
# request to keep its worker alive: a worker on its way out gives such replies this long to end,
# then saves what is left of them as interrupted (its master kills it after graceful_timeout).
DEPARTED_REPLY_SECONDS = float(os.environ.get("GUNICORN_DEPARTED_REPLY_SECONDS", "20"))
# The app logs every request itself (logger chatbot.requests: request id, hashed owner, status,
# duration); set GUNICORN_ACCESS_LOG=- for gunicorn's own access log as well.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
# gunicorn's control socket (gunicornc) lives at one path per user: two servers on a host would
# take it from each other. On when asked for (GUNICORN_CONTROL_SOCKET=path).
control_socket_disable = not os.environ.get("GUNICORN_CONTROL_SOCKET")
if os.environ.get("GUNICORN_CONTROL_SOCKET"):
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]


STARTUP_SECONDS = int(os.environ.get("GUNICORN_STARTUP_SECONDS", "120"))  # the schema upgrade included


def on_starting(server: Any) -> None:
    """Before any worker starts: upgrade the schema once (the app does it as it is created) and
    mark replies cut short by the last shutdown as interrupted (``flask sweep``).

    In a child process: the master never imports the app, so nothing of it (pooled connections,
    background timers) is inherited by the workers it forks."""
    import subprocess
    import sys

    server.log.info("preparing the database (flask sweep)")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "chatbot", "sweep"],
            capture_output=True,
            text=True,
            check=False,
            timeout=STARTUP_SECONDS,
        )
    except subprocess.TimeoutExpired:
        server.log.error("flask sweep took over %d s: is the database reachable?", STARTUP_SECONDS)
        raise SystemExit(1) from None
    if done.returncode != 0:
        server.log.error("flask sweep failed:\n%s", done.stderr.strip())
        raise SystemExit(done.returncode)  # the workers would fail the same way
    for line in done.stderr.splitlines():  # (warnings, the app's own log lines)
        server.log.info("flask sweep: %s", line)
    server.log.info(done.stdout.strip())


def worker_exit(server: Any, worker: Any) -> None:
    """In the worker, as it leaves: let the replies carried on for departed pages end (or save
    them interrupted), so a deploy never leaves a reply looking live."""
    app = getattr(worker, "wsgi", None)
    live = getattr(app, "extensions", {}).get("chatbot.live")
    if live is None or not live.carried():
        return
    server.log.info(
        "waiting up to %.0f s for %d replies whose pages left", DEPARTED_REPLY_SECONDS, live.carried()
    )
    cut = live.finish_up(DEPARTED_REPLY_SECONDS)
    if cut:
        server.log.warning("%d replies were cut short by the shutdown and saved as interrupted", cut)
