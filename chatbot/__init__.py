"""chatbot: a small, self-hostable customer-support chat front end for an OpenAI model."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

ROOT = Path(__file__).resolve().parent.parent


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Application factory: config -> logging -> extensions -> blueprints -> CLI."""
    app = Flask(
        __name__,
        instance_path=os.environ.get("CHATBOT_INSTANCE_PATH") or str(ROOT / "instance"),
        instance_relative_config=True,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    # The instance folder holds the database, its session ids and the development secret: only
    # this user may enter it when the app makes it.
    os.makedirs(app.instance_path, mode=0o700, exist_ok=True)
    if os.stat(app.instance_path).st_mode & 0o077:  # e.g. the checkout's instance/ (0755)
        try:
            os.chmod(app.instance_path, 0o700)
        except OSError:  # not ours: leave it, files inside are still made 0600
            pass

    from . import (
        admin,
        assets,
        chat,
        cli,
        compression,
        config,
        database,
        errors,
        finetune,
        health,
        i18n,
        knowledge,
        llm,
        logs,
        ratelimit,
        rendering,
        security,
        sessions,
        theme,
    )

    config.load(app, test_config)
    logs.init_app(app)
    compression.init_app(app)
    security.init_app(app)
    ratelimit.init_app(app)
    database.init_app(app)
    sessions.init_app(app)
    i18n.init_app(app)
    theme.init_app(app)
    llm.init_app(app)
    rendering.init_app(app)
    assets.init_app(app)
    errors.init_app(app)
    health.init_app(app)
    chat.init_app(app)
    knowledge.init_app(app)
    finetune.init_app(app)
    admin.init_app(app)
    cli.init_app(app)
    return app
