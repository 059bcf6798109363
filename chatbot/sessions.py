"""Server-side sessions: in Redis when ``REDIS_URL`` is set (shared by every process and host,
expired by Redis itself), else Flask-Session's SQLAlchemy backend on our own ``sessions`` table.

Why not ``Session(app)`` with ``SESSION_TYPE="sqlalchemy"``: that declares a new model class on
``db.Model`` for every app it initialises ("Table 'sessions' is already defined", Flask-Session
issue #245, bites every factory that runs twice) and creates the table inside each worker at start
(racing on a fresh database). Here the row class is declared once in ``models.py``, the table is
created with the rest of the schema, and Flask-Session's own load/save/cleanup code does the work.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, Request, Response
from flask import request as current_request
from flask_session.base import ServerSideSession, ServerSideSessionInterface
from flask_session.redis import RedisSessionInterface
from flask_session.sqlalchemy import SqlAlchemySessionInterface
from sqlalchemy import bindparam, select
from werkzeug.exceptions import ServiceUnavailable

from .extensions import db, rowcount
from .i18n import _l
from .models import SessionRecord


class DatabaseSessionInterface(SqlAlchemySessionInterface):
    def __init__(self, app: Flask):
        self.client = db
        self.sql_session_model = SessionRecord
        ServerSideSessionInterface.__init__(
            self,
            app,
            key_prefix="session:",
            permanent=app.config["SESSION_PERMANENT"],
            sid_length=32,
            serialization_format="msgpack",
            cleanup_n_requests=app.config["SESSION_CLEANUP_N_REQUESTS"],
        )

    def _cleanup_n_requests(self) -> None:
        """Flask-Session deletes expired sessions on about one request in
        SESSION_CLEANUP_N_REQUESTS: never on a health check (which must not touch the database)
        or a static file."""
        if current_request.blueprint != "health" and current_request.endpoint != "static":
            super()._cleanup_n_requests()

    # One Core SELECT on a pooled connection instead of an ORM query: the session is read on
    # every request, and this halves its cost. Expired rows read as "no session" (cleanup
    # removes them every SESSION_CLEANUP_N_REQUESTS requests).
    _READ = select(SessionRecord.data, SessionRecord.expiry).where(
        SessionRecord.session_id == bindparam("sid")
    )

    def _retrieve_session_data(self, store_id: str) -> dict[str, Any] | None:
        row = self.client.session.connection().execute(self._READ, {"sid": store_id}).first()
        if row is None or row.expiry is None:
            return None
        if row.expiry <= datetime.now(UTC).replace(tzinfo=None):
            return None
        data: dict[str, Any] = self.serializer.decode(bytes(row.data))
        return data

    # Saving: one Core UPDATE (an INSERT only for a new session) instead of Flask-Session's ORM
    # query, then update or add, then commit.
    _t = SessionRecord.__table__
    _UPDATE = (
        _t.update()
        .where(_t.c.session_id == bindparam("sid"))
        .values(data=bindparam("data"), expiry=bindparam("expiry"))
    )
    _INSERT = _t.insert().values(
        session_id=bindparam("sid"), data=bindparam("data"), expiry=bindparam("expiry")
    )

    def _upsert_session(self, session_lifetime: timedelta, session: ServerSideSession, store_id: str) -> None:
        values = {
            "sid": store_id,
            "data": self.serializer.encode(session),
            "expiry": datetime.now(UTC).replace(tzinfo=None) + session_lifetime,
        }
        try:
            conn = self.client.session.connection()
            if rowcount(conn.execute(self._UPDATE, values)) == 0:
                conn.execute(self._INSERT, values)
            self.client.session.commit()
        except Exception:
            self.client.session.rollback()
            raise


SESSIONS_DOWN = "chatbot.sessions_down"  # request.environ: the session store didn't answer
BUSY = _l("The service is busy right now. Please try again in a moment.")


class RedisSessions(RedisSessionInterface):
    """Flask-Session's Redis backend: one GET to read a session, one SET (with its expiry) to save.

    - A session saved in the database before ``REDIS_URL`` was set is still read from there (and
      saved to Redis when it next changes): setting ``REDIS_URL`` logs nobody out.
    - A Redis that doesn't answer within a second: the request gets an empty session and a
      readable 503 (``errors.py``), never a bare 500; health checks still answer.
    """

    def __init__(self, app: Flask):
        import redis

        self.errors: tuple[type[Exception], ...] = (redis.exceptions.RedisError,)
        client = redis.Redis.from_url(
            app.config["REDIS_URL"], socket_timeout=1, socket_connect_timeout=1, health_check_interval=30
        )
        super().__init__(
            app,
            client=client,
            key_prefix=app.config["SESSION_KEY_PREFIX"],
            permanent=app.config["SESSION_PERMANENT"],
            sid_length=32,
            serialization_format="msgpack",
        )
        self.database = DatabaseSessionInterface(app)

    def _retrieve_session_data(self, store_id: str) -> dict[str, Any] | None:
        data: dict[str, Any] | None = super()._retrieve_session_data(store_id)
        if data is None:  # saved before sessions moved to Redis?
            sid = store_id[len(self.key_prefix) :]
            data = self.database._retrieve_session_data(self.database.key_prefix + sid)
        return data

    def open_session(self, app: Flask, request: Request) -> ServerSideSession:
        try:
            return super().open_session(app, request)
        except self.errors as exc:
            app.logger.warning("sessions unavailable (redis): %s", exc)
            request.environ[SESSIONS_DOWN] = True
            return self.session_class(sid=self._generate_sid(self.sid_length), permanent=self.permanent)

    def save_session(self, app: Flask, session: ServerSideSession, response: Response) -> None:
        if request_environ().get(SESSIONS_DOWN):
            return  # (nothing was read: nothing may be written over it)
        try:
            super().save_session(app, session, response)
        except self.errors as exc:  # the answer can't be found again without its session: say so
            app.logger.warning("sessions unavailable (redis), a session was not saved: %s", exc)
            from .errors import http_error

            body, code = http_error(ServiceUnavailable(BUSY))
            response.close()  # (a stream that never started: its reply is left to its lease)
            response.set_data(body)
            response.status_code = code
            response.mimetype = "text/html"


def request_environ() -> dict[str, Any]:
    environ: dict[str, Any] = current_request.environ
    return environ


def sessions_down() -> bool:
    """This request's session store didn't answer (its session is empty, and unsaved)."""
    return bool(request_environ().get(SESSIONS_DOWN))


def refuse_without_sessions() -> None:
    """First of all checks: without its session a request can't know whose conversations it may
    see, so it gets a readable 503 (health checks and static files still answer)."""
    if sessions_down() and current_request.blueprint != "health" and current_request.endpoint != "static":
        raise ServiceUnavailable(BUSY)


def init_app(app: Flask) -> None:
    if app.config.get("REDIS_URL"):
        app.session_interface = RedisSessions(app)
        app.before_request_funcs.setdefault(None, []).insert(0, refuse_without_sessions)
    else:
        app.session_interface = DatabaseSessionInterface(app)
