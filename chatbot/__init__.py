"""chatbot: a small, self-hostable customer-support chat front end for an OpenAI model."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, render_template, request

ROOT = Path(__file__).resolve().parent.parent


def create_app(test_config: dict | None = None) -> Flask:
    """Application factory: config -> extensions -> blueprints -> CLI."""
    app = Flask(
        __name__,
        instance_path=os.environ.get("CHATBOT_INSTANCE_PATH") or str(ROOT / "instance"),
        instance_relative_config=True,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    os.makedirs(app.instance_path, exist_ok=True)

    from . import config, database, llm, rendering, sessions

    config.load(app, test_config)
    database.init_app(app)
    sessions.init_app(app)
    llm.init_app(app)
    rendering.init_app(app)

    from .chat import bp as chat_bp

    app.register_blueprint(chat_bp)

    from . import cli

    cli.init_app(app)

    @app.errorhandler(400)
    @app.errorhandler(404)
    @app.errorhandler(405)
    @app.errorhandler(413)
    @app.errorhandler(500)
    def http_error(error):
        if request.headers.get("HX-Request") == "true":  # lands in the composer's error line
            return render_template("chat/_composer_error.html", error=error.description), error.code
        return render_template("error.html", error=error), error.code

    return app
