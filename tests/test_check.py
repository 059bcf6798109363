"""`flask check`, private files, and user text printed safely in a terminal."""

from __future__ import annotations

import os
import socket
import stat

import pytest

from chatbot.database import head_revision

from .helpers import conversation_id_from, send


def test_check_reports_configuration_and_a_healthy_setup(app, runner, fake_openai, openai_config):
    result = runner.invoke(args=["check"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "SECRET_KEY = set" in out and "OPENAI_API_KEY = set" in out
    assert app.config["SECRET_KEY"] not in out and openai_config["OPENAI_API_KEY"] not in out
    assert f"MODEL = '{openai_config['MODEL']}'" in out
    assert f"database: ok, schema at {head_revision()}" in out
    assert "model: ok" in out and out.rstrip().endswith("All good.")


def test_check_fails_when_the_model_server_is_unreachable(app_factory, openai_config):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    app = app_factory(**dict(openai_config, OPENAI_BASE_URL=f"http://127.0.0.1:{closed}/v1"))
    result = app.test_cli_runner().invoke(args=["check"])
    assert result.exit_code == 1
    assert "model: PROBLEM" in result.output and "the model's server was unreachable" in result.output


def test_check_tests_redis_when_configured(app_factory, openai_config, fake_openai):
    app = app_factory(**openai_config, REDIS_URL="redis://127.0.0.1:1/0")  # nothing listens there
    result = app.test_cli_runner().invoke(args=["check"])
    assert result.exit_code == 1 and "redis: PROBLEM" in result.output


@pytest.mark.sqlite_only
def test_the_app_keeps_its_files_private(tmp_path, app_factory, fake_openai, openai_config):
    app = app_factory(**openai_config)
    send(app.test_client(), "hello")
    instance = tmp_path / "instance"
    assert stat.S_IMODE(os.stat(instance).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(instance / "secret_key").st_mode) == 0o600
    database = tmp_path / "chat.sqlite3"
    for path in (database, database.with_name("chat.sqlite3-wal"), database.with_name("chat.sqlite3-shm")):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path


def test_conversation_titles_print_without_terminal_escapes(app, client, runner, fake_openai):
    conversation_id_from(send(client, "\x1b]0;pwned\x07Battery \u202eevil\u202c \x1b[2Jhelp"))
    out = runner.invoke(args=["conversations", "list"]).output
    assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
    assert "Battery evil" in out
