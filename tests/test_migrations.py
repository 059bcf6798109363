"""The schema's migrations: they build what the models declare (SQLite and PostgreSQL), the start-up
path (create_all + stamp) ends at the same place, a previous release's database is upgraded with
its data, and two workers starting at once on a fresh database both come up."""

from __future__ import annotations

import multiprocessing
import uuid
from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from chatbot import create_app, database
from chatbot.chat.search import search
from chatbot.database import BASELINE, alembic_config, current_revision, head_revision
from chatbot.extensions import db
from chatbot.models import (
    SEARCH_CONFIG,
    SEARCH_INDEXES,
    SEARCH_TABLES,
    Conversation,
    Message,
    UTCDateTime,
    drop_search,
    search_object,
)

from .conftest import PG_SERVER

HEAD = head_revision()


# --- databases -----------------------------------------------------------------------------------


@pytest.fixture
def pg_database(pg_admin):
    name = f"chatbot_migrations_{uuid.uuid4().hex[:10]}"
    pg_admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(PG_SERVER).set(drivername="postgresql+psycopg", database=name)
    yield url.render_as_string(hide_password=False)
    pg_admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """An empty database: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'chat.sqlite3'}"
    return request.getfixturevalue("pg_database")


# --- what a schema is ----------------------------------------------------------------------------


def model_differences(conn: Connection) -> list:
    """What ``flask db migrate`` would write: the models against the database (leaving out, as
    migrations/env.py does, the search's tables and indexes, which the models can't declare:
    ``search_of`` compares those)."""
    context = MigrationContext.configure(
        conn,
        opts={
            "compare_type": True,
            "include_object": lambda obj, name, type_, reflected, compare_to: not search_object(name),
        },
    )
    return compare_metadata(context, db.metadata)


def search_of(conn: Connection) -> dict:
    """The search's own objects as the database holds them (normalised SQL): on SQLite the FTS5
    tables and every trigger, on PostgreSQL the text search configuration and the indexes."""
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql(
            "SELECT type, name, tbl_name, sql FROM sqlite_master"
            " WHERE type = 'trigger' OR sql LIKE 'CREATE VIRTUAL TABLE%' ORDER BY name"
        ).all()
        return {name: (type_, table, " ".join(sql.split())) for type_, name, table, sql in rows}
    mapping = conn.execute(
        text(
            "SELECT tt.alias, string_agg(d.dictname, ',' ORDER BY m.mapseqno)"
            " FROM pg_ts_config AS c JOIN pg_ts_config_map AS m ON m.mapcfg = c.oid"
            " JOIN pg_ts_dict AS d ON d.oid = m.mapdict"
            " JOIN ts_token_type(c.cfgparser) AS tt ON tt.tokid = m.maptokentype"
            " WHERE c.cfgname = :config GROUP BY tt.alias ORDER BY tt.alias"
        ),
        {"config": SEARCH_CONFIG},
    ).all()
    indexes = conn.execute(
        text("SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY(:names) ORDER BY indexname"),
        {"names": list(SEARCH_INDEXES)},
    ).all()
    return {"config": [tuple(m) for m in mapping], "indexes": [tuple(i) for i in indexes]}


def assert_search_objects(conn: Connection) -> None:
    """What the search needs is all there (the same on either path: see ``search_of``)."""
    found = search_of(conn)
    if conn.dialect.name == "sqlite":
        names = {n for n, (type_, _, _) in found.items() if type_ == "trigger" and "_fts_" in n}
        assert names == {
            f"{t}_fts_{op}" for t in ("messages", "conversations") for op in ("insert", "update", "delete")
        }
        assert {n for n, (type_, _, _) in found.items() if type_ == "table"} == set(SEARCH_TABLES)
    else:
        assert [name for name, _ in found["indexes"]] == sorted(SEARCH_INDEXES)
        assert dict(found["config"])["word"] in ("unaccent,simple", "simple")


def schema_of(conn: Connection) -> dict:
    """The schema as the database reports it, including what autogenerate does not compare:
    CHECK constraints, partial indexes' predicates, constraint names and column defaults (on
    PostgreSQL, the sequence behind each id)."""
    found = inspect(conn)
    where = f"{conn.dialect.name}_where"
    tables = {}
    for table in found.get_table_names():
        pk = found.get_pk_constraint(table)
        tables[table] = {
            "columns": {
                c["name"]: (str(c["type"]), c["nullable"], c.get("default")) for c in found.get_columns(table)
            },
            "primary key": (pk["name"], pk["constrained_columns"]),
            "foreign keys": sorted(
                (
                    fk["name"] or "",
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                    str(fk["options"]),
                )
                for fk in found.get_foreign_keys(table)
            ),
            "unique": sorted(
                (u["name"] or "", tuple(u["column_names"])) for u in found.get_unique_constraints(table)
            ),
            "indexes": {
                i["name"]: (
                    tuple(i["column_names"]),
                    bool(i["unique"]),
                    str(i.get("dialect_options", {}).get(where)),
                )
                for i in found.get_indexes(table)
            },
            "checks": {c["name"]: c["sqltext"] for c in found.get_check_constraints(table)},
        }
    return tables


def drop_everything(conn: Connection) -> None:
    drop_search(conn)
    everything = MetaData()
    everything.reflect(conn)
    everything.drop_all(conn)
    assert inspect(conn).get_table_names() == []


def flask_db_upgrade(app) -> None:
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"


def new_conversation(engine: Engine, public_id: str) -> int:
    with engine.begin() as conn:
        return conn.execute(
            insert(Conversation.__table__)
            .values(
                public_id=public_id,
                owner="owner",
                title=public_id,
                created_at=datetime.now(UTC),
                updated_at=datetime.now(UTC),
            )
            .returning(Conversation.__table__.c.id)
        ).scalar_one()


def add_reply(engine: Engine, conversation_id: int, status: str) -> int:
    """A reply as a turn writes it; each in its own transaction, so a refused one is rolled back."""
    with engine.begin() as conn:
        return conn.execute(
            insert(Message.__table__)
            .values(
                conversation_id=conversation_id,
                content="",
                is_user=False,
                status=status,
                timestamp=datetime.now(UTC),
                metadata={},
            )
            .returning(Message.__table__.c.id)
        ).scalar_one()


def assert_the_fence_holds(engine: Engine, first: int, second: int) -> None:
    """One live reply per conversation, and only the statuses of the vocabulary."""
    add_reply(engine, first, "streaming")
    add_reply(engine, first, "complete")
    add_reply(engine, first, "interrupted")  # ended replies do not count
    for live in ("streaming", "stopping"):
        with pytest.raises(IntegrityError, match=r"UNIQUE constraint failed|uq_messages_one_live_reply"):
            add_reply(engine, first, live)
    add_reply(engine, second, "stopping")  # another conversation has its own live reply
    with pytest.raises(IntegrityError, match="ck_messages_status"):
        add_reply(engine, second, "stale")
    with engine.connect() as conn:
        live = conn.execute(
            select(Message.conversation_id, Message.status)
            .where(Message.status.in_(("streaming", "stopping")))
            .order_by(Message.conversation_id)
        ).all()
    assert [tuple(row) for row in live] == [(first, "streaming"), (second, "stopping")]


# --- 1 and 2: the migrations, the models and the start-up path agree ------------------------------


def test_the_migrations_form_one_line_from_the_baseline():
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == [HEAD]
    line = [revision.revision for revision in script.walk_revisions()]  # head first
    assert line[-1] == BASELINE and line[0] == HEAD and "0002_reply_fence" in line


def test_migrations_from_nothing_build_what_the_models_declare(database_url, app_factory):
    app = app_factory(SQLALCHEMY_DATABASE_URI=database_url)  # the start-up path: create_all
    with app.app_context():
        with db.engine.begin() as conn:
            from_the_models = schema_of(conn)
            search_from_the_models = search_of(conn)
            drop_everything(conn)  # tables and alembic_version: the database is empty again

        flask_db_upgrade(app)  # every migration, from nothing

        with db.engine.connect() as conn:
            assert current_revision(conn) == HEAD
            assert model_differences(conn) == []
            from_the_migrations = schema_of(conn)
            search_from_the_migrations = search_of(conn)
            assert_search_objects(conn)
        check = app.test_cli_runner().invoke(args=["db", "check"])  # env.py's own comparison
        assert check.exit_code == 0, check.output
    tables = {
        "alembic_version",
        "conversations",
        "messages",
        "sessions",
        "help_articles",
        "help_passages",
        "help_index",
        "admin_users",
        "admin_sessions",
        "admin_audit",
    }
    assert {t for t in from_the_migrations if not search_object(t)} == tables
    for table, shape in from_the_models.items():
        assert from_the_migrations[table] == shape, table
    assert search_from_the_migrations == search_from_the_models


def test_startup_on_an_empty_database_ends_at_head(database_url, app_factory, monkeypatch):
    outcomes = []
    upgrade = database._upgrade
    monkeypatch.setattr(database, "_upgrade", lambda: outcomes.append(upgrade()) or outcomes[-1])
    app = app_factory(SQLALCHEMY_DATABASE_URI=database_url)
    assert outcomes == ["created"]
    with app.app_context():
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]
            assert model_differences(conn) == []
            created = schema_of(conn)
            assert_search_objects(conn)
        assert "ck_messages_status" in created["messages"]["checks"]
        columns, unique, where = created["messages"]["indexes"]["uq_messages_one_live_reply"]
        assert columns == ("conversation_id",) and unique and "streaming" in where and "stopping" in where

        flask_db_upgrade(app)  # stamped at head: nothing left to run (0002 again would fail)
        with db.engine.connect() as conn:
            assert current_revision(conn) == HEAD
            assert schema_of(conn) == created
        assert_the_fence_holds(db.engine, new_conversation(db.engine, "a"), new_conversation(db.engine, "b"))

    again = app_factory(SQLALCHEMY_DATABASE_URI=database_url)  # a restart changes nothing
    assert outcomes == ["created"]
    assert again.test_client().get("/").status_code == 200


# --- 3: a database made by the previous release ----------------------------------------------------

OLD = MetaData()  # the columns of the previous release that the test writes
OLD_CONVERSATIONS = Table(
    "conversations",
    OLD,
    Column("id", Integer, primary_key=True),
    Column("public_id", String(32)),
    Column("owner", String(64)),
    Column("title", String(200)),
    Column("created_at", UTCDateTime),
    Column("updated_at", UTCDateTime),
)
OLD_MESSAGES = Table(
    "messages",
    OLD,
    Column("id", Integer, primary_key=True),
    Column("conversation_id", Integer, ForeignKey("conversations.id")),
    Column("content", Text),
    Column("is_user", Boolean),
    Column("status", String(16)),
    Column("timestamp", UTCDateTime),
    Column("updated_at", UTCDateTime),
    Column("metadata", JSON),
)
THEN = datetime(2026, 11, 20, 9, 30, 15, 123456, tzinfo=UTC)


def make_previous_release_database(url: str) -> None:
    """The schema of the release before migrations (0001), with no alembic_version, and its data:
    a finished exchange, then two replies left streaming in one conversation (a worker killed
    mid-reply, then a second turn started: nothing stopped that before)."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), BASELINE)
            conn.execute(text("DROP TABLE alembic_version"))
            for public_id, title in (("old-one", "Battery drains fast"), ("old-two", "Cracked screen")):
                conn.execute(
                    insert(OLD_CONVERSATIONS).values(
                        public_id=public_id, owner="visitor-1", title=title, created_at=THEN, updated_at=THEN
                    )
                )
            rows = [
                (1, "Why does my battery drain so fast?", True, "complete", {}),
                (
                    1,
                    "Check which apps use it in Settings → Battery.",
                    False,
                    "complete",
                    {"total_tokens": 42, "model": "gpt-4.1-nano"},
                ),
                (1, "And at night?", True, "complete", {}),
                (1, "At night, background", False, "streaming", {}),
                (1, "Overnight", False, "streaming", {}),
                (2, "My screen cracked", True, "complete", {}),
                (2, "", False, "stopping", {}),
                (2, "kept anyway", False, "pending", {}),  # not in the vocabulary: becomes error
            ]
            for conversation_id, content, is_user, status, meta in rows:
                conn.execute(
                    insert(OLD_MESSAGES).values(
                        conversation_id=conversation_id,
                        content=content,
                        is_user=is_user,
                        status=status,
                        timestamp=THEN,
                        updated_at=THEN,
                        metadata=meta,
                    )
                )
            assert "alembic_version" not in inspect(conn).get_table_names()
    finally:
        engine.dispose()


