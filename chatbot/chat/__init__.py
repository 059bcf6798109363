"""The chat blueprint: the page, sending a message, stopping a reply, starting afresh."""

from flask import Blueprint

bp = Blueprint("chat", __name__)

from . import views  # noqa: E402,F401  (routes register themselves on ``bp``)
