"""Logging, set up by the factory: the app's own loggers (``chatbot.*``) write to standard error
with the level and format from config (``LOG_LEVEL``, ``LOG_FORMAT``); a turn's lines name their
conversation, reply and attempt."""

from __future__ import annotations

import logging

from flask import Flask

_MARK = "_chatbot_handler"


def init_app(app: Flask) -> None:
    logger = logging.getLogger("chatbot")  # Flask's app.logger is this one too
    level = str(app.config["LOG_LEVEL"]).upper()
    if level not in logging.getLevelNamesMapping():
        raise RuntimeError(f"LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, not {level!r}")
    logger.setLevel(level)
    for handler in [h for h in logger.handlers if getattr(h, _MARK, False)]:
        logger.removeHandler(handler)  # a second app in one process replaces, not doubles
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(app.config["LOG_FORMAT"]))
    setattr(handler, _MARK, True)
    logger.addHandler(handler)