def test_a_previous_release_database_is_upgraded_with_its_data(database_url, app_factory):
    make_previous_release_database(database_url)

    app = app_factory(SQLALCHEMY_DATABASE_URI=database_url)  # stamps 0001, upgrades to head

    with app.app_context():
        with db.engine.connect() as conn:
            assert current_revision(conn) == HEAD
            assert model_differences(conn) == []
            assert "updated_at" not in {c["name"] for c in inspect(conn).get_columns("messages")}
        conversations = db.session.execute(
            select(
                Conversation.id,
                Conversation.public_id,
                Conversation.owner,
                Conversation.title,
                Conversation.created_at,
            ).order_by(Conversation.id)
        ).all()
        assert [tuple(c) for c in conversations] == [
            (1, "old-one", "visitor-1", "Battery drains fast", THEN),
            (2, "old-two", "visitor-1", "Cracked screen", THEN),
        ]
        messages = db.session.execute(
            select(
                Message.id,
                Message.conversation_id,
                Message.content,
                Message.is_user,
                Message.status,
                Message.attempt,
                Message.lease_until,
                Message.meta,
                Message.timestamp,
            ).order_by(Message.id)
        ).all()
        assert [tuple(m) for m in messages] == [
            (1, 1, "Why does my battery drain so fast?", True, "complete", 0, None, {}, THEN),
            (
                2,
                1,
                "Check which apps use it in Settings → Battery.",
                False,
                "complete",
                0,
                None,
                {"total_tokens": 42, "model": "gpt-4.1-nano"},
                THEN,
            ),
            (3, 1, "And at night?", True, "complete", 0, None, {}, THEN),
            (4, 1, "At night, background", False, "interrupted", 0, None, {}, THEN),
            (5, 1, "Overnight", False, "interrupted", 0, None, {}, THEN),
            (6, 2, "My screen cracked", True, "complete", 0, None, {}, THEN),
            (7, 2, "", False, "interrupted", 0, None, {}, THEN),
            (8, 2, "kept anyway", False, "error", 0, None, {}, THEN),
        ]

        # Each conversation becomes one shown path: every message follows the one before it.
        tree = db.session.execute(
            select(Message.id, Message.parent_id, Message.shown).order_by(Message.id)
        ).all()
        assert [tuple(m) for m in tree] == [
            (1, None, True),
            (2, 1, True),
            (3, 2, True),
            (4, 3, True),
            (5, 4, True),
            (6, None, True),
            (7, 6, True),
            (8, 7, True),
        ]

        # The search knows what was saved before it: titles, and the messages each shows (an
        # interrupted reply too: its text is on the page).
        assert [h.public_id for h in search("visitor-1", "battery")] == ["old-one"]
        assert [h.public_id for h in search("visitor-1", "overnight")] == ["old-one"]
        assert [h.public_id for h in search("visitor-1", "cracked")] == ["old-two"]
        assert search("visitor-2", "battery") == []

        # New rows: ids go on after the old ones, and the fence holds on the upgraded table.
        assert add_reply(db.engine, 2, "complete") == 9
        assert_the_fence_holds(db.engine, 1, 2)
        assert new_conversation(db.engine, "new-one") == 3

    assert app.test_client().get("/").status_code == 200


