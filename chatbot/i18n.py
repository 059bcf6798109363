"""Two languages: the interface in English and Spanish (Flask-Babel).

The language of a request is the visitor's choice (the switcher's cookie), else the best match of
``Accept-Language``, else English. Strings are marked with ``_`` (``gettext``) in Python and
templates; the Spanish catalog is ``chatbot/translations/es/LC_MESSAGES/messages.po``.
"""

from __future__ import annotations

from flask import Flask, request
from flask_babel import Babel, get_locale, ngettext
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

LANGUAGES = {"en": "English", "es": "Español"}
DEFAULT = "en"
COOKIE = "chatbot_lang"

__all__ = ["COOKIE", "LANGUAGES", "_", "_l", "init_app", "language", "ngettext"]


def select_locale() -> str:
    chosen = request.cookies.get(COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(LANGUAGES, DEFAULT) or DEFAULT


def language() -> str:
    """The language of this request's page ("en" or "es")."""
    return str(get_locale() or DEFAULT)


def init_app(app: Flask) -> None:
    Babel(app, locale_selector=select_locale, default_domain="messages")