# --- 4: two workers starting at once --------------------------------------------------------------


def _start_worker(uri: str, together, results) -> None:
    """One worker process: wait for the others, create the app, and report how its start went (what
    its schema step did, and whether it then serves the page)."""
    try:
        made = database._upgrade
        outcomes: list[str] = []

        def recorded() -> str:
            outcomes.append(made())
            return outcomes[-1]

        database._upgrade = recorded  # this process's own copy
        together.wait()
        app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": uri, "SECRET_KEY": "workers"})
        results.put((outcomes, app.test_client().get("/").status_code, None))
    except BaseException as exc:  # reported to the test
        results.put(([], 0, repr(exc)))


def test_two_workers_starting_at_once_on_a_fresh_database(tmp_path, monkeypatch):
    """Workers starting together on a new SQLite file (gunicorn's, or two hosts' on shared storage)
    all come up: the file is switched to WAL and the schema made exactly once, under the lock.
    Worker processes, as gunicorn's are (threads would also race CPython 3.11's parser, which
    Werkzeug uses to compile URL rules). Repeated, because the race it guards against (two first
    connections switching the journal at once fail at once, busy timeout or not) lost about one try
    in ten."""
    monkeypatch.setenv("CHATBOT_INSTANCE_PATH", str(tmp_path / "instance"))
    forked = multiprocessing.get_context("fork")
    for attempt in range(12):
        uri = f"sqlite:///{tmp_path / f'fresh-{attempt}.sqlite3'}"
        together, results = forked.Barrier(3, timeout=20), forked.Queue()
        workers = [forked.Process(target=_start_worker, args=(uri, together, results)) for _ in range(3)]
        for worker in workers:
            worker.start()
        reports = [results.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join(30)
        assert [error for _, _, error in reports] == [None] * 3, (attempt, reports)
        assert sorted(o for outcomes, _, _ in reports for o in outcomes) == ["created"], (attempt, reports)
        assert [status for _, status, _ in reports] == [200] * 3, (attempt, reports)
        engine = create_engine(uri)
        with engine.connect() as conn:
            assert current_revision(conn) == HEAD
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        engine.dispose()
